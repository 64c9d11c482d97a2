"""Keypoint helpers shared by datasets, pipelines, assigners and pose heads."""
from .heatmap_target import centernet_gaussian_radius, keypoint_heatmap_target
from .oks import (COCO_SIGMAS, CROWDPOSE_SIGMAS, aligned_oks, pairwise_oks,
                  resolve_sigmas)
from .transforms import (bbox_kpt2result, flip_keypoints,
                         visible_keypoint_bboxes, zero_outside_keypoints)

__all__ = [
    'bbox_kpt2result', 'flip_keypoints', 'visible_keypoint_bboxes',
    'zero_outside_keypoints', 'COCO_SIGMAS', 'CROWDPOSE_SIGMAS',
    'aligned_oks', 'pairwise_oks', 'resolve_sigmas',
    'centernet_gaussian_radius', 'keypoint_heatmap_target'
]
