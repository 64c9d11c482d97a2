from .pose_hungarian_assigner import (PoseHungarianAssigner,
                                      match_with_repeated_targets)

__all__ = ['PoseHungarianAssigner', 'match_with_repeated_targets']
