"""Keypoint helpers shared by datasets, pipelines, assigners and pose heads."""
from .heatmap_target import centernet_gaussian_radius, keypoint_heatmap_target
from .layouts import (COCO, CROWDPOSE, KeypointLayout, get_keypoint_layout,
                      layouts_with, register_keypoint_layout, resolve_sigmas)
from .oks import aligned_oks, pairwise_oks
from .transforms import (bbox_kpt2result, flip_keypoints,
                         visible_keypoint_bboxes, zero_outside_keypoints)

__all__ = [
    'bbox_kpt2result', 'flip_keypoints', 'visible_keypoint_bboxes',
    'zero_outside_keypoints', 'COCO', 'CROWDPOSE', 'KeypointLayout',
    'get_keypoint_layout', 'layouts_with', 'register_keypoint_layout',
    'resolve_sigmas', 'aligned_oks', 'pairwise_oks',
    'centernet_gaussian_radius', 'keypoint_heatmap_target'
]
