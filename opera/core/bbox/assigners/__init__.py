from .hungarian_assigner import HungarianAssigner
from .pose_hungarian_assigner import PoseHungarianAssigner
from .repeated_targets import (assign_by_cost, candidate_queries,
                               match_with_repeated_targets, matched_pairs)

__all__ = [
    'HungarianAssigner', 'PoseHungarianAssigner', 'assign_by_cost',
    'candidate_queries', 'match_with_repeated_targets', 'matched_pairs'
]
