"""Array helpers for person keypoints.

Keypoints of ``n`` instances are stored as ``[n, K, 3]`` rows of
``(x, y, v)``: pixel coordinates in the continuous convention (pixel ``(i, j)``
covers ``[i, i + 1) x [j, j + 1)``, so its centre is ``(i + 0.5, j + 0.5)``)
and a visibility / score ``v``; ``v == 0`` marks a keypoint that is not
labelled, stored as ``(0, 0, 0)``.
"""
import numpy as np
import torch


def flip_keypoints(keypoints, img_shape, flip_pairs, direction='horizontal'):
    """Mirror keypoints inside an image and swap left/right names.

    A mirror turns a person's left side into the right side, so a
    horizontal or vertical flip also swaps every pair in ``flip_pairs``;
    a diagonal flip (both mirrors, i.e. a 180 degree rotation) swaps none.
    Coordinates follow the box convention of mmdet: ``x -> w - x``,
    ``y -> h - y``. Unlabelled keypoints (``v == 0``) are left unchanged.

    Args:
        keypoints (np.ndarray): Shape [n, K, 3].
        img_shape (tuple[int]): ``(h, w, ...)`` of the image.
        flip_pairs (list[list[int]]): Index pairs ``[left, right]``.
        direction (str): 'horizontal', 'vertical' or 'diagonal'.

    Returns:
        np.ndarray: Flipped keypoints, shape [n, K, 3].
    """
    axes = dict(horizontal=(0, ), vertical=(1, ), diagonal=(0, 1))
    if direction not in axes:
        raise ValueError(f"Invalid flipping direction '{direction}'")
    flipped = keypoints.copy()
    labelled = flipped[..., 2] > 0
    for axis in axes[direction]:
        size = img_shape[1 - axis]
        flipped[..., axis] = np.where(labelled, size - flipped[..., axis],
                                      flipped[..., axis])
    if direction != 'diagonal':
        lefts = [left for left, _ in flip_pairs]
        rights = [right for _, right in flip_pairs]
        flipped[:, lefts + rights] = flipped[:, rights + lefts]
    return flipped


def zero_outside_keypoints(keypoints, img_shape):
    """Set keypoints outside the image (or unlabelled) to ``(0, 0, 0)``.

    A keypoint is kept when ``v > 0``, ``0 <= x <= w`` and ``0 <= y <= h``.

    Args:
        keypoints (np.ndarray): Shape [n, K, 3].
        img_shape (tuple[int]): ``(h, w, ...)`` of the image.

    Returns:
        np.ndarray: Keypoints of shape [n, K, 3] with the others zeroed.
    """
    h, w = img_shape[:2]
    x, y, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    inside = (v > 0) & (x >= 0) & (x <= w) & (y >= 0) & (y <= h)
    return np.where(inside[..., None], keypoints, 0).astype(keypoints.dtype)


def visible_keypoint_bboxes(keypoints):
    """The tightest box around the labelled keypoints of each instance.

    Args:
        keypoints (np.ndarray | torch.Tensor): Shape [n, K, 3].

    Returns:
        np.ndarray | torch.Tensor: Boxes ``(x1, y1, x2, y2)``, shape [n, 4];
        all zeros for an instance without labelled keypoints. A tensor
        input gives a (non-differentiable) tensor on the same device.
    """
    if isinstance(keypoints, torch.Tensor):
        boxes = visible_keypoint_bboxes(keypoints.detach().cpu().numpy())
        return torch.from_numpy(boxes).to(keypoints)
    labelled = keypoints[..., 2:3] > 0
    xy = keypoints[..., :2]
    low = np.where(labelled, xy, np.inf).min(axis=1)
    high = np.where(labelled, xy, -np.inf).max(axis=1)
    boxes = np.concatenate([low, high], axis=1)
    boxes[~labelled[..., 0].any(axis=1)] = 0
    return boxes.astype(keypoints.dtype)


def bbox_kpt2result(bboxes, labels, keypoints, num_classes):
    """Split one image's detections into the per-class results format.

    Args:
        bboxes (np.ndarray | torch.Tensor): Shape [n, 5], rows
            ``(x1, y1, x2, y2, score)``.
        labels (np.ndarray | torch.Tensor): Shape [n], class indices.
        keypoints (np.ndarray | torch.Tensor): Shape [n, K, 3], rows
            ``(x, y, keypoint score)``.
        num_classes (int): Number of classes.

    Returns:
        tuple[list[np.ndarray], list[np.ndarray]]: ``(bbox_results,
        keypoint_results)``; entry ``c`` of each list holds class ``c``:
        [m, 5] float32 and [m, K, 3] float32.
    """
    arrays = []
    for array in (bboxes, labels, keypoints):
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        arrays.append(np.asarray(array))
    bboxes, labels, keypoints = arrays
    bboxes = bboxes.astype(np.float32).reshape(-1, 5)
    keypoints = keypoints.astype(np.float32).reshape(len(bboxes), -1, 3)
    bbox_results = [bboxes[labels == c] for c in range(num_classes)]
    keypoint_results = [keypoints[labels == c] for c in range(num_classes)]
    return bbox_results, keypoint_results
