"""Detections of one image from a DETR head's last-layer queries.

mmdet's DETR heads keep the ``max_per_img`` best (query, class) pairs and
need no NMS. Co-DINO's recipe adds one at test time: the best ``num_query``
pairs, a class-wise (soft-)NMS over them, then the ``max_per_img`` best
(Co-DETR's ``test_cfg.nms``). :func:`nms_detections` is that path.
"""
import inspect

from mmcv.ops import batched_nms, nms, soft_nms
from mmdet.core import bbox_cxcywh_to_xyxy

#: The NMS kinds mmcv's ``batched_nms`` runs by ``type``.
NMS_OPS = dict(nms=nms, soft_nms=soft_nms)
#: Keys ``batched_nms`` reads itself, besides the NMS function's.
BATCHED_NMS_KEYS = ('type', 'class_agnostic', 'split_thr')


def check_nms_cfg(nms_cfg, where='model.test_cfg.nms'):
    """Raise a ValueError naming ``where`` unless ``nms_cfg`` is one
    ``batched_nms`` runs: a known ``type`` and only that function's keys
    (mmcv would find a misspelt one only at the first test, after a
    whole training)."""
    kind = nms_cfg.get('type', 'nms')
    if kind not in NMS_OPS:
        raise ValueError(f'{where}.type {kind!r}: one of {sorted(NMS_OPS)}')
    params = inspect.signature(NMS_OPS[kind]).parameters
    known = set(BATCHED_NMS_KEYS) | set(params) - {'boxes', 'scores'}
    unknown = sorted(set(nms_cfg) - known)
    if unknown:
        raise ValueError(f'{where} ({kind}) has unknown key(s) '
                         f'{", ".join(unknown)} (known: '
                         f'{", ".join(sorted(known))})')


def ranked_detections(cls_logits, boxes, img_shape, num):
    """The ``num`` best (query, class) pairs of one image, best first.

    Args:
        cls_logits (Tensor): [Q, C] sigmoid class logits.
        boxes (Tensor): [Q, 4] (cx, cy, w, h) in [0, 1] of the image.
        img_shape (tuple): (h, w, ...) of the image in the batch.
        num (int): Pairs kept (at most Q x C).

    Returns:
        tuple[Tensor, Tensor, Tensor]: boxes [num, 4] (x1, y1, x2, y2)
        pixels of the image in the batch, clamped to it; scores [num];
        labels [num].
    """
    num_classes = cls_logits.size(-1)
    scores, indexes = cls_logits.sigmoid().view(-1).topk(num)
    labels = indexes % num_classes
    corners = bbox_cxcywh_to_xyxy(boxes[indexes // num_classes])
    height, width = img_shape[:2]
    corners[:, 0::2] = (corners[:, 0::2] * width).clamp(min=0, max=width)
    corners[:, 1::2] = (corners[:, 1::2] * height).clamp(min=0, max=height)
    return corners, scores, labels


def nms_detections(cls_logits, boxes, img_meta, rescale, nms_cfg,
                   max_per_img):
    """One image's detections after a class-wise NMS (Co-DINO's test).

    Args:
        cls_logits, boxes: As :func:`ranked_detections`; all Q queries'
            best pairs (Q of them) enter the NMS.
        img_meta (dict): ``img_shape`` and ``scale_factor``.
        rescale (bool): Boxes in pixels of the original image (before the
            NMS, as Co-DETR).
        nms_cfg (dict): mmcv's ``batched_nms`` config, e.g.
            ``dict(type='soft_nms', iou_threshold=0.8)``.
        max_per_img (int): Detections kept after the NMS.

    Returns:
        tuple[Tensor, Tensor]: boxes with scores [m, 5] (soft-NMS'
        rescored), best first, and labels [m], m <= ``max_per_img``.
    """
    corners, scores, labels = ranked_detections(cls_logits, boxes,
                                                img_meta['img_shape'],
                                                cls_logits.size(0))
    if rescale:
        corners = corners / corners.new_tensor(img_meta['scale_factor'])
    dets, keep = batched_nms(corners, scores, labels, nms_cfg)
    return dets[:max_per_img], labels[keep][:max_per_img]
