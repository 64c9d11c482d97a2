"""Co-DETR's collaborative hybrid assignments: auxiliary heads whose
positives supervise the decoder.

``opera.CoDETRAuxiliaryQueries`` is a fixed-target group maker (listed in
``model.bbox_head.fixed_target_groups``, run in training only): it folds
the encoder memory into a feature pyramid (:class:`.MemoryPyramid`) and
runs on it each auxiliary head of its ``heads``:

- ``opera.CoRoIQueries``: mmdet's RPN head and a standard RoI head (Faster
  R-CNN); its positives are the RoI head's positive sampled proposals;
- ``opera.CoATSSQueries``: mmdet's ATSS head; its positives are the anchors
  ATSS assigns to an object.

Each head computes its own losses (their weights are the heads' configs',
Co-DETR's ``num_dec_layer x lambda_2`` times mmdet's) and turns its
positives into a :class:`.FixedTargetGroup` named ``aux{i}`` (i its place
in ``heads``): queries made by :class:`.AuxiliaryQueryEmbedding`,
supervised by the objects the head assigned them, decoded with the
matching queries but seeing only their own group (Co-DETR's separate
decoder pass per head), scored by the head's DETR losses at every decoder
layer (``{d{l}.}loss_*_aux{i}``).
"""
import torch
import torch.nn as nn
from mmdet.core import bbox2roi
from mmdet.models.builder import build_head

from ...builder import MODELS
from .auxiliary_queries import AuxiliaryCandidates, select_positives
from ..fixed_target_groups import FixedTargetGroup, FixedTargetGroupMaker
from .memory_pyramid import MemoryPyramid

CONFIG = 'model.bbox_head.fixed_target_groups'


def with_num_classes(cfg, num_classes, where):
    """``cfg`` with the detection head's ``num_classes`` (refused when the
    config sets it: it is the head's)."""
    if 'num_classes' in cfg:
        raise ValueError(f'{CONFIG}: {where}.num_classes is set by the '
                         f'detection head; remove it')
    return dict(cfg, num_classes=num_classes)


def require_decoded_targets(head, where):
    """The heads' box targets must be boxes (``reg_decoded_bbox``): they
    become the auxiliary queries' targets."""
    if not head.reg_decoded_bbox:
        raise ValueError(f'{CONFIG}: {where} needs reg_decoded_bbox=True '
                         f'(its targets supervise the decoder as boxes)')


def summed(losses, suffix=''):
    """mmdet's per-level loss lists summed (the same total), renamed
    ``{name}{suffix}`` as Co-DETR names an auxiliary head's losses."""
    return {
        name + suffix: sum(value) if isinstance(value, (list, tuple)) else
        value
        for name, value in losses.items()
    }


class AuxiliaryQueryHead(nn.Module):
    """What the two auxiliary heads share: the query embedding of their
    positives and the group it makes.

    Args:
        num_classes (int): The detection head's classes.
        embed_dims (int): The transformer's width.
        index (int): Place among the auxiliary heads: the group is
            ``aux{index}``, the head's own losses end in ``{index}``.
        max_per_image (int): Most positives per image made queries.
        loss_weight (float): Weight of the group's decoder losses
            (Co-DETR's ``lambda_1``).
        query_embedding (dict | None): How the positives become queries
            (set by :class:`CoDETRAuxiliaryQueries`).
    """

    def __init__(self, num_classes, embed_dims, index, max_per_image=300,
                 loss_weight=1.0, query_embedding=None):
        super().__init__()
        self.num_classes = num_classes
        self.index = index
        self.max_per_image = max_per_image
        self.loss_weight = loss_weight
        self.embedding = MODELS.build(
            dict(query_embedding
                 or dict(type='opera.AuxiliaryQueryEmbedding'),
                 embed_dims=embed_dims))

    @property
    def name(self):
        return f'aux{self.index}'

    def make_group(self, transformer, candidates, img_metas, losses):
        """The group of the positives among ``candidates`` (per image)."""
        reference, features, matches, targets = select_positives(
            candidates, img_metas, self.num_classes, self.max_per_image)
        return FixedTargetGroup(
            self.embedding(transformer, reference, features),
            matches,
            self.name,
            loss_weight=self.loss_weight,
            sees_matching=False,
            targets=targets,
            losses=losses)


