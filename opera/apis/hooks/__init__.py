"""opera's training hooks (mmcv's own fixes live in ``mmcv_custom``)."""
from .eval_hooks import DistEvalHook, EvalHook
from .per_update_schedule import PerUpdateSchedule, schedule_per_update
from .query_group_schedule import QueryGroupScheduleHook

__all__ = [
    'DistEvalHook', 'EvalHook', 'PerUpdateSchedule', 'QueryGroupScheduleHook',
    'schedule_per_update'
]
