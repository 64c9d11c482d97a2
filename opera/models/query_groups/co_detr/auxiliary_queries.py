"""Decoder queries from an auxiliary head's positives (Co-DETR).

An auxiliary head (ATSS, Faster R-CNN) assigns its anchors or proposals to
the ground truth. Co-DETR turns each image's positives into extra decoder
queries, each supervised with the object the head assigned it:

- :func:`select_positives`: per image, the positives (at most
  ``max_per_image``, a random subset beyond), then random negatives of the
  same head as padding up to the batch's query count (at least 9), which are
  "no object" queries;
- :class:`AuxiliaryQueryEmbedding`: the queries of those boxes, made as
  Co-Deformable-DETR makes them for one head: the sine embedding of the box
  through the head's own linear layer and norm gives the positional and the
  content query, the content gets the head's feature at the box (through
  another linear layer and norm), the position a learned per-head offset;
- :class:`AuxiliaryContentEmbedding`: Co-DINO's, content only (the sine
  embedding of the box through the head's linear layer and norm); the
  transformer makes the rest from the box (DINO's decoder: positions from
  every layer's box).
"""
import math

import torch
import torch.nn as nn
from mmdet.models.utils.transformer import inverse_sigmoid

from opera.core.bbox import normalised_cxcywh

from ...builder import MODELS
from ...transformers.decoder_queries import DecoderQueries

#: Co-DETR's least number of auxiliary queries per image.
MIN_QUERIES = 9


class AuxiliaryCandidates:
    """One image's boxes of an auxiliary head, as it assigned them.

    Args:
        boxes (Tensor): [N, 4] anchors or proposals (x1, y1, x2, y2) pixels.
        labels (Tensor): [N] long, the assigned class; ``num_classes`` for
            a negative (background), anything else (e.g. -1) is neither.
        targets (Tensor): [N, 4] the assigned objects' boxes (x1, y1, x2,
            y2) pixels (read at the positives only).
        features (Tensor): [N, c] the head's feature of each box.
    """

    def __init__(self, boxes, labels, targets, features):
        if not (boxes.size(0) == labels.size(0) == targets.size(0) ==
                features.size(0)):
            raise ValueError(
                f'auxiliary candidates: boxes {tuple(boxes.shape)}, labels '
                f'{tuple(labels.shape)}, targets {tuple(targets.shape)} and '
                f'features {tuple(features.shape)} must have one row each')
        self.boxes = boxes
        self.labels = labels
        self.targets = targets
        self.features = features

    def positives(self, num_classes):
        """[P] long indices of the boxes assigned to an object."""
        return ((self.labels >= 0) &
                (self.labels < num_classes)).nonzero().squeeze(1)

    def negatives(self, num_classes):
        """[M] long indices of the boxes assigned to the background."""
        return (self.labels == num_classes).nonzero().squeeze(1)


def random_subset(indices, num):
    """``num`` of ``indices`` in random order (all, shuffled, if fewer);
    drawn with ``torch.randperm`` on the CPU generator, as Co-DETR draws."""
    order = torch.randperm(indices.numel())[:num].to(indices.device)
    return indices[order]


def select_positives(candidates, img_metas, num_classes, max_per_image,
                     min_queries=MIN_QUERIES):
    """The auxiliary queries' boxes, features and targets of a batch.

    Every image gets ``n = max(min_queries, min(max_per_image, the most
    positives of an image))`` queries: its positives first (a random
    ``max_per_image`` of them if it has more), then random negatives. An
    image with too few negatives is filled with zero boxes and features
    (background as well).

    Args:
        candidates (list[AuxiliaryCandidates]): Per image.
        img_metas (list[dict]): Per image, ``img_shape``.
        num_classes (int): Label of the background.
        max_per_image (int): Most positives kept per image.
        min_queries (int): Least queries per image.

    Returns:
        tuple: reference [bs, n, 4] (cx, cy, w, h) of the boxes divided by
        the image size (not clamped: anchors may cross the border),
        features [bs, n, c], matches (per image ``(arange(P_i),
        arange(P_i))``), targets (``gt_bboxes`` [P_i, 4] pixels and
        ``gt_labels`` [P_i] per image: what the head assigned the kept
        positives).
    """
    positives = [c.positives(num_classes) for c in candidates]
    most = max(p.numel() for p in positives)
    num = max(min_queries, min(max_per_image, most))
    references, features, matches = [], [], []
    targets = dict(gt_bboxes=[], gt_labels=[])
    for cand, pos, meta in zip(candidates, positives, img_metas):
        if pos.numel() > num:
            pos = random_subset(pos, num)
        rows = pos
        if pos.numel() < num:
            neg = random_subset(cand.negatives(num_classes),
                                num - pos.numel())
            rows = torch.cat([pos, neg])
        reference = cand.boxes.new_zeros(num, 4)
        reference[:rows.numel()] = normalised_cxcywh(cand.boxes[rows],
                                                     meta['img_shape'])
        feature = cand.features.new_zeros(num, cand.features.size(1))
        feature[:rows.numel()] = cand.features[rows]
        references.append(reference)
        features.append(feature)
        kept = torch.arange(pos.numel(), device=pos.device)
        matches.append((kept, kept))
        targets['gt_bboxes'].append(cand.targets[pos])
        targets['gt_labels'].append(cand.labels[pos])
    return (torch.stack(references).detach(), torch.stack(features),
            matches, targets)


