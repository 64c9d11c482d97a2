"""DINO's contrastive denoising (CDN) as a fixed-target group.

Every training batch, each ground-truth object gives, in each of G groups,
a positive query (its box noised within the inner band, supervised by the
object) and a negative one (noised between the inner and the outer band,
supervised as background); labels are flipped to a random class with
probability ``label_noise_ratio / 2``. G = ``dn_number`` // (the batch's
largest object count), at least 1, so the queries per batch stay about
2 x ``dn_number``. The groups are blocks that do not see each other, and see
the matching queries one way (:class:`.FixedTargetGroup`, ``num_blocks``).

The random draws are DINO's own, in its order, on the objects of the batch
concatenated image after image and copied 2G times (even copies positive,
odd negative): flip draws [R], new labels for the flipped rows, box signs
[R, 4] and box magnitudes [R, 4] (R = 2 G N). With the same generator state
the queries are DINO's, query for query.
"""
from abc import abstractmethod

import torch
import torch.nn as nn
from mmdet.core import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.models.utils.transformer import inverse_sigmoid

from opera.core.bbox import normalised_cxcywh
from ..builder import MODELS
from .fixed_target_groups import FixedTargetGroup, FixedTargetGroupMaker

# DINO's inverse sigmoid of the noised boxes clamps them this far inside
# [0, 1], so a box noised onto the border keeps a finite logit (the same
# clamp as its decoder's, DinoTransformerDecoder.refine_eps).
BOX_EPS = 1e-3


def noised_labels(labels, num_classes, label_noise_ratio):
    """Labels [R] with each flipped, with probability
    ``label_noise_ratio / 2``, to a class drawn uniformly (possibly its
    own). Draws: ``rand`` [R], then ``randint`` [flipped]."""
    labels = labels.clone()
    if label_noise_ratio > 0:
        draws = torch.rand_like(labels.float())
        flipped = torch.nonzero(draws < label_noise_ratio * 0.5).view(-1)
        new_labels = torch.randint_like(flipped, 0, num_classes)
        labels.scatter_(0, flipped, new_labels)
    return labels


def noised_boxes(boxes, negative, box_noise_scale):
    """Boxes [R, 4] (cx, cy, w, h) in [0, 1] with every corner moved.

    Each corner coordinate moves by ``box_noise_scale`` x half the box's
    width (x) or height (y) x a signed magnitude in [0, 1) for positive
    rows and [1, 2) for ``negative`` rows [R] bool; the result is clamped
    to [0, 1]. Draws: ``randint`` [R, 4] (signs), then ``rand`` [R, 4].
    """
    if box_noise_scale <= 0:
        return boxes
    corners = bbox_cxcywh_to_xyxy(boxes)
    half_sizes = boxes[:, 2:].repeat(1, 2) / 2
    signs = torch.randint_like(boxes, low=0, high=2,
                               dtype=torch.float32) * 2.0 - 1.0
    magnitudes = torch.rand_like(boxes)
    magnitudes[negative] += 1.0
    corners = corners + magnitudes * signs * half_sizes * box_noise_scale
    return bbox_xyxy_to_cxcywh(corners.clamp(min=0.0, max=1.0))


def query_slots(counts, num_copies, device):
    """Where each copy of each object goes: its image [R] and its query
    [R] (copy c of object j of an image is query c x max(counts) + j), for
    the objects of the batch concatenated image after image and copied
    ``num_copies`` times (R = copies x objects)."""
    counts_t = torch.tensor(counts, device=device)
    image = torch.repeat_interleave(
        torch.arange(counts_t.numel(), device=device), counts_t)
    starts = torch.cumsum(counts_t, 0) - counts_t
    slot = torch.arange(image.numel(), device=device) - starts[image]
    copy = torch.arange(num_copies, device=device)
    query = (copy * max(counts)).repeat_interleave(
        image.numel()) + slot.repeat(num_copies)
    return image.repeat(num_copies), query


