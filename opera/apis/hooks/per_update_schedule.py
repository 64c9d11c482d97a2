"""Learning-rate and momentum schedules counted in optimizer updates when
gradients accumulate over several iterations."""
import math

from mmcv.runner import Hook, LrUpdaterHook
from mmcv.runner.hooks.momentum_updater import MomentumUpdaterHook


class _PerUpdateRunner:
    """A runner as a schedule hook should see it with accumulation:
    iterations (and their totals) counted in optimizer updates."""

    def __init__(self, runner, num_iters):
        self._runner = runner
        self._num_iters = num_iters

    def __getattr__(self, name):
        return getattr(self._runner, name)

    @property
    def iter(self):
        return self._runner.iter // self._num_iters

    @property
    def max_iters(self):
        return math.ceil(self._runner.max_iters / self._num_iters)

    @property
    def data_loader(self):
        # Warm-up by epochs reads only the length.
        return range(
            math.ceil(len(self._runner.data_loader) / self._num_iters))


class PerUpdateSchedule(Hook):
    """Run an lr (or momentum) updater hook once per optimizer update.

    mmcv's updaters set the value for each iteration from the iteration
    count; with N accumulated iterations per update this one calls the
    wrapped hook at the first iteration of each update only, with counts in
    updates, so update u uses the schedule's value of step u (warm-up and
    iteration-based policies included; epoch-based steps still happen at
    epoch starts).

    Args:
        schedule (Hook): An ``LrUpdaterHook`` or ``MomentumUpdaterHook``.
        num_iters (int): Iterations per optimizer update.
    """

    def __init__(self, schedule, num_iters):
        self.schedule = schedule
        self.num_iters = num_iters

    def before_run(self, runner):
        self.schedule.before_run(runner)

    def before_train_epoch(self, runner):
        self.schedule.before_train_epoch(
            _PerUpdateRunner(runner, self.num_iters))

    def before_train_iter(self, runner):
        if runner.iter % self.num_iters == 0:
            self.schedule.before_train_iter(
                _PerUpdateRunner(runner, self.num_iters))


def schedule_per_update(runner, num_iters):
    """Wrap the runner's lr and momentum hooks in :class:`PerUpdateSchedule`
    (in place, at their priority) when ``num_iters`` > 1."""
    if num_iters == 1:
        return
    hooks = runner.hooks
    for index, hook in enumerate(hooks):
        if isinstance(hook, (LrUpdaterHook, MomentumUpdaterHook)):
            wrapped = PerUpdateSchedule(hook, num_iters)
            wrapped.priority = hook.priority
            hooks[index] = wrapped
