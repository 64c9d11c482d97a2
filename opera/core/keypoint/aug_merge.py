"""Test-time augmentation of pose results: map each run back to the
original image and merge the runs (Opera's ``PETR.aug_test``).

Opera merges an image and its horizontal flip by concatenating both sets of
persons and keeping a box NMS over them (``test_cfg.nms``, soft-NMS with IoU
0.5 in its CrowdPose flip-test config). :func:`oks_nms` is an alternative
that suppresses by pose similarity instead of box overlap (see
``docs/model_zoo.md`` for the trade-off).
"""
import torch
from mmcv.ops import batched_nms

from .oks import pairwise_oks

FLIP_AXES = dict(horizontal=(0, ), vertical=(1, ), diagonal=(0, 1))


def keypoints_mapping_back(keypoints, img_meta, flip_index, rescale=True):
    """Keypoints of an augmented run in pixels of the original image.

    The flip of ``RandomFlip`` happens on the resized image before padding,
    so the mirror is in that image's own size (``img_shape``), not in the
    padded one: ``x -> w - x`` (mmdet's box convention). A horizontal or
    vertical mirror also swaps left and right keypoints; a diagonal flip
    (both mirrors) swaps none.

    Args:
        keypoints (Tensor): [n, K, 2] pixels of the augmented image
            (``img_meta['img_shape']``).
        img_meta (dict): ``img_shape``, ``scale_factor``, ``flip`` and
            ``flip_direction`` of the run.
        flip_index (list[int]): Entry k is the keypoint that k becomes in a
            mirror (:meth:`KeypointLayout.flip_index`).
        rescale (bool): Divide by the resize factors (original image).

    Returns:
        Tensor: [n, K, 2].
    """
    keypoints = keypoints.clone()
    if img_meta.get('flip', False):
        direction = img_meta.get('flip_direction') or 'horizontal'
        if direction not in FLIP_AXES:
            raise ValueError(f"Invalid flipping direction '{direction}'")
        img_h, img_w = img_meta['img_shape'][:2]
        for axis in FLIP_AXES[direction]:
            keypoints[..., axis] = (img_w, img_h)[axis] - keypoints[..., axis]
        if direction != 'diagonal':
            keypoints = keypoints[:, flip_index]
    if rescale:
        keypoints = keypoints / keypoints.new_tensor(
            img_meta['scale_factor'][:2])
    return keypoints


def oks_nms(keypoints, scores, sigmas, oks_thr):
    """Greedy NMS by object keypoint similarity.

    Persons are visited by decreasing score; each kept person suppresses
    the later ones whose OKS with it exceeds ``oks_thr``. OKS is taken
    with the kept person as the reference, every keypoint counted, and the
    area of its keypoint box (clamped to >= 1 pixel^2) as the scale.

    Args:
        keypoints (Tensor): [n, K, 2] pixels.
        scores (Tensor): [n].
        sigmas (Sequence[float]): K OKS sigmas.
        oks_thr (float): Suppression threshold in [0, 1].

    Returns:
        Tensor: Indices [m] of the kept persons, by decreasing score.
    """
    order = scores.argsort(descending=True)
    ordered = keypoints[order]
    sides = ordered.amax(1) - ordered.amin(1)
    areas = (sides[:, 0] * sides[:, 1]).clamp(min=1)
    visible = ordered.new_ones(ordered.shape[:2], dtype=torch.bool)
    # similar[i, j]: OKS of person i against person j as the reference.
    similar = pairwise_oks(ordered, ordered, visible, areas,
                           ordered.new_tensor(sigmas)) > oks_thr
    suppressed = torch.zeros_like(scores, dtype=torch.bool)
    kept = []
    for i in range(len(order)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= similar[:, i]
    return order[order.new_tensor(kept, dtype=torch.long)]


def merge_aug_poses(aug_results, aug_metas, layout, test_cfg, rescale=True):
    """Merge the persons of several runs of one image (e.g. it and its
    flip) as Opera does: map each run back, concatenate, NMS, keep the top
    ``max_per_img``.

    Args:
        aug_results (list[tuple[Tensor]]): Per run ``(boxes [m, 5], labels
            [m], keypoints [m, K, 3])`` in pixels of the augmented image.
        aug_metas (list[dict]): Per run the image meta.
        layout (KeypointLayout): Gives the flip pairs and the OKS sigmas.
        test_cfg (dict): ``max_per_img``, ``nms`` (an mmcv NMS config such
            as ``dict(type='soft_nms', iou_threshold=0.5)``, or
            ``dict(type='oks_nms', oks_thr=0.9)``) and ``score_thr``
            (default 0: persons scoring at most this are dropped first).
        rescale (bool): Results in pixels of the original image.

    Returns:
        tuple[Tensor]: ``boxes`` [n, 5] (x1, y1, x2, y2, score), ``labels``
        [n], ``keypoints`` [n, K, 3] (x, y, 1); boxes are the keypoints'
        rectangles, scores soft-NMS-decayed with soft-NMS.
    """
    if 'nms' not in test_cfg:
        raise KeyError('test-time augmentation merges the runs with an NMS: '
                       "set test_cfg.nms, e.g. dict(type='soft_nms', "
                       'iou_threshold=0.5) as Opera, or '
                       "dict(type='oks_nms', oks_thr=0.9)")
    flip_index = layout.flip_index()
    keypoints = torch.cat([
        keypoints_mapping_back(kpts[..., :2], meta, flip_index, rescale)
        for (_, _, kpts), meta in zip(aug_results, aug_metas)
    ])
    scores = torch.cat([boxes[:, 4] for boxes, _, _ in aug_results])
    labels = torch.cat([labels for _, labels, _ in aug_results])
    candidates = scores > test_cfg.get('score_thr', 0.)
    keypoints, scores = keypoints[candidates], scores[candidates]
    labels = labels[candidates]
    boxes = torch.cat([keypoints.amin(1), keypoints.amax(1)], 1)
    nms_cfg = dict(test_cfg['nms'])
    if nms_cfg.pop('type', None) == 'oks_nms':
        kept = oks_nms(keypoints, scores, layout.sigmas, **nms_cfg)
        kept_scores = scores[kept]
    else:
        dets, kept = batched_nms(boxes, scores, labels, test_cfg['nms'])
        kept_scores = dets[:, 4]
    kept = kept[:test_cfg['max_per_img']]
    kept_scores = kept_scores[:test_cfg['max_per_img']]
    keypoints = keypoints[kept]
    boxes = torch.cat([boxes[kept], kept_scores[:, None]], 1)
    keypoints = torch.cat(
        [keypoints, keypoints.new_ones(keypoints[..., :1].shape)], -1)
    return boxes, labels[kept], keypoints
