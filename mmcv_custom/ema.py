"""An exponential moving average (EMA) of the weights, kept in the model.

The average of each floating-point state entry ``a.b.c`` lives in a buffer
``ema_a_b_c`` of the top-level model, so checkpoints hold both weight sets
(training weights under their own names, the averages under ``ema_*``) and
resuming restores the averages with the weights. mmdet 2.28's EMA hooks
instead swap the averages into the weights at every epoch end, so their
checkpoints hold the averages under the weights' names and a resumed run
loses track of which is which; here the weights are never swapped in a
checkpoint, only around evaluation (:func:`ema_weights`).
"""
import contextlib
import math

import torch
from mmcv.parallel import is_module_wrapper
from mmcv.runner import Hook
from mmcv.utils import print_log

from .builder import HOOKS

EMA_PREFIX = 'ema_'


def ema_key(key):
    """The buffer name of the average of state entry ``key``."""
    # Buffer names cannot contain dots.
    return EMA_PREFIX + key.replace('.', '_')


def is_ema_key(key):
    """Whether state-dict ``key`` is an EMA buffer of the top-level model."""
    return key.startswith(EMA_PREFIX) and '.' not in key


def _unwrap(model):
    return model.module if is_module_wrapper(model) else model


def _averaged_pairs(model):
    """``(entry, its EMA buffer)`` for each averaged entry of ``model``."""
    state = _unwrap(model).state_dict()
    return [(value, state[ema_key(key)]) for key, value in state.items()
            if ema_key(key) in state]


def take_ema_weights(state_dict, model_state, filename, logger=None):
    """Replace the weights of ``state_dict`` by its EMA weights, if any.

    Args:
        state_dict (dict[str, Tensor]): A checkpoint's state dict.
        model_state (dict[str, Tensor]): The model's state dict (its keys
            say which entries to look for).
        filename (str): The checkpoint, for the message.

    Returns:
        dict[str, Tensor]: ``state_dict`` without ``ema_*`` entries, each
        averaged entry holding its average; ``state_dict`` itself when it
        has no averages.
    """
    averages = {
        key: state_dict[ema_key(key)]
        for key in model_state
        if not is_ema_key(key) and ema_key(key) in state_dict
    }
    if not averages:
        return state_dict
    print_log(
        f'{filename}: using its EMA weights ({len(averages)} entries), not '
        'its training weights', logger)
    chosen = {k: v for k, v in state_dict.items() if not is_ema_key(k)}
    chosen.update(averages)
    return chosen


@contextlib.contextmanager
def ema_weights(model, logger=None):
    """Within the block the model's weights are its EMA weights (if it has
    them, else unchanged); afterwards the training weights again.

    Yields:
        bool: Whether the EMA weights were swapped in.
    """
    pairs = _averaged_pairs(model)
    if pairs:
        print_log('evaluating the EMA weights', logger)
    _swap(pairs)
    try:
        yield bool(pairs)
    finally:
        _swap(pairs)


def _swap(pairs):
    """Exchange the values of each pair of tensors in place."""
    with torch.no_grad():
        for value, average in pairs:
            kept = value.clone()
            value.copy_(average)
            average.copy_(kept)


@HOOKS.register_module()
class EMAHook(Hook):
    """Keep an EMA of the model's floating-point weights and buffers.

    After each optimizer update ``u`` (0, 1, ...) every average moves as
    ``ema = (1 - m_u) * ema + m_u * weight`` with ``m_u = momentum`` or,
    with ``warmup_updates`` W > 0, ``m_u = momentum + (1 - momentum) *
    exp(-(u + 1) / W)`` (close to 1 at first: early averages follow the
    weights). The averages start as the weights of the first iteration
    (after ``load_from``); a resumed run continues those in the checkpoint.

    Use it through the config switch ``ema = dict(enable=True, ...)`` (see
    :func:`register_ema`), which adds the buffers before a checkpoint is
    resumed.

    Args:
        momentum (float): ``m`` in (0, 1).
        warmup_updates (int): W, 0 for a constant momentum.
        interval (int): Iterations per optimizer update (the gradient
            accumulation's ``cumulative_iters``).
    """

    def __init__(self, momentum=0.0002, warmup_updates=0, interval=1):
        if not 0 < momentum < 1:
            raise ValueError(f'ema.momentum must be in (0, 1), got {momentum}')
        self.momentum = momentum
        self.warmup_updates = warmup_updates
        self.interval = interval
        self.pairs = []

    def attach(self, model):
        """Add a NaN-filled ``ema_*`` buffer per floating-point entry (NaN:
        not yet set; :meth:`before_run` fills them)."""
        model = _unwrap(model)
        for key, value in model.state_dict().items():
            if value.is_floating_point() and not is_ema_key(key):
                model.register_buffer(ema_key(key),
                                      torch.full_like(value, float('nan')))
        self.pairs = _averaged_pairs(model)

    def momentum_at(self, update):
        """``m_u`` of optimizer update ``update`` (0-based)."""
        if not self.warmup_updates:
            return self.momentum
        return self.momentum + (1 - self.momentum) * math.exp(
            -(update + 1) / self.warmup_updates)

    def before_run(self, runner):
        """Start the averages from the weights, unless resumed with them."""
        unset = any(torch.isnan(average).any() for _, average in self.pairs)
        if runner.iter > 0 and unset:
            runner.logger.warning(
                'the resumed checkpoint has no EMA weights: the average '
                'starts from its weights at iteration %d', runner.iter)
        if runner.iter == 0 or unset:
            with torch.no_grad():
                for value, average in self.pairs:
                    average.copy_(value)

    def after_train_iter(self, runner):
        """Move the averages after an optimizer update."""
        if (runner.iter + 1) % self.interval:
            return
        momentum = self.momentum_at((runner.iter + 1) // self.interval - 1)
        with torch.no_grad():
            for value, average in self.pairs:
                average.mul_(1 - momentum).add_(value, alpha=momentum)


def register_ema(runner, ema_cfg, interval=1):
    """Register an :class:`EMAHook` for the config switch ``ema``.

    Call before resuming: the checkpoint's ``ema_*`` entries then load into
    the buffers added here.

    Args:
        runner (BaseRunner): With its model (possibly wrapped).
        ema_cfg (dict | None): ``enable`` (default True) and the
            ``EMAHook`` arguments (``momentum``, ``warmup_updates``); None
            or ``enable=False``: no EMA.
        interval (int): Iterations per optimizer update.
    """
    hook_args = dict(ema_cfg or {})
    if ema_cfg is None or not hook_args.pop('enable', True):
        return
    hook = EMAHook(**hook_args, interval=interval)
    hook.attach(runner.model)
    # NORMAL: after the optimizer hook's update (ABOVE_NORMAL) and before
    # the evaluation hooks (LOW) of the same iteration.
    runner.register_hook(hook, priority='NORMAL')
    runner.logger.info(
        'EMA of the weights: momentum %s, warm-up %s updates, one update '
        'every %d iteration(s)', hook.momentum, hook.warmup_updates, interval)
