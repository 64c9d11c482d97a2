"""Drawing of detection and pose results, shared by the detectors'
``show_result``, ``demo/image_demo.py`` and ``tools/misc/browse_dataset.py``.
"""
from .image import (draw_boxes, draw_poses, imshow_det_keypoints, palette,
                    split_result)
from .skeleton import skeleton_of

__all__ = [
    'draw_boxes', 'draw_poses', 'imshow_det_keypoints', 'palette',
    'skeleton_of', 'split_result'
]
