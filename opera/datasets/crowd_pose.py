"""CrowdPose (14 keypoints) with the xtcocotools ``keypoints_crowd`` metric."""
from opera.core.keypoint import CROWDPOSE
from .builder import DATASETS
from .coco_pose import CocoPoseDataset


@DATASETS.register_module()
class CrowdPoseDataset(CocoPoseDataset):
    """CrowdPose person keypoints in COCO json format.

    Same arrays as :class:`CocoPoseDataset` with K = 14. CrowdPose has no
    instance ``area``: the box area ``w * h`` stands in for it in
    ``areas`` (as in the PETR reference), while evaluation scales OKS by
    ``0.53 * w * h`` (xtcocotools ``use_area=False``). Its
    ``num_keypoints`` counts only keypoints with ``v == 2``; persons with
    ``num_keypoints == 0`` are skipped as for COCO.

    Evaluation reports AP/AR at 20 detections and the AP of the easy,
    medium and hard images (split by the images' ``crowdIndex``). Only the
    'keypoints' metric is supported: mmdet's bbox AP needs GT areas.
    """

    KEYPOINT_LAYOUT = CROWDPOSE
    KEYPOINT_IOU_TYPE = 'keypoints_crowd'
    USE_AREA = False
    KEYPOINT_STATS = ('mAP', 'mAP_50', 'mAP_75', 'AR', 'AR_50', 'AR_75',
                      'mAP_easy', 'mAP_medium', 'mAP_hard')
    METRICS = ('keypoints', )
    # No 'area': CrowdPose annotations have none (see _instance_area).
    ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox', 'keypoints')

    def _instance_area(self, ann):
        """Area used to scale OKS in training: the box area ``w * h``."""
        _, _, w, h = ann['bbox']
        return w * h
