"""Which limbs to draw for a keypoint layout.

The skeletons themselves are defined once, next to the keypoint names, on
the pose dataset classes (``CocoPoseDataset.SKELETON``,
``CrowdPoseDataset.SKELETON``); this module only picks one by the number of
keypoints K of a result.
"""
import warnings


def _known_layouts():
    """Pose dataset classes whose skeletons are known, keyed by K."""
    # Imported here: opera.datasets imports opera.core.
    from opera.datasets import CocoPoseDataset, CrowdPoseDataset
    return {
        len(layout.KEYPOINT_NAMES): layout
        for layout in (CocoPoseDataset, CrowdPoseDataset)
    }


def skeleton_of(num_keypoints):
    """The limbs of the known keypoint layout with ``num_keypoints`` points.

    Args:
        num_keypoints (int): K, e.g. 17 (COCO) or 14 (CrowdPose).

    Returns:
        list[list[int]]: ``[i, j]`` keypoint index pairs joined by a limb;
        empty (keypoints are then drawn without limbs, with a warning) for
        a layout that is not known.
    """
    layout = _known_layouts().get(num_keypoints)
    if layout is None:
        known = sorted(_known_layouts())
        warnings.warn(
            f'no skeleton is known for {num_keypoints} keypoints (known: '
            f'{known}); drawing keypoints without limbs. Pass skeleton=... '
            '(e.g. your dataset\'s SKELETON) to draw limbs.')
        return []
    return [list(pair) for pair in layout.SKELETON]
