"""Gradient accumulation (``optimizer_config.cumulative_iters``), the
effective batch size and ``auto_scale_lr`` (docs/get_started.md, "Fewer
GPUs")."""
import logging

import pytest
import torch
from mmcv.runner import GradientCumulativeFp16OptimizerHook
from mmcv import Config

from toy_training import UpdateLrRecorder, toy_cfg, trained_toy

from opera.apis.batch_size import accumulating_optimizer_hook


def test_accumulated_steps_equal_one_large_batch(tmp_path, caplog):
    # 4 iterations of 2 samples, one update: the whole set of 8.
    with caplog.at_level(logging.INFO):
        accumulated = trained_toy(toy_cfg(tmp_path / 'a', 2, 4))
    large = trained_toy(toy_cfg(tmp_path / 'b', 8))
    torch.manual_seed(0)
    initial = torch.nn.Linear(3, 1).weight
    assert not torch.allclose(large.linear.weight, initial)
    torch.testing.assert_close(accumulated.linear.weight, large.linear.weight,
                               rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(accumulated.linear.bias, large.linear.bias,
                               rtol=1e-6, atol=1e-7)
    assert ('effective batch size: 2 images per process x 1 process(es) x '
            '4 accumulated iteration(s) = 8 images per optimizer update'
            ) in caplog.text


def test_the_lr_schedule_steps_once_per_update(tmp_path):
    # 8 iterations of 1 sample, 2 per update: 4 updates; the lr drops
    # x0.1 from update 2 on (a schedule by iteration counts updates).
    UpdateLrRecorder.lrs.clear()
    cfg = toy_cfg(
        tmp_path, 1, 2,
        lr_config=dict(policy='step', by_epoch=False, step=[2], gamma=0.1),
        custom_hooks=[dict(type='UpdateLrRecorder', every=2,
                           priority='LOWEST')])
    trained_toy(cfg)
    assert UpdateLrRecorder.lrs == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_auto_scale_lr_counts_accumulated_iterations(tmp_path, caplog):
    UpdateLrRecorder.lrs.clear()
    cfg = toy_cfg(
        tmp_path, 2, 4,
        auto_scale_lr=dict(enable=True, base_batch_size=16),
        custom_hooks=[dict(type='UpdateLrRecorder', every=4)])
    with caplog.at_level(logging.INFO):
        trained_toy(cfg)
    # 0.1 x (2 x 1 x 4) / 16
    assert UpdateLrRecorder.lrs == pytest.approx([0.05])
    assert 'auto_scale_lr: lr 0.1 x 8 / 16' in caplog.text


def test_fp16_and_bad_values_choose_or_stop():
    cfg = Config(
        dict(
            optimizer_config=dict(grad_clip=None, cumulative_iters=2),
            fp16=dict(loss_scale=512.)))
    hook = accumulating_optimizer_hook(cfg, distributed=False)
    assert isinstance(hook, GradientCumulativeFp16OptimizerHook)
    assert hook.cumulative_iters == 2
    del cfg.optimizer_config['cumulative_iters']
    assert accumulating_optimizer_hook(cfg, distributed=False) is None
    cfg.optimizer_config.cumulative_iters = 0
    with pytest.raises(ValueError, match='optimizer_config.cumulative_iters '
                       'must be a positive integer, got 0'):
        accumulating_optimizer_hook(cfg, distributed=False)
