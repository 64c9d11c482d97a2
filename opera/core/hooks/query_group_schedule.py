"""Tell a head's query groups the training epoch (hybrid-epoch schemes)."""
from mmcv.parallel import is_module_wrapper
from mmcv.runner import Hook

from mmcv_custom import HOOKS


@HOOKS.register_module()
class QueryGroupScheduleHook(Hook):
    """Set the epoch of ``model.bbox_head.hybrid`` before every iteration.

    In ``configs/_base_/default_runtime.py``; models without query groups
    are left alone.

    Query groups with a ``repeats_schedule`` (e.g. the hybrid-epoch scheme:
    K = 10, then one-to-one) take their ground-truth repeat K from the epoch.
    The epoch comes from the runner, which restores it on ``--resume-from``
    and ``--auto-resume``, so a run resumed after the switch stays switched.
    Each change of any group's K is logged.

    Config::

        custom_hooks = [dict(type='opera.QueryGroupScheduleHook')]
    """

    def __init__(self):
        self._repeats = None

    def before_train_iter(self, runner):
        model = runner.model.module if is_module_wrapper(
            runner.model) else runner.model
        groups = getattr(getattr(model, 'bbox_head', None), 'hybrid', None)
        if groups is None:  # not a model with query groups
            return
        groups.set_epoch(runner.epoch)
        repeats = [groups.num_repeats(group) for group in groups.groups]
        if repeats != self._repeats:
            described = '; '.join(
                f'group {index} ({group.num_queries} queries): K per layer '
                f'{list(k)}'
                for index, (group, k) in enumerate(zip(groups.groups, repeats)))
            runner.logger.info(
                f'query groups at epoch {runner.epoch + 1}: {described}')
            self._repeats = repeats
