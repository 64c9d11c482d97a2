"""Geometric transforms that also move person keypoints.

Conventions shared by every transform here:

- ``results['gt_keypoints']`` is [n, K, 3] float32 ``(x, y, v)`` in
  continuous pixel coordinates (pixel ``(i, j)`` covers
  ``[i, i + 1) x [j, j + 1)``, the convention of mmdet's boxes);
  unlabelled keypoints are ``(0, 0, 0)``.
- Instance-aligned entries are ``gt_bboxes``, ``gt_labels`` and every key in
  ``results['keypoint_fields']`` and ``results['area_fields']``; when an
  instance is dropped it is dropped from all of them.
- A keypoint moved outside ``[0, w] x [0, h]`` becomes ``(0, 0, 0)``; an
  instance left without labelled keypoints is dropped.
- Masks and segmentation maps are not supported by the keypoint-aware
  crop and rotation.
"""
import math

import cv2
import numpy as np
from mmdet.datasets.pipelines import RandomCrop as MMDetRandomCrop
from mmdet.datasets.pipelines import RandomFlip as MMDetRandomFlip
from mmdet.datasets.pipelines import Resize as MMDetResize

from ...core.keypoint import flip_keypoints, zero_outside_keypoints
from ..builder import PIPELINES


def _box_has_area(boxes):
    """[n] bool: whether each [n, 4] box has positive width and height."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def drop_lost_instances(results):
    """Drop instances that a crop or warp has lost.

    An instance is lost when its ``gt_bboxes`` box has no area or its
    keypoints have no labelled point left; ignore boxes without area are
    dropped too.

    Args:
        results (dict): Pipeline results, see the module conventions.

    Returns:
        int: The number of instances kept.
    """
    if 'gt_bboxes_ignore' in results:
        ignores = results['gt_bboxes_ignore']
        results['gt_bboxes_ignore'] = ignores[_box_has_area(ignores)]
    keypoint_keys = results.get('keypoint_fields', [])
    instance_keys = ['gt_bboxes', 'gt_labels'] + keypoint_keys + results.get(
        'area_fields', [])
    instance_keys = [key for key in instance_keys if key in results]
    if not instance_keys:
        return 0
    keep = np.ones(len(results[instance_keys[0]]), dtype=bool)
    if 'gt_bboxes' in results:
        keep &= _box_has_area(results['gt_bboxes'])
    for key in keypoint_keys:
        keep &= (results[key][..., 2] > 0).any(axis=1)
    for key in instance_keys:
        results[key] = results[key][keep]
    return int(keep.sum())


@PIPELINES.register_module()
class Resize(MMDetResize):
    """mmdet's ``Resize`` that also scales keypoints and areas.

    Keypoint ``x`` / ``y`` are multiplied by the width / height scale
    factors and areas by their product. All of mmdet's options
    (``img_scale``, ``multiscale_mode``, ``ratio_range``, ``keep_ratio``,
    ``override``, ...) are kept.
    """

    # Moves gt_keypoints with the image (see keypoint_checks.py).
    keypoint_aware = True

    def __call__(self, results):
        """Resize image, boxes, keypoints and areas.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: ``results`` with ``scale_factor`` [4] set.
        """
        results = super().__call__(results)
        scale_x, scale_y = results['scale_factor'][:2]
        for key in results.get('keypoint_fields', []):
            keypoints = results[key].copy()
            keypoints[..., 0] *= scale_x
            keypoints[..., 1] *= scale_y
            results[key] = keypoints
        for key in results.get('area_fields', []):
            results[key] = results[key] * (scale_x * scale_y)
        return results


@PIPELINES.register_module()
class RandomFlip(MMDetRandomFlip):
    """mmdet's ``RandomFlip`` that also mirrors keypoints.

    Keypoints follow the box convention (``x -> w - x`` horizontally), so a
    keypoint moves with the pixel under it; left/right keypoints are
    swapped (see :func:`opera.core.keypoint.flip_keypoints`).

    Args:
        flip_pairs (list[list[int]], optional): ``[left, right]`` index
            pairs, for pipelines run without a pose dataset. Defaults to
            ``results['flip_pairs']``, which the pose datasets set from
            their keypoint layout; pairs given here must equal those.
        *args, **kwargs: Those of mmdet's ``RandomFlip``.
    """

    keypoint_aware = True

    def __init__(self, *args, flip_pairs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.flip_pairs = flip_pairs

    def __call__(self, results):
        """Maybe flip image, boxes and keypoints.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: ``results`` with ``flip`` and ``flip_direction`` set.
        """
        results = super().__call__(results)
        keypoint_keys = results.get('keypoint_fields', [])
        if not results['flip'] or not keypoint_keys:
            return results
        flip_pairs = self._flip_pairs(results.get('flip_pairs'))
        for key in keypoint_keys:
            results[key] = flip_keypoints(results[key], results['img_shape'],
                                          flip_pairs,
                                          results['flip_direction'])
        return results

    def _flip_pairs(self, dataset_pairs):
        """The pairs to swap: the dataset's and/or this transform's, which
        must not disagree (the dataset's come from its keypoint layout)."""
        if self.flip_pairs is None and dataset_pairs is None:
            raise KeyError('flipping keypoints needs flip_pairs: pass them '
                           "to RandomFlip or set results['flip_pairs']")
        if dataset_pairs is None:
            return self.flip_pairs
        if (self.flip_pairs is not None and _pairs(self.flip_pairs) !=
                _pairs(dataset_pairs)):
            raise ValueError(
                f'RandomFlip(flip_pairs={self.flip_pairs}) differs from the '
                f"dataset's flip pairs {dataset_pairs} (its keypoint "
                'layout): remove flip_pairs from the RandomFlip config')
        return dataset_pairs

    def __repr__(self):
        return super().__repr__()[:-1] + f', flip_pairs={self.flip_pairs})'


def _pairs(pairs):
    """``pairs`` as a list of int lists, for comparison."""
    return [[int(i) for i in pair] for pair in pairs]


@PIPELINES.register_module()
class RandomCrop(MMDetRandomCrop):
    """mmdet's ``RandomCrop`` that also moves keypoints.

    Keypoints are shifted with the crop; those outside the crop become
    ``(0, 0, 0)`` and instances without labelled keypoints (or whose clipped
    box has no area) are dropped. Areas are NOT changed by the crop: they
    keep describing the whole person, as in the PETR reference, so the OKS
    scale of a partly visible person stays that of the full person.

    Args:
        allow_negative_crop (bool): Keep a crop that contains no instance;
            if False, such a crop returns None (the dataset then draws
            another image).
        *args, **kwargs: Those of mmdet's ``RandomCrop`` (``crop_size``,
            ``crop_type``, ``bbox_clip_border``).
    """

    keypoint_aware = True

    def _crop_data(self, results, crop_size, allow_negative_crop):
        """Crop at a random offset.

        Args:
            results (dict): Pipeline results.
            crop_size (tuple[int]): ``(h, w)`` of the crop.
            allow_negative_crop (bool): See the class docstring.

        Returns:
            dict | None: Cropped ``results``, or None for an empty crop
            that is not allowed.
        """
        img_h, img_w = results['img'].shape[:2]
        crop_h, crop_w = min(crop_size[0], img_h), min(crop_size[1], img_w)
        top = np.random.randint(0, img_h - crop_h + 1)
        left = np.random.randint(0, img_w - crop_w + 1)
        for key in results.get('img_fields', ['img']):
            results[key] = results[key][top:top + crop_h, left:left + crop_w]
        img_shape = results['img'].shape
        results['img_shape'] = img_shape
        shift = np.array([left, top], dtype=np.float32)
        for key in results.get('bbox_fields', []):
            boxes = results[key] - np.tile(shift, 2)
            if self.bbox_clip_border:
                boxes[:, 0::2] = boxes[:, 0::2].clip(0, crop_w)
                boxes[:, 1::2] = boxes[:, 1::2].clip(0, crop_h)
            results[key] = boxes
        for key in results.get('keypoint_fields', []):
            keypoints = results[key].copy()
            keypoints[..., :2] -= shift
            results[key] = zero_outside_keypoints(keypoints, img_shape)
        if drop_lost_instances(results) == 0 and not allow_negative_crop:
            return None
        return results


@PIPELINES.register_module()
class RandomAffine:
    """Random rotation (and optional shear) about the image centre.

    The image keeps its size; uncovered pixels get ``border_val``.
    Keypoints are mapped exactly with the image (the warp is built in
    continuous coordinates and shifted by half a pixel for OpenCV); those
    leaving the image become ``(0, 0, 0)`` and instances without labelled
    keypoints are dropped. Boxes become the rotated box corners' bounding
    box clipped to the image. Areas are unchanged (rotation keeps area).

    Args:
        max_rotate_degree (float): Angle drawn uniformly in
            ``[-max, max]`` degrees.
        max_shear_degree (float): x and y shear angles drawn uniformly in
            ``[-max, max]`` degrees (0 disables shear).
        border_val (tuple[float]): Fill value per channel.
        skip_empty (bool): Return None (the dataset then draws another
            image) when no instance survives.
    """

    keypoint_aware = True

    def __init__(self,
                 max_rotate_degree=30.0,
                 max_shear_degree=0.0,
                 border_val=(114, 114, 114),
                 skip_empty=True):
        self.max_rotate_degree = max_rotate_degree
        self.max_shear_degree = max_shear_degree
        self.border_val = tuple(border_val)
        self.skip_empty = skip_empty

    def __call__(self, results):
        """Warp image, boxes and keypoints with one random matrix.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict | None: Warped ``results`` (None, see ``skip_empty``).
        """
        img_shape = results['img'].shape
        height, width = img_shape[:2]
        matrix = self._random_matrix(height, width)
        pixel_matrix = _translation(-0.5, -0.5) @ matrix @ _translation(
            0.5, 0.5)
        for key in results.get('img_fields', ['img']):
            results[key] = cv2.warpAffine(
                results[key],
                pixel_matrix[:2],
                dsize=(width, height),
                borderValue=self.border_val)
        for key in results.get('bbox_fields', []):
            results[key] = self._warp_bboxes(results[key], matrix, img_shape)
        for key in results.get('keypoint_fields', []):
            keypoints = results[key].copy()
            keypoints[..., :2] = _apply(matrix, keypoints[..., :2])
            results[key] = zero_outside_keypoints(keypoints, img_shape)
        if drop_lost_instances(results) == 0 and self.skip_empty:
            return None
        return results

    def _random_matrix(self, height, width):
        """[3, 3] warp in continuous coordinates about the image centre."""
        angle = _random_radians(self.max_rotate_degree)
        shear_x = math.tan(_random_radians(self.max_shear_degree))
        shear_y = math.tan(_random_radians(self.max_shear_degree))
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
        shear = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]])
        centre_x, centre_y = width / 2, height / 2
        return (_translation(centre_x, centre_y) @ shear @ rotation
                @ _translation(-centre_x, -centre_y))

    @staticmethod
    def _warp_bboxes(bboxes, matrix, img_shape):
        """Bounding boxes of the warped corners, clipped to the image.

        Args:
            bboxes (np.ndarray): Shape [n, 4].
            matrix (np.ndarray): Shape [3, 3].
            img_shape (tuple[int]): ``(h, w, ...)``.

        Returns:
            np.ndarray: Shape [n, 4], same dtype.
        """
        corners = bboxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2)
        corners = _apply(matrix, corners)
        warped = np.concatenate([corners.min(axis=1), corners.max(axis=1)], 1)
        warped[:, 0::2] = warped[:, 0::2].clip(0, img_shape[1])
        warped[:, 1::2] = warped[:, 1::2].clip(0, img_shape[0])
        return warped.astype(bboxes.dtype)

    def __repr__(self):
        return (f'{type(self).__name__}('
                f'max_rotate_degree={self.max_rotate_degree}, '
                f'max_shear_degree={self.max_shear_degree}, '
                f'border_val={self.border_val}, '
                f'skip_empty={self.skip_empty})')


def _random_radians(max_degree):
    """An angle drawn uniformly in ``[-max_degree, max_degree]`` degrees, in
    radians."""
    return math.radians(np.random.uniform(-max_degree, max_degree))


def _translation(x, y):
    """[3, 3] homogeneous translation by ``(x, y)``."""
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], dtype=np.float64)


def _apply(matrix, points):
    """Apply a [3, 3] affine matrix to points of shape [..., 2]."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]
