"""CrowdPose (14 keypoints) with the xtcocotools ``keypoints_crowd`` metric."""
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

    KEYPOINT_NAMES = ('left_shoulder', 'right_shoulder', 'left_elbow',
                      'right_elbow', 'left_wrist', 'right_wrist', 'left_hip',
                      'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                      'right_ankle', 'top_head', 'neck')
    FLIP_PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    SIGMAS = [
        .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089,
        .089, .079, .079
    ]
    SKELETON = [[12, 13], [13, 0], [13, 1], [0, 2], [2, 4], [1, 3], [3, 5],
                [0, 6], [1, 7], [6, 7], [6, 8], [8, 10], [7, 9], [9, 11]]
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
