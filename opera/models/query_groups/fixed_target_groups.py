"""Query groups that come with their targets: supervised without matching.

The query groups of :mod:`.hybrid_matching` are matched to the ground truth
by the Hungarian assigner. Two other kinds of one-to-many supervision add
queries whose targets are known when the queries are made:

- groups made from the ground truth (DN-DETR's and DINO's denoising): one
  query per object, built from its (possibly noised) box and label, each
  supervised by the object it was made from;
- groups given by an auxiliary head (Co-DETR): an auxiliary head's positive
  anchors or proposals as queries, supervised with the targets that head
  assigned them.

Both are a :class:`FixedTargetGroup`: its queries, which query is supervised
by which target in each image (the others are background), and how it sees
the other queries in self-attention. They are made per batch (sizes follow
the batch's object counts), only in training, between the transformer's
query selection and its decoder (``pre_decoder`` / ``forward_decoder``);
their losses are the criterion's ``layer_losses`` on the given pairs, at
every decoder layer (:meth:`.SetCriterion.query_group_losses`).
"""
from abc import ABCMeta, abstractmethod

import torch
import torch.nn as nn

from opera.core.bbox import normalised_cxcywh

from ..builder import MODELS
from ..transformers.base import require_reference_kind


class FixedTargetGroup:
    """Queries of one batch with their targets given.

    Args:
        queries (DecoderQueries): [bs, n, ...] queries (an image with fewer
            than n has padding queries: unsupervised, background).
        matches (list[tuple[Tensor, Tensor]]): Per image, ``(query_inds
            [m], target_inds [m])`` long: query ``query_inds[j]`` of that
            image is supervised by its target ``target_inds[j]``; every other
            query of the group is background.
        name (str): Suffix of the group's loss names (``loss_cls_{name}``).
        loss_weight (float): Weight of the group's losses.
        sees_matching (bool): The group's queries attend to the matching
            queries in self-attention, one way (the matching queries never
            see this group); False: they see only their own group.
        targets (dict | None): Per-image targets the indices refer to, the
            same keys as the batch's ground truth (``gt_bboxes``,
            ``gt_labels``, ...); None: the batch's ground truth.
        num_blocks (int): The group's queries are this many equal,
            consecutive blocks that do not see each other in self-attention
            (DINO's denoising groups); their losses are still the group's
            one set, normalised over all its supervised queries.
        losses (dict[str, Tensor] | None): Losses the maker computed itself
            (an auxiliary head's own), added to the head's losses under
            these names.
    """

    def __init__(self,
                 queries,
                 matches,
                 name,
                 loss_weight=1.0,
                 sees_matching=False,
                 targets=None,
                 num_blocks=1,
                 losses=None):
        if not name:
            raise ValueError('a fixed-target group needs a name (its loss '
                             'names must differ from the matching groups\')')
        if num_blocks < 1 or queries.num_queries % num_blocks:
            raise ValueError(
                f'group {name!r}: {queries.num_queries} queries do not make '
                f'{num_blocks} equal blocks')
        num_images = queries.reference.size(0)
        if len(matches) != num_images:
            raise ValueError(f'group {name!r}: {len(matches)} match lists '
                             f'for {num_images} images')
        for index, (query_inds, target_inds) in enumerate(matches):
            if query_inds.shape != target_inds.shape or not in_range(
                    query_inds, queries.num_queries):
                raise ValueError(
                    f'group {name!r}, image {index}: query and target '
                    f'indices must pair up and address the '
                    f'{queries.num_queries} queries')
        self.queries = queries
        self.matches = [(q.long(), t.long()) for q, t in matches]
        self.name = name
        self.loss_weight = loss_weight
        self.sees_matching = bool(sees_matching)
        self.targets = targets
        self.num_blocks = int(num_blocks)
        self.losses = dict(losses or {})

    def __repr__(self):
        counts = [q.numel() for q, _ in self.matches]
        return (f'{self.__class__.__name__}(name={self.name!r}, '
                f'num_queries={self.num_queries}, supervised={counts}, '
                f'loss_weight={self.loss_weight}, '
                f'sees_matching={self.sees_matching}, '
                f'num_blocks={self.num_blocks}, '
                f'losses={sorted(self.losses)})')

    @property
    def num_queries(self):
        return self.queries.num_queries

    def targets_of(self, batch_targets):
        """The targets its pairs refer to (its own, else the batch's),
        checked: a negative or too large target index would otherwise pick
        another object silently (negative indices wrap around)."""
        targets = batch_targets if self.targets is None else self.targets
        for index, (_, target_inds) in enumerate(self.matches):
            num_targets = targets['gt_labels'][index].size(0)
            if not in_range(target_inds, num_targets):
                raise ValueError(
                    f'group {self.name!r}, image {index}: target indices '
                    f'{target_inds.tolist()} outside the image\'s '
                    f'{num_targets} targets')
        return targets

    @property
    def suffix(self):
        return f'_{self.name}'

    @property
    def block_sizes(self):
        """Queries of each self-attention block, in query order."""
        return [self.num_queries // self.num_blocks] * self.num_blocks


def in_range(indices, size):
    """Whether every index is in [0, size) (True for none)."""
    return indices.numel() == 0 or (int(indices.min()) >= 0
                                     and int(indices.max()) < size)


def padded_per_image(values, num, fill):
    """Per-image tensors [n_i, ...] stacked into [bs, num, ...] (``fill``
    after each image's own)."""
    out = values[0].new_full((len(values), num) + values[0].shape[1:], fill)
    for index, value in enumerate(values):
        out[index, :value.size(0)] = value
    return out


class FixedTargetGroupMaker(nn.Module, metaclass=ABCMeta):
    """Base of the modules that make a head's fixed-target groups.

    Listed in ``model.bbox_head.fixed_target_groups``, built with the head's
    ``num_classes`` and ``embed_dims``, and called every training batch
    between the transformer's ``pre_decoder`` and ``forward_decoder``
    (:func:`add_fixed_groups`). A new group kind is one subclass: its
    queries (of its :attr:`reference_kind`) and their targets.
    """

    #: 'box' or 'pose': the queries it makes, which its transformer must
    #: make too (:func:`.require_reference_kind`).
    reference_kind = None

    def check_transformer(self, transformer):
        """Raise unless ``transformer`` makes this maker's queries."""
        require_reference_kind(transformer, self.reference_kind,
                               type(self).__name__)

    @abstractmethod
    def forward(self, transformer, memory, levels, targets, img_metas):
        """The group(s) of one batch.

        Args:
            transformer (TransformerStages): The head's transformer.
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): Of the transformer's ``encode``.
            targets (dict): The batch's ground truth (per-image lists).
            img_metas (list[dict]): Per image.

        Returns:
            FixedTargetGroup | list[FixedTargetGroup] | None: None when
            there is nothing to add (e.g. a batch without objects).
        """


@MODELS.register_module()
class GroundTruthQueries(FixedTargetGroupMaker):
    """One query per ground-truth box, supervised by its own box.

    The plain form of a denoising group (DN-DETR without noise): the query's
    reference is the object's box, its content a learned embedding of the
    object's label, its position the transformer's positional projection of
    the box (as two-stage proposals get theirs). Images with fewer objects
    than the batch's most get padding queries (box at the image centre, no
    content), which are background.

    Args:
        num_classes (int): Labels embedded.
        embed_dims (int): Query width.
        name (str): Loss suffix.
        loss_weight (float): Weight of the group's losses.
        sees_matching (bool): See :class:`FixedTargetGroup`.
    """

    reference_kind = 'box'

    def __init__(self,
                 num_classes,
                 embed_dims=256,
                 name='gt',
                 loss_weight=1.0,
                 sees_matching=True):
        super().__init__()
        self.label_embedding = nn.Embedding(num_classes, embed_dims)
        self.name = name
        self.loss_weight = loss_weight
        self.sees_matching = sees_matching

    def forward(self, transformer, memory, levels, targets, img_metas):
        """The group of a batch, or None when no image has an object.

        Args:
            transformer: Has ``queries_from_boxes(boxes, content)`` (the
                Deformable-DETR transformer).
            memory, levels: The encoder's output (unused: the queries come
                from the ground truth alone).
            targets (dict): ``gt_bboxes`` (per image [G, 4] x1y1x2y2
                pixels) and ``gt_labels`` (per image [G]).
            img_metas (list[dict]): Need ``img_shape``.

        Returns:
            FixedTargetGroup | None
        """
        self.check_transformer(transformer)
        boxes, labels = targets['gt_bboxes'], targets['gt_labels']
        num = max(box.size(0) for box in boxes)
        if num == 0:
            return None
        normalised = [
            normalised_cxcywh(box, meta['img_shape'])
            for box, meta in zip(boxes, img_metas)
        ]
        reference = padded_per_image(normalised, num, 0.5)
        content = padded_per_image(
            [self.label_embedding(label) for label in labels], num, 0.)
        queries = transformer.queries_from_boxes(reference, content)
        matches = [(torch.arange(box.size(0), device=box.device),
                    torch.arange(box.size(0), device=box.device))
                   for box in boxes]
        return FixedTargetGroup(
            queries,
            matches,
            self.name,
            loss_weight=self.loss_weight,
            sees_matching=self.sees_matching)


def build_group_makers(cfgs, num_classes, embed_dims):
    """The modules that make a head's fixed-target groups, from configs.

    Args:
        cfgs (list[dict] | None): One config per group kind (e.g.
            ``dict(type='opera.GroundTruthQueries')``); ``num_classes`` and
            ``embed_dims`` are the head's and filled in here.
        num_classes (int): The head's classes.
        embed_dims (int): The transformer's width.

    Returns:
        nn.ModuleList: Empty without configs (no state_dict entries).
    """
    makers = nn.ModuleList()
    for cfg in cfgs or ():
        for key in ('num_classes', 'embed_dims'):
            if key in cfg:
                raise ValueError(
                    f'{cfg["type"]}: {key} is set by the head; remove it '
                    f'from model.bbox_head.fixed_target_groups')
        maker = MODELS.build(
            dict(cfg, num_classes=num_classes, embed_dims=embed_dims))
        if not isinstance(maker, FixedTargetGroupMaker):
            raise TypeError(
                f'{cfg["type"]} in model.bbox_head.fixed_target_groups is '
                f'not a group maker (a FixedTargetGroupMaker)')
        makers.append(maker)
    return makers


def add_fixed_groups(queries, makers, transformer, memory, levels, targets,
                     img_metas):
    """The batch's fixed-target groups, their queries after ``queries``.

    Args:
        queries (DecoderQueries): The matching queries (``pre_decoder``).
        makers (nn.ModuleList): See :func:`build_group_makers`; each is
            called as ``maker(transformer, memory, levels, targets,
            img_metas)`` and returns a :class:`FixedTargetGroup`, a list of
            them (a maker of several groups that share work, e.g. Co-DETR's
            auxiliary heads on one feature pyramid) or None (nothing to add,
            e.g. a batch without objects).
        transformer, memory, levels: The transformer and its ``encode``
            output.
        targets (dict | None): The batch's ground truth (None: no groups,
            as at test time).
        img_metas (list[dict]): Per image.

    Returns:
        tuple[DecoderQueries, list[FixedTargetGroup]]: All queries for
        ``forward_decoder``, and the groups in query order.
    """
    if targets is None:
        return queries, []
    groups = []
    for maker in makers:
        made = maker(transformer, memory, levels, targets, img_metas)
        groups.extend(made if isinstance(made, (list, tuple)) else [made])
    groups = [group for group in groups if group is not None]
    return queries.cat(*(group.queries for group in groups)), groups