def scattered(values, image, query, bs, num_queries, fill):
    """Rows ``values`` [N, D] placed at (``image``, ``query``) of a
    [bs, num_queries, D] tensor full of ``fill``."""
    out = values.new_full((bs, num_queries, values.size(-1)), fill)
    out[image, query] = values
    return out


def positive_pairs(counts, num_groups, max_objects, device):
    """Per image (query_inds, target_inds): the positive query of each
    object in each group (group g's positives start at 2 g x
    ``max_objects``)."""
    pairs = []
    for count in counts:
        targets = torch.arange(count, device=device).repeat(num_groups)
        starts = torch.arange(
            num_groups, device=device).repeat_interleave(count)
        pairs.append((starts * 2 * max_objects + targets, targets))
    return pairs


class DenoisingQueries(FixedTargetGroupMaker):
    """Contrastive denoising of any reference kind: the steps the box and
    the pose makers share (label embedding and label noise, group count,
    query slots, the group), around what a kind defines: its objects'
    references, their noise and the transformer's queries at references.

    Args:
        num_classes (int): Classes of the head (labels embedded; flipped
            labels drawn from them).
        embed_dims (int): Query width.
        dn_number (int): About half the denoising queries per batch: the
            groups are ``dn_number`` // (largest object count). DINO: 100.
        label_noise_ratio (float): Twice the label flip probability (as
            DINO defines it). DINO: 0.5.
        name (str): Loss suffix (``loss_cls_dn``).
        loss_weight (float): Weight of the denoising losses. DINO: 1.
    """

    def __init__(self, num_classes, embed_dims, dn_number, label_noise_ratio,
                 name, loss_weight):
        super().__init__()
        if dn_number < 1:
            raise ValueError(f'dn_number must be >= 1, got {dn_number}')
        if not 0 <= label_noise_ratio <= 1:
            raise ValueError(f'label_noise_ratio must be in [0, 1], got '
                             f'{label_noise_ratio}')
        self.num_classes = num_classes
        self.label_embedding = nn.Embedding(num_classes, embed_dims)
        self.dn_number = dn_number
        self.label_noise_ratio = label_noise_ratio
        self.name = name
        self.loss_weight = loss_weight

    @abstractmethod
    def batch_references(self, transformer, targets, img_metas):
        """The references [N, R] of the batch's objects, concatenated image
        after image, and what their noise needs (a tuple of [N, ...])."""

    @abstractmethod
    def noised_references(self, references, noise_args, negative):
        """References [R', D] (``references`` already copied) noised, the
        ``negative`` [R'] bool copies between the inner and outer band."""

    @abstractmethod
    def queries_at(self, transformer, references, content):
        """The transformer's queries at ``references`` [bs, n, R] with
        ``content`` [bs, n, c]."""

    @abstractmethod
    def reference_dims(self, transformer):
        """R, the width of one reference."""

    def forward(self, transformer, memory, levels, targets, img_metas):
        """The batch's denoising group.

        Args:
            transformer (TransformerStages): Makes queries of this maker's
                ``reference_kind``.
            memory, levels: The encoder output (unused).
            targets (dict): The batch's ground truth (per-image lists).
            img_metas (list[dict]): Need ``img_shape``.

        Returns:
            FixedTargetGroup: [bs, 2 x groups x max G_i] queries, per image
            in blocks (group 0 positives, group 0 negatives, group 1
            positives, ...), each of max G_i queries: the image's objects
            first, then padding (reference at the image centre, no
            content, background). Without objects in the batch: no queries
            (its losses are then 0).
        """
        self.check_transformer(transformer)
        counts = [label.numel() for label in targets['gt_labels']]
        bs = len(img_metas)
        if max(counts) == 0:
            content = self.no_content(bs)
            return self.empty_group(
                self.queries_at(
                    transformer,
                    content.new_zeros(bs, 0,
                                      self.reference_dims(transformer)),
                    content))
        num_groups = self.num_groups(max(counts))
        num_copies = 2 * num_groups
        references, noise_args = self.batch_references(
            transformer, targets, img_metas)
        copy = torch.arange(num_copies, device=references.device)
        negative = (copy % 2 == 1).repeat_interleave(sum(counts))

        # DINO's draw order: labels first, then the references.
        content = self.noised_content(targets['gt_labels'], num_copies)
        reference = self.noised_references(
            references.repeat(num_copies, 1),
            [arg.repeat(num_copies, 1) for arg in noise_args], negative)

        image, query = query_slots(counts, num_copies, references.device)
        num_queries = num_copies * max(counts)
        queries = self.queries_at(
            transformer,
            scattered(reference, image, query, bs, num_queries, 0.5),
            scattered(content, image, query, bs, num_queries, 0.))
        return self.group(queries, counts, num_groups)

    def num_groups(self, max_objects):
        """Denoising groups for a batch whose largest image has
        ``max_objects`` objects (> 0)."""
        return max(self.dn_number // max_objects, 1)

    def noised_content(self, labels, num_copies):
        """Content queries [R, c] of the batch's objects (``labels``: per
        image [G_i]) copied ``num_copies`` times, labels noised (the first
        draws)."""
        return self.label_embedding(
            noised_labels(
                torch.cat(labels).repeat(num_copies), self.num_classes,
                self.label_noise_ratio))

    def no_content(self, bs):
        """[bs, 0, c] content, still in the graph of the label embedding
        (so a distributed run finds every parameter used)."""
        return self.label_embedding.weight[:0].unsqueeze(0).expand(bs, -1, -1)

    def group(self, queries, counts, num_groups):
        """The batch's group: ``queries`` in blocks of 2 x max(counts) per
        group, each object's positive query supervised by it."""
        return FixedTargetGroup(
            queries,
            positive_pairs(counts, num_groups, max(counts),
                           queries.reference.device),
            self.name,
            loss_weight=self.loss_weight,
            sees_matching=True,
            num_blocks=num_groups)

    def empty_group(self, queries):
        """A batch without objects: no queries (``queries`` has none), its
        losses 0 under their usual names."""
        bs = queries.reference.size(0)
        empty = torch.zeros(
            0, dtype=torch.long, device=queries.reference.device)
        return FixedTargetGroup(
            queries, [(empty, empty)] * bs,
            self.name,
            loss_weight=self.loss_weight,
            sees_matching=True)


@MODELS.register_module()
class ContrastiveDenoisingQueries(DenoisingQueries):
    """DINO's contrastive denoising queries (see the module docstring).

    Args:
        num_classes, embed_dims, dn_number, label_noise_ratio, name,
            loss_weight: See :class:`DenoisingQueries`.
        box_noise_scale (float): Corner noise, in half box sizes. DINO:
            0.4.
    """

    def __init__(self,
                 num_classes,
                 embed_dims=256,
                 dn_number=100,
                 box_noise_scale=0.4,
                 label_noise_ratio=0.5,
                 name='dn',
                 loss_weight=1.0):
        super().__init__(num_classes, embed_dims, dn_number,
                         label_noise_ratio, name, loss_weight)
        if box_noise_scale < 0:
            raise ValueError(
                f'box_noise_scale must be >= 0, got {box_noise_scale}')
        self.box_noise_scale = box_noise_scale

    reference_kind = 'box'

    def batch_references(self, transformer, targets, img_metas):
        """The batch's boxes [N, 4] (cx, cy, w, h) in [0, 1]; their noise
        needs nothing else."""
        return torch.cat([
            normalised_cxcywh(boxes, meta['img_shape'])
            for boxes, meta in zip(targets['gt_bboxes'], img_metas)
        ]), []

    def noised_references(self, references, noise_args, negative):
        """DINO's corner noise, then the logit clamp of its decoder."""
        return inverse_sigmoid(
            noised_boxes(references, negative, self.box_noise_scale),
            eps=BOX_EPS).sigmoid()

    def queries_at(self, transformer, references, content):
        return transformer.queries_from_boxes(references, content)

    def reference_dims(self, transformer):
        return 4
