"""Helpers of the drawing tests (test_visualization.py, test_user_tools.py):
a small keypoint annotation subset and where drawings may change pixels."""
import json
from pathlib import Path

import numpy as np

from conftest import subset_annotations as write_subset

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ANN = (
    REPO / 'demo' / 'data' / 'coco_sample' / 'annotations' /
    'person_keypoints_sample.json')
# A box label: at most this wide and high (pixels), drawn above the box's
# top-left corner, or just inside the box when the box touches the top.
LABEL_WIDTH, LABEL_HEIGHT = 200, 24


def subset_annotations(num_images, out_file):
    """Write the first ``num_images`` images of the bundled keypoint sample
    (demo/data/coco_sample) with their annotations to ``out_file``.

    Returns:
        list[dict]: Their image entries.
    """
    images = json.loads(SAMPLE_ANN.read_text())['images'][:num_images]
    write_subset(
        str(SAMPLE_ANN), {img['id'] for img in images}, out_file)
    return images


def far_from(boxes, shape, margin):
    """[H, W] mask of the pixels that no drawing of ``boxes`` may change.

    Args:
        boxes (np.ndarray): [n, >=4] boxes ``(x1, y1, x2, y2, ...)``; their
            keypoints and limbs lie inside them.
        shape (tuple): ``(H, W, ...)`` of the image.
        margin (int): Pixels around every drawn element that may change too
            (line widths, keypoint discs, JPEG blocks).
    """
    far = np.ones(shape[:2], bool)
    for x1, y1, x2, y2 in np.asarray(boxes)[:, :4].astype(int):
        top, left = max(y1 - LABEL_HEIGHT - margin, 0), max(x1 - margin, 0)
        far[top:y2 + margin, left:x2 + margin] = False
        far[top:y1 + LABEL_HEIGHT + margin, left:x1 + LABEL_WIDTH] = False
    return far


def inside(points, shape):
    """The [m, 2] integer pixels of ``points`` [n, 2] that lie in an image
    of ``shape`` (keypoints may sit on its far border)."""
    pixels = np.floor(np.asarray(points)).astype(int)
    h, w = shape[:2]
    keep = ((pixels >= 0).all(1) & (pixels[:, 0] < w) & (pixels[:, 1] < h))
    return pixels[keep]