@MODELS.register_module()
class CoATSSQueries(AuxiliaryQueryHead):
    """ATSS as an auxiliary head: its positive anchors become queries.

    Args:
        head (dict): mmdet ``ATSSHead`` config, without ``num_classes``.
        train_cfg (dict): Its ``train_cfg`` (``assigner`` ATSS, ...).
        **kwargs: See :class:`AuxiliaryQueryHead`.
    """

    def __init__(self, head, train_cfg, **kwargs):
        super().__init__(**kwargs)
        self.head = build_head(
            dict(
                with_num_classes(head, self.num_classes, 'ATSS head'),
                train_cfg=train_cfg))
        require_decoded_targets(self.head, 'the ATSS head')
        # As Co-DETR: initialised when built (a detector's init_weights
        # does not reach a detection head's group makers).
        self.head.init_weights()

    def forward(self, transformer, pyramid, targets, img_metas):
        """The ATSS losses and the group of its positive anchors.

        Args:
            transformer: The Deformable-DETR transformer.
            pyramid (list[Tensor]): Levels [bs, c, h_l, w_l], one per anchor
                stride.
            targets (dict): ``gt_bboxes`` / ``gt_labels`` per image.
            img_metas (list[dict]): Per image.

        Returns:
            FixedTargetGroup
        """
        gt_bboxes, gt_labels = targets['gt_bboxes'], targets['gt_labels']
        outs = self.head(pyramid)
        losses = self.head.loss(*outs, gt_bboxes, gt_labels, img_metas)
        candidates = self.candidates(pyramid, gt_bboxes, gt_labels, img_metas)
        return self.make_group(transformer, candidates, img_metas,
                               summed(losses, str(self.index)))

    def candidates(self, pyramid, gt_bboxes, gt_labels, img_metas):
        """Per image every anchor with its ATSS label, assigned box and the
        pyramid's feature at its position.

        The assignment is made again (ATSS draws nothing: the loss's
        result), for what the loss does not hand back.
        """
        anchors, valid = self.head.get_anchors(
            [level.shape[-2:] for level in pyramid],
            img_metas,
            device=pyramid[0].device)
        assigned = self.head.get_targets(
            anchors, valid, gt_bboxes, img_metas, gt_labels_list=gt_labels)
        # Per level [bs, n_l, ...]: anchors, labels, assigned boxes.
        per_level = [assigned[i] for i in (0, 1, 3)]
        candidates = []
        for img_id, feature in enumerate(per_image_positions(pyramid)):
            boxes, labels, assigned_boxes = (
                torch.cat([level[img_id] for level in part])
                for part in per_level)
            anchors_per_position = boxes.size(0) // feature.size(0)
            candidates.append(
                AuxiliaryCandidates(
                    boxes, labels, assigned_boxes,
                    feature.repeat_interleave(anchors_per_position, dim=0)))
        return candidates


def per_image_positions(pyramid):
    """Per image the features of every position of every level, in the
    anchors' order (level, then row, then column): [sum h_l * w_l, c]."""
    flat = torch.cat([level.flatten(2) for level in pyramid], dim=2)
    return list(flat.transpose(1, 2))