def box_logit_embedding(transformer, reference, channels):
    """Co-DETR's sine embedding of auxiliary boxes [bs, n, 4] -> [bs, n,
    2 x channels]: through the box's logit (clamped to [0, 1] first), so a
    box beyond the border is embedded as at the border."""
    return transformer.get_proposal_pos_embed(
        inverse_sigmoid(reference), num_pos_feats=channels // 2)


@MODELS.register_module()
class AuxiliaryQueryEmbedding(nn.Module):
    """One auxiliary head's queries of boxes (Co-Deformable-DETR's
    per-head layers).

    Args:
        embed_dims (int): Query width c.
    """

    def __init__(self, embed_dims=256):
        super().__init__()
        self.position = nn.Linear(2 * embed_dims, 2 * embed_dims)
        self.position_norm = nn.LayerNorm(2 * embed_dims)
        self.feature = nn.Linear(embed_dims, embed_dims)
        self.feature_norm = nn.LayerNorm(embed_dims)
        # One number added to every channel of the head's positional
        # queries: Co-DETR's per-head embedding is [heads, 1] wide.
        self.head_offset = nn.Parameter(torch.zeros(1))
        self.init_weights()

    def init_weights(self):
        """Co-DETR's: its transformer's xavier-uniform init of every matrix,
        the [2 heads, 1] offset table included (bound sqrt(6 / 3))."""
        nn.init.xavier_uniform_(self.position.weight)
        nn.init.xavier_uniform_(self.feature.weight)
        nn.init.uniform_(self.head_offset, -math.sqrt(2.), math.sqrt(2.))

    def forward(self, transformer, reference, features):
        """Queries at ``reference`` with the head's ``features``.

        Args:
            transformer: Has ``get_proposal_pos_embed`` (the
                Deformable-DETR transformer).
            reference (Tensor): [bs, n, 4] (cx, cy, w, h) boxes, normalised.
            features (Tensor): [bs, n, c].

        Returns:
            DecoderQueries: content and position [bs, n, c], ``reference``
            as given (the decoder's first reference).
        """
        channels = features.size(-1)
        sine = box_logit_embedding(transformer, reference, channels)
        position, content = self.position_norm(self.position(sine)).split(
            channels, dim=-1)
        content = content + self.feature_norm(self.feature(features))
        return DecoderQueries(content, position + self.head_offset,
                              reference)


@MODELS.register_module()
class AuxiliaryContentEmbedding(nn.Module):
    """One auxiliary head's content queries of boxes (Co-DINO's per-head
    layers): a linear layer and a norm on the box's sine embedding; the
    head's features are not used (Co-DINO's ``with_coord_feat=False``).

    Args:
        embed_dims (int): Query width c.
    """

    def __init__(self, embed_dims=256):
        super().__init__()
        self.content = nn.Linear(2 * embed_dims, embed_dims)
        self.content_norm = nn.LayerNorm(embed_dims)
        # Co-DETR's transformer init: xavier-uniform matrices (biases keep
        # torch's default).
        nn.init.xavier_uniform_(self.content.weight)

    def forward(self, transformer, reference, features):
        """Queries at ``reference`` (arguments as
        :meth:`AuxiliaryQueryEmbedding.forward`).

        Returns:
            DecoderQueries: of ``transformer.queries_from_boxes`` (DINO's:
            no positions; the decoder makes them from ``reference``, taken
            as given, beyond the border included).
        """
        sine = box_logit_embedding(transformer, reference,
                                   features.size(-1))
        return transformer.queries_from_boxes(
            reference, self.content_norm(self.content(sine)))
