"""Tell a head's query groups the training epoch (hybrid-epoch schemes)."""
from mmcv.parallel import is_module_wrapper
from mmcv.runner import Hook

from mmcv_custom import HOOKS


@HOOKS.register_module()
class QueryGroupScheduleHook(Hook):
    """Give the detector the training epoch before every iteration.

    In ``configs/_base_/default_runtime.py``; calls the detector's
    ``set_epoch(epoch)`` (``opera.DETRDetector``, ``opera.PETR``), the one
    way an epoch reaches a model. Models without it are left alone: a head
    whose query groups follow a schedule then stops at its first loss,
    saying that no epoch was set.

    Query groups with a ``repeats_schedule`` (e.g. the hybrid-epoch scheme:
    K = 10, then one-to-one) take their ground-truth repeat K from the epoch.
    The epoch comes from the runner, which restores it on ``--resume-from``
    and ``--auto-resume``, so a run resumed after the switch stays switched.
    Each change of what the epoch sets (every group's K per layer) is logged.

    Config::

        custom_hooks = [dict(type='opera.QueryGroupScheduleHook')]
    """

    def __init__(self):
        self._described = None

    def before_train_iter(self, runner):
        model = runner.model.module if is_module_wrapper(
            runner.model) else runner.model
        set_epoch = getattr(model, 'set_epoch', None)
        if set_epoch is None:
            return
        described = set_epoch(runner.epoch)
        if described is not None and described != self._described:
            runner.logger.info(
                f'query groups at epoch {runner.epoch + 1}: {described}')
            self._described = described
