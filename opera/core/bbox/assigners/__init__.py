from .hungarian_assigner import HungarianAssigner
from .pose_hungarian_assigner import PoseHungarianAssigner
from .repeated_targets import (RepeatedTargetsAssigner, assign_by_cost,
                               match_with_repeated_targets, untile)

__all__ = [
    'HungarianAssigner', 'PoseHungarianAssigner', 'RepeatedTargetsAssigner',
    'assign_by_cost', 'match_with_repeated_targets', 'untile'
]
