"""Data pipelines of opera, registered in ``opera.datasets.PIPELINES``."""
from .formatting import DefaultFormatBundle
from .loading import LoadAnnotations
from .transforms import RandomAffine, RandomCrop, RandomFlip, Resize

__all__ = [
    'DefaultFormatBundle', 'LoadAnnotations', 'RandomAffine', 'RandomCrop',
    'RandomFlip', 'Resize'
]
