from .builder import (BBOX_ASSIGNERS, MATCH_COST, build_assigner,
                      build_match_cost)
from .assigners import (HungarianAssigner, PoseHungarianAssigner,
                        match_with_repeated_targets, matched_pairs)
from .match_costs import (BBoxL1Cost, FocalLossCost, IoUCost, KptL1Cost,
                          OksCost, pairwise_overlaps)
from .transforms import normalised_cxcywh

__all__ = [
    'BBOX_ASSIGNERS', 'MATCH_COST', 'build_assigner', 'build_match_cost',
    'HungarianAssigner', 'PoseHungarianAssigner',
    'match_with_repeated_targets', 'matched_pairs', 'BBoxL1Cost',
    'FocalLossCost', 'IoUCost', 'KptL1Cost', 'OksCost', 'normalised_cxcywh',
    'pairwise_overlaps'
]