@MODELS.register_module()
class CoRoIQueries(AuxiliaryQueryHead):
    """RPN + Faster R-CNN RoI head as an auxiliary head: the RoI head's
    positive proposals become queries.

    Args:
        rpn_head (dict): mmdet ``RPNHead`` config.
        roi_head (dict): mmdet ``StandardRoIHead`` config, its
            ``bbox_head`` without ``num_classes``.
        train_cfg (dict): ``rpn`` (RPN assigner / sampler),
            ``rpn_proposal`` (proposals made in training) and ``rcnn`` (RoI
            assigner / sampler).
        **kwargs: See :class:`AuxiliaryQueryHead`.
    """

    #: Most sampled proposals per image Co-DETR keeps as candidates.
    MAX_PROPOSALS = 2000

    def __init__(self, rpn_head, roi_head, train_cfg, **kwargs):
        super().__init__(**kwargs)
        missing = {'rpn', 'rpn_proposal', 'rcnn'} - set(train_cfg)
        if missing:
            raise ValueError(f'{CONFIG}: opera.CoRoIQueries train_cfg needs '
                             f'{sorted(missing)}')
        self.proposal_cfg = train_cfg['rpn_proposal']
        self.rpn_head = build_head(dict(rpn_head, train_cfg=train_cfg['rpn']))
        box_head = with_num_classes(roi_head['bbox_head'], self.num_classes,
                                    'roi_head.bbox_head')
        self.roi_head = build_head(
            dict(roi_head, bbox_head=box_head, train_cfg=train_cfg['rcnn']))
        require_decoded_targets(self.roi_head.bbox_head,
                                'roi_head.bbox_head')
        self.rpn_head.init_weights()
        self.roi_head.init_weights()

    def forward(self, transformer, pyramid, targets, img_metas):
        """The RPN and RoI losses and the group of the positive proposals
        (arguments and result as :meth:`CoATSSQueries.forward`)."""
        gt_bboxes, gt_labels = targets['gt_bboxes'], targets['gt_labels']
        losses, proposals = self.rpn_head.forward_train(
            pyramid,
            img_metas,
            gt_bboxes,
            gt_labels=None,
            proposal_cfg=self.proposal_cfg)
        samples = [
            self.sample(proposal[:, :4], boxes, labels)
            for proposal, boxes, labels in zip(proposals, gt_bboxes,
                                               gt_labels)
        ]
        rois = bbox2roi([sample.bboxes for sample in samples])
        results = self.roi_head._bbox_forward(pyramid, rois)
        box_targets = self.roi_head.bbox_head.get_targets(
            samples, gt_bboxes, gt_labels, self.roi_head.train_cfg)
        roi_losses = self.roi_head.bbox_head.loss(results['cls_score'],
                                                  results['bbox_pred'], rois,
                                                  *box_targets)
        losses = dict(summed(losses), **summed(roi_losses, str(self.index)))
        candidates = self.candidates(samples, results['bbox_feats'],
                                     box_targets[0])
        return self.make_group(transformer, candidates, img_metas, losses)

    def sample(self, proposals, gt_bboxes, gt_labels):
        """One image's proposals assigned and sampled (mmdet's
        ``SamplingResult``: positives first)."""
        assigned = self.roi_head.bbox_assigner.assign(proposals, gt_bboxes,
                                                      None, gt_labels)
        return self.roi_head.bbox_sampler.sample(assigned, proposals,
                                                 gt_bboxes, gt_labels)

    def candidates(self, samples, roi_features, roi_labels):
        """Per image the sampled proposals (the batch's fewest, as Co-DETR
        keeps), their labels, assigned boxes and mean RoI features."""
        num = min([self.MAX_PROPOSALS] +
                  [sample.bboxes.size(0) for sample in samples])
        features = roi_features.mean(dim=(2, 3))
        candidates, start = [], 0
        for sample in samples:
            rows = slice(start, start + num)
            labels = roi_labels[rows]
            assigned = torch.zeros_like(sample.bboxes[:num])
            num_pos = sample.pos_gt_bboxes.size(0)
            assigned[:num_pos] = sample.pos_gt_bboxes[:num]
            candidates.append(
                AuxiliaryCandidates(sample.bboxes[:num], labels, assigned,
                                    features[rows]))
            start += sample.bboxes.size(0)
        return candidates


# 'CoDETRAuxiliaryHeads': the name configs used for it, still built.
@MODELS.register_module(
    name=['CoDETRAuxiliaryQueries', 'CoDETRAuxiliaryHeads'])
class CoDETRAuxiliaryQueries(FixedTargetGroupMaker):
    """The feature pyramid and Co-DETR's auxiliary heads on it.

    Args:
        num_classes (int): The detection head's classes (set by the head).
        embed_dims (int): The transformer's width (set by the head).
        heads (list[dict]): The auxiliary heads (``opera.CoRoIQueries``,
            ``opera.CoATSSQueries``), in order: head i makes group
            ``aux{i}``. ``num_classes``, ``embed_dims`` and ``index`` are
            set here.
        pyramid (dict): :class:`.MemoryPyramid` arguments other than
            ``embed_dims``.
        query_embedding (dict | None): How every head's positives become
            queries: ``opera.AuxiliaryQueryEmbedding`` (None: Co-Deformable-
            DETR's content and position) or ``opera.AuxiliaryContentEmbedding``
            (Co-DINO's content only, for ``opera.DinoTransformer``).
    """

    reference_kind = 'box'

    def __init__(self, num_classes, embed_dims, heads, pyramid=None,
                 query_embedding=None):
        super().__init__()
        if not heads:
            raise ValueError(f'{CONFIG}: opera.CoDETRAuxiliaryQueries needs '
                             f'at least one head (remove it to have none)')
        self.pyramid = MemoryPyramid(embed_dims, **(pyramid or {}))
        self.heads = nn.ModuleList()
        set_here = {'num_classes', 'embed_dims', 'index', 'query_embedding'}
        for index, cfg in enumerate(heads):
            taken = sorted(set_here & set(cfg))
            if taken:
                raise ValueError(f'{CONFIG}: {cfg["type"]} sets {taken}, '
                                 f'which the auxiliary heads set')
            self.heads.append(
                MODELS.build(
                    dict(cfg, num_classes=num_classes,
                         embed_dims=embed_dims, index=index,
                         query_embedding=query_embedding)))

    def forward(self, transformer, memory, levels, targets, img_metas):
        """The groups of the batch, one per head (see
        :func:`.add_fixed_groups`).

        Returns:
            list[FixedTargetGroup]: ``aux0``, ``aux1``, ...
        """
        self.check_transformer(transformer)
        pyramid = self.pyramid(memory, levels)
        return [
            head(transformer, pyramid, targets, img_metas)
            for head in self.heads
        ]
