"""Annotation loading with keypoints and instance areas."""
from mmdet.datasets.pipelines import LoadAnnotations as MMDetLoadAnnotations

from ..builder import PIPELINES


@PIPELINES.register_module()
class LoadAnnotations(MMDetLoadAnnotations):
    """mmdet's ``LoadAnnotations`` plus person keypoints and areas.

    Adds ``results['gt_keypoints']`` ([n, K, 3] float32 ``(x, y, v)``, listed
    in ``results['keypoint_fields']``) and ``results['gt_areas']`` ([n]
    float32, listed in ``results['area_fields']``), aligned with
    ``gt_bboxes`` / ``gt_labels``.

    Args:
        with_keypoint (bool): Load ``ann_info['keypoints']``.
        with_area (bool): Load ``ann_info['areas']``.
        *args, **kwargs: Those of mmdet's ``LoadAnnotations`` (``with_bbox``,
            ``with_label``, ...).
    """

    # Registers what it loads in keypoint_fields (see keypoint_checks.py).
    keypoint_aware = True

    def __init__(self, *args, with_keypoint=False, with_area=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.with_keypoint = with_keypoint
        self.with_area = with_area

    @property
    def loads_keypoints(self):
        """bool: Whether later steps must move keypoints with the image."""
        return self.with_keypoint

    @staticmethod
    def _load_field(results, key, ann_key, fields_key):
        """Copy ``ann_info[ann_key]`` to ``results[key]`` and list it."""
        results[key] = results['ann_info'][ann_key].copy()
        results.setdefault(fields_key, []).append(key)

    def __call__(self, results):
        """Load the annotations selected in the constructor.

        Args:
            results (dict): From a dataset's ``prepare_train_img``.

        Returns:
            dict: ``results`` with the ``gt_*`` entries added.
        """
        results = super().__call__(results)
        if results is None:
            return None
        if self.with_keypoint:
            self._load_field(results, 'gt_keypoints', 'keypoints',
                             'keypoint_fields')
        if self.with_area:
            self._load_field(results, 'gt_areas', 'areas', 'area_fields')
        return results

    def __repr__(self):
        return (super().__repr__()[:-1] +
                f', with_keypoint={self.with_keypoint}, '
                f'with_area={self.with_area})')
