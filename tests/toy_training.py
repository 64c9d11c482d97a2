"""A linear model without batch statistics, its data set and a config for
``opera.apis.train_model`` (accumulation and EMA tests)."""
import numpy as np
import torch
import torch.nn as nn
from mmcv import Config
from mmcv.runner import HOOKS, Hook
from torch.utils.data import Dataset

NUM_SAMPLES = 8


class ToyData(Dataset):
    """``NUM_SAMPLES`` fixed (x [3], y [1]) pairs."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(NUM_SAMPLES, 3, generator=gen)
        self.y = torch.randn(NUM_SAMPLES, 1, generator=gen)
        # mmdet's GroupSampler shuffles within aspect-ratio groups.
        self.flag = np.zeros(NUM_SAMPLES, np.uint8)

    def __len__(self):
        return NUM_SAMPLES

    def __getitem__(self, index):
        return dict(x=self.x[index], y=self.y[index])


class ToyRegressor(nn.Module):
    """Linear regression, mean squared error over the batch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def train_step(self, data, optimizer):
        loss = (self.linear(data['x']) - data['y']).pow(2).mean()
        return dict(
            loss=loss, log_vars=dict(loss=loss.item()),
            num_samples=len(data['x']))


@HOOKS.register_module(force=True)
class UpdateLrRecorder(Hook):
    """Records the lr of every optimizer update (every ``every``-th
    iteration) in ``UpdateLrRecorder.lrs``."""
    lrs = []

    def __init__(self, every):
        self.every = every

    def after_train_iter(self, runner):
        if (runner.iter + 1) % self.every == 0:
            UpdateLrRecorder.lrs.append(runner.optimizer.param_groups[0]['lr'])


def toy_cfg(work_dir, samples_per_gpu, cumulative_iters=1, max_epochs=1,
            **extra):
    """A training config for :class:`ToyRegressor` on :class:`ToyData`."""
    cfg = dict(
        work_dir=str(work_dir),
        seed=0,
        gpu_ids=[0],
        log_level='INFO',
        workflow=[('train', 1)],
        data=dict(
            samples_per_gpu=samples_per_gpu,
            workers_per_gpu=0,
            train={},
            val={},
            test={}),
        optimizer=dict(type='SGD', lr=0.1),
        optimizer_config=dict(
            grad_clip=None, cumulative_iters=cumulative_iters),
        lr_config=None,
        checkpoint_config=dict(interval=1),
        log_config=dict(interval=1, hooks=[]),
        runner=dict(
            type='opera.ResumableEpochBasedRunner', max_epochs=max_epochs))
    cfg.update(extra)
    return Config(cfg)


def trained_toy(cfg, **train_args):
    """Train a :class:`ToyRegressor` (seed 0) as ``cfg`` says; return it."""
    from opera.apis import train_model
    torch.manual_seed(0)
    model = ToyRegressor()
    train_model(model, ToyData(), cfg, meta=dict(seed=0), **train_args)
    return model
