from .builder import DATASETS, PIPELINES
from .coco import CocoDataset
from .coco_pose import CocoPoseDataset
from .crowd_pose import CrowdPoseDataset
from .data_checks import AnnotationError, ImageFileError
from .ochuman import OCHumanDataset
from .pipelines import (DefaultFormatBundle, LoadAnnotations, RandomAffine,
                        RandomCrop, RandomFlip, Resize)
from .wrappers import inner_datasets

__all__ = [
    'DATASETS', 'PIPELINES', 'AnnotationError', 'CocoDataset',
    'CocoPoseDataset', 'CrowdPoseDataset', 'ImageFileError',
    'OCHumanDataset', 'DefaultFormatBundle', 'LoadAnnotations',
    'RandomAffine', 'RandomCrop', 'RandomFlip', 'Resize', 'inner_datasets'
]
