"""What a box criterion trains each query's class score towards.

A one-to-one DETR trains the matched query's class towards 1 (its label) and
every other (query, class) towards 0. IoU-aware variants give the matched
class a soft target that says how good the box is, for a class loss that
takes ``(labels, scores)`` (mmdet's ``QualityFocalLoss``):

=========  ===================================================  ============
``type``   target score of a matched query's class              used by
=========  ===================================================  ============
labels     1 (the label alone; the loss gets ``labels``)        DETR, DINO
iou        IoU of its box with its object                       Co-DINO
align      s^alpha x IoU^(1 - alpha), s its predicted score      Align-DETR
=========  ===================================================  ============

The IoUs are computed on the normalised (cx, cy, w, h) boxes and, like the
predicted scores, detached: a target is not a path for gradients.
"""
import inspect

from mmdet.core import bbox_cxcywh_to_xyxy, bbox_overlaps

KINDS = ('labels', 'iou', 'align')
# Class losses that take (labels, target scores) rather than labels.
SCORE_TARGET_LOSSES = ('QualityFocalLoss', )


class ClassTargets:
    """The class-target rule of a criterion (see the module doc).

    Args:
        type (str): One of ``labels``, ``iou``, ``align``.
        alpha (float): Align-DETR's exponent of the predicted score
            (``align`` only).
    """

    def __init__(self, type='labels', alpha=0.25):
        if type not in KINDS:
            raise ValueError(f'class_targets type {type!r} is not one of '
                             f'{KINDS}')
        if type != 'align' and alpha != 0.25:
            raise ValueError(f'class_targets alpha is an option of '
                             f"type='align', not of {type!r}")
        self.type = type
        self.alpha = alpha

    def __repr__(self):
        return f'ClassTargets(type={self.type!r}, alpha={self.alpha})'

    @property
    def with_scores(self):
        """Whether the class loss gets ``(labels, scores)``."""
        return self.type != 'labels'

    def __call__(self, cls_scores, bbox_preds, bbox_targets, labels,
                 num_classes):
        """The class loss's target.

        Args:
            cls_scores (Tensor): [N, C] logits.
            bbox_preds (Tensor): [N, 4] (cx, cy, w, h) in [0, 1].
            bbox_targets (Tensor): [N, 4] (cx, cy, w, h) in [0, 1].
            labels (Tensor): [N]; ``num_classes`` is the background.
            num_classes (int): Object classes.

        Returns:
            Tensor | tuple[Tensor, Tensor]: ``labels``, or ``(labels,
            scores [N])`` with 0 for the unmatched queries.
        """
        if self.type == 'labels':
            return labels
        matched = matched_rows(labels, num_classes)
        scores = matched_ious(bbox_preds, bbox_targets, labels, num_classes,
                              matched)
        if self.type == 'align':
            predicted = cls_scores.detach()[matched, labels[matched]]
            scores[matched] = (predicted.sigmoid().pow(self.alpha) *
                               scores[matched].pow(1 - self.alpha))
        return labels, scores


def build_class_targets(cfg, loss_cls):
    """A :class:`ClassTargets` from its config, checked against the class
    loss config it feeds.

    Args:
        cfg (dict | None): ``dict(type=..., alpha=...)``; None: labels.
        loss_cls (dict): The class loss config.
    """
    cfg = dict(cfg or {})
    known = list(inspect.signature(ClassTargets).parameters)
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise TypeError(f'model.bbox_head.criterion.class_targets: unknown '
                        f'keys {unknown}; known: {known}')
    targets = ClassTargets(**cfg)
    takes_scores = loss_cls['type'].split('.')[-1] in SCORE_TARGET_LOSSES
    if takes_scores != targets.with_scores:
        raise ValueError(
            f'the class loss {loss_cls["type"]} takes '
            f'{"(labels, scores)" if takes_scores else "labels"} but '
            f'class_targets={targets} gives '
            f'{"(labels, scores)" if targets.with_scores else "labels"}: '
            f'set model.bbox_head.criterion.class_targets '
            f'(e.g. dict(type="iou") for a QualityFocalLoss)')
    return targets


def matched_rows(labels, num_classes):
    """[n] indices of the matched queries: labels in [0, num_classes)."""
    return ((labels >= 0) & (labels < num_classes)).nonzero().squeeze(1)


def matched_ious(bbox_preds, bbox_targets, labels, num_classes,
                 matched=None):
    """Each matched query's IoU with its object, 0 for the others.

    Args:
        bbox_preds (Tensor): [N, 4] (cx, cy, w, h) in [0, 1]; detached
            here.
        bbox_targets (Tensor): [N, 4] (cx, cy, w, h) in [0, 1].
        labels (Tensor): [N]; ``num_classes`` (background) or beyond marks
            the unmatched queries.
        num_classes (int): Object classes.
        matched (Tensor | None): :func:`matched_rows`, if already found.

    Returns:
        Tensor: [N] IoU in [0, 1], computed on the normalised boxes (as
        Co-DETR does).
    """
    scores = bbox_preds.new_zeros(labels.shape)
    if matched is None:
        matched = matched_rows(labels, num_classes)
    scores[matched] = bbox_overlaps(
        bbox_cxcywh_to_xyxy(bbox_preds[matched].detach()),
        bbox_cxcywh_to_xyxy(bbox_targets[matched]),
        is_aligned=True)
    return scores
