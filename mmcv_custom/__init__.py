"""What opera needs from mmcv 1.7 that mmcv itself lacks or gets wrong on
current torch: kept apart so it can be dropped when mmcv is fixed.

Importing it registers ``opera.ResumableEpochBasedRunner``,
``opera.NonFiniteLossHook`` and ``opera.EMAHook`` for configs.
"""
from .builder import HOOKS, RUNNERS
from .checkpoint import (CheckpointReadError, link_atomic,
                         load_checkpoint_checked, save_checkpoint_atomic,
                         write_atomic)
from .ema import EMAHook, ema_weights, register_ema
from .nonfinite_loss import NonFiniteLossHook
from .parallel import DeviceAgnosticDDP
from .runner import ResumableEpochBasedRunner

__all__ = [
    'CheckpointReadError', 'DeviceAgnosticDDP', 'EMAHook', 'HOOKS',
    'NonFiniteLossHook', 'RUNNERS', 'ResumableEpochBasedRunner', 'link_atomic',
    'load_checkpoint_checked', 'ema_weights', 'register_ema',
    'save_checkpoint_atomic', 'write_atomic'
]
