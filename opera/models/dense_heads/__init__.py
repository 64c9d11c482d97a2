from .detr_detection_head import DETRDetectionHead
from .petr_head import PETRHead

__all__ = ['DETRDetectionHead', 'PETRHead']
