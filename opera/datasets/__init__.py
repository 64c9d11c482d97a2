from .builder import DATASETS, PIPELINES
from .coco_pose import CocoPoseDataset
from .crowd_pose import CrowdPoseDataset
from .pipelines import (DefaultFormatBundle, LoadAnnotations, RandomAffine,
                        RandomCrop, RandomFlip, Resize)

__all__ = [
    'DATASETS', 'PIPELINES', 'CocoPoseDataset', 'CrowdPoseDataset',
    'DefaultFormatBundle', 'LoadAnnotations', 'RandomAffine', 'RandomCrop',
    'RandomFlip', 'Resize'
]
