"""Formatting of keypoint targets into DataContainers."""
from mmcv.parallel import DataContainer as DC
from mmdet.datasets.pipelines import DefaultFormatBundle as MMDetFormatBundle
from mmdet.datasets.pipelines.formatting import to_tensor

from ..builder import PIPELINES


@PIPELINES.register_module()
class DefaultFormatBundle(MMDetFormatBundle):
    """mmdet's ``DefaultFormatBundle`` plus the pose targets.

    Besides mmdet's fields, ``gt_keypoints`` ([n, K, 3]) and ``gt_areas``
    ([n]) become tensors in (non-stacked) DataContainers; mmdet's
    ``Collect`` then passes them on when listed in its ``keys``.
    """

    POSE_KEYS = ('gt_keypoints', 'gt_areas')
    # Formats gt_keypoints (see keypoint_checks.py).
    keypoint_aware = True

    def __call__(self, results):
        """Format ``results`` in place.

        Args:
            results (dict): Output of the preceding transforms.

        Returns:
            dict: ``results`` with tensors in DataContainers.
        """
        results = super().__call__(results)
        for key in self.POSE_KEYS:
            if key in results:
                results[key] = DC(to_tensor(results[key]))
        return results
