"""Data pipelines of opera, registered in ``opera.datasets.PIPELINES``."""
from .formatting import DefaultFormatBundle
from .image_loading import LoadImageFromFile
from .keypoint_checks import KeypointPipelineError, check_keypoint_pipeline
from .loading import LoadAnnotations
from .transforms import RandomAffine, RandomCrop, RandomFlip, Resize

__all__ = [
    'DefaultFormatBundle', 'KeypointPipelineError', 'LoadAnnotations',
    'LoadImageFromFile', 'RandomAffine', 'RandomCrop', 'RandomFlip', 'Resize',
    'check_keypoint_pipeline'
]
