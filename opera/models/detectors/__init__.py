from .detr_detector import DETRDetector
from .petr import PETR

__all__ = ['DETRDetector', 'PETR']
