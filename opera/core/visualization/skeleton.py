"""Which limbs to draw for a keypoint layout.

The skeletons themselves are part of the keypoint layouts
(:mod:`opera.core.keypoint.layouts`); this module only picks one by the
number of keypoints K of a result.
"""
import warnings

from opera.core.keypoint import layouts_with


def skeleton_of(num_keypoints):
    """The limbs of the registered keypoint layout with ``num_keypoints``.

    Args:
        num_keypoints (int): K, e.g. 17 (COCO) or 14 (CrowdPose). With
            several layouts of K keypoints, the first registered one.

    Returns:
        list[list[int]]: ``[i, j]`` keypoint index pairs joined by a limb;
        empty (keypoints are then drawn without limbs, with a warning) for
        a K that no layout has.
    """
    layouts = layouts_with(num_keypoints)
    if not layouts:
        warnings.warn(
            f'no skeleton is known for {num_keypoints} keypoints; drawing '
            'keypoints without limbs. Pass skeleton=... (e.g. your '
            "dataset's skeleton) or register your keypoint layout "
            '(opera.core.keypoint.register_keypoint_layout) to draw limbs.')
        return []
    return [list(pair) for pair in layouts[0].skeleton]
