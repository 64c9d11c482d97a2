from .detr_costs import (BBoxL1Cost, FocalLossCost, IoUCost,
                         pairwise_overlaps)
from .keypoint_costs import KptL1Cost, OksCost

__all__ = [
    'BBoxL1Cost', 'FocalLossCost', 'IoUCost', 'KptL1Cost', 'OksCost',
    'pairwise_overlaps'
]
