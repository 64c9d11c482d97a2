"""OCHuman: heavily occluded persons, for testing COCO-trained pose models."""
from .builder import DATASETS
from .coco_pose import CocoPoseDataset


@DATASETS.register_module()
class OCHumanDataset(CocoPoseDataset):
    """OCHuman person keypoints (Zhang et al., "Pose2Seg", CVPR 2019).

    OCHuman ships its val and test splits as COCO-format person-keypoint
    json (``ochuman_coco_format_{val,test}_range_0.00_1.00.json``): the 17
    COCO keypoints, one class 'person', an ``area`` and an RLE
    ``segmentation`` per person, float keypoint coordinates. It has no
    training split: COCO-trained models are evaluated on it with the COCO
    keypoint AP (the COCO layout and sigmas), which is what this class
    does; everything else is :class:`CocoPoseDataset`. See
    ``docs/custom_datasets.md`` for where the files go.
    """
