"""opera.ResumableEpochBasedRunner and opera.NonFiniteLossHook on a toy model:
atomic checkpoints, no NaN weights in checkpoints, per-epoch seeding, and
weight loading that names what does not fit."""
import logging
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmcv import Config
from mmcv.runner import EpochBasedRunner, Hook, epoch_based_runner
from mmcv.utils import get_logger
from mmdet.utils import find_latest_checkpoint

from conftest import REPO_ROOT

import mmcv_custom
from mmcv_custom import ResumableEpochBasedRunner, load_checkpoint_checked
from opera.apis.train import _resume_or_load

NAN_BATCH = torch.full((1, 2), float('nan'))
ONES = torch.ones(1, 2)


@pytest.fixture(autouse=True)
def no_epoch_pause(monkeypatch):
    """mmcv's runner pauses 2 s before each epoch (against data-loader
    worker deadlocks); lists of toy batches need no pause."""
    monkeypatch.setattr(epoch_based_runner.time, 'sleep', lambda seconds: None)


class ToyModel(nn.Module):
    """A linear layer with mmdet's ``train_step`` interface."""

    def __init__(self, in_features=2):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def train_step(self, data, optimizer):
        loss = self.linear(data).pow(2).sum()
        return dict(
            loss=loss,
            log_vars=dict(loss_toy=loss.item(), loss=loss.item()),
            num_samples=len(data))


def make_runner(tmp_path, runner_type=ResumableEpochBasedRunner, seed=0,
                max_epochs=2):
    torch.manual_seed(0)
    model = ToyModel()
    return runner_type(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        work_dir=str(tmp_path),
        logger=get_logger('opera'),
        meta=dict(seed=seed),
        max_epochs=max_epochs)


def register_hooks(runner, with_guard=True):
    runner.register_training_hooks(
        lr_config=None,
        optimizer_config=dict(grad_clip=None),
        checkpoint_config=dict(interval=1))
    if with_guard:
        runtime = Config.fromfile(
            osp.join(REPO_ROOT, 'configs', '_base_', 'default_runtime.py'))
        (guard, ) = [
            h for h in runtime.custom_hooks
            if h['type'] == 'opera.NonFiniteLossHook'
        ]
        runner.register_hook_from_cfg(guard)


class WeightRecorder(Hook):
    """Keeps a copy of the weights at the start of every iteration."""

    def __init__(self):
        self.weights = []

    def before_train_iter(self, runner):
        self.weights.append(runner.model.linear.weight.detach().clone())


def test_nan_loss_stops_before_the_optimizer_step(tmp_path):
    runner = make_runner(tmp_path)
    register_hooks(runner)
    recorder = WeightRecorder()
    runner.register_hook(recorder)
    with pytest.raises(FloatingPointError) as error:
        runner.run([[ONES, ONES, NAN_BATCH, ONES]], [('train', 1)])
    message = str(error.value)
    assert 'at epoch 1, iteration 3 of the epoch (iteration 3 overall)' \
        in message
    assert 'loss_toy=nan' in message
    # The NaN iteration changed nothing and no checkpoint was written.
    assert torch.equal(runner.model.linear.weight, recorder.weights[-1])
    assert torch.isfinite(runner.model.linear.weight).all()
    assert not os.listdir(tmp_path)


def test_without_the_guard_nan_weights_are_not_saved(tmp_path):
    runner = make_runner(tmp_path)
    register_hooks(runner, with_guard=False)
    with pytest.raises(FloatingPointError, match='Not saving the checkpoint '
                       'of epoch 1 .*parameter.*linear.weight'):
        runner.run([[ONES, NAN_BATCH]], [('train', 1)])
    assert torch.isnan(runner.model.linear.weight).all()
    assert not os.listdir(tmp_path)


def test_nonfinite_loss_hook_runs_before_the_optimizer(tmp_path):
    runner = make_runner(tmp_path)
    register_hooks(runner)
    names = [type(hook).__name__ for hook in runner.hooks]
    assert names.index('NonFiniteLossHook') < names.index('OptimizerHook')
    assert isinstance(runner.hooks[names.index('NonFiniteLossHook')],
                      mmcv_custom.NonFiniteLossHook)


def torn_save(model, filename, optimizer=None, meta=None):
    """A save killed half way: some bytes written, then the process dies."""
    with open(filename, 'wb') as f:
        f.write(b'PK\x03\x04 half a checkpoint')
    raise KeyboardInterrupt


@pytest.mark.parametrize('runner_type, torn_name', [
    (ResumableEpochBasedRunner, 'mmcv_custom.checkpoint.save_checkpoint'),
    (EpochBasedRunner, 'mmcv.runner.epoch_based_runner.save_checkpoint'),
])
def test_kill_while_saving_keeps_latest_loadable(tmp_path, monkeypatch,
                                                 runner_type, torn_name):
    runner = make_runner(tmp_path, runner_type)
    runner.save_checkpoint(str(tmp_path))  # epoch_1.pth, complete
    runner._epoch = 1
    monkeypatch.setattr(torn_name, torn_save)
    with pytest.raises(KeyboardInterrupt):
        runner.save_checkpoint(str(tmp_path))
    latest = find_latest_checkpoint(str(tmp_path))
    assert torch.load(latest)['meta']['epoch'] == 1
    torn = tmp_path / 'epoch_2.pth'
    if runner_type is ResumableEpochBasedRunner:
        assert not torn.exists()
    else:  # what the atomic save prevents: a torn file under the final name
        with pytest.raises(Exception):
            torch.load(torn)


def test_checkpoint_and_latest_link_are_complete(tmp_path):
    runner = make_runner(tmp_path)
    for epoch in range(2):
        runner._epoch = epoch
        runner.save_checkpoint(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [
        'epoch_1.pth', 'epoch_2.pth', 'latest.pth'
    ]
    assert os.readlink(tmp_path / 'latest.pth') == 'epoch_2.pth'
    checkpoint = torch.load(tmp_path / 'latest.pth')
    assert checkpoint['meta']['epoch'] == 2
    assert checkpoint['meta']['seed'] == 0
    assert torch.equal(checkpoint['state_dict']['linear.weight'],
                       runner.model.linear.weight)


class FirstDraw(Hook):
    """Records a numpy and a torch draw at the start of every epoch."""

    def __init__(self):
        self.draws = []

    def before_train_epoch(self, runner):
        self.draws.append((np.random.rand(), torch.rand(1).item()))


def epoch_draws(tmp_path, start_epoch, max_epochs, seed=0):
    runner = make_runner(tmp_path, seed=seed, max_epochs=max_epochs)
    runner._epoch = start_epoch
    recorder = FirstDraw()
    runner.register_hook(recorder)
    runner.register_training_hooks(None, dict(grad_clip=None))
    runner.run([[ONES]], [('train', 1)])
    return recorder.draws


def test_each_epoch_is_seeded_from_seed_and_epoch(tmp_path):
    draws = epoch_draws(tmp_path, 0, 3)
    assert len(set(draws)) == 3
    # A run resumed at epoch 2 draws what the full run drew in epoch 2.
    np.random.seed(123)  # whatever ran before does not matter
    assert epoch_draws(tmp_path, 2, 3) == draws[2:]
    assert epoch_draws(tmp_path, 0, 1, seed=1) != draws[:1]


def save_toy(tmp_path, state_dict):
    path = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=state_dict), path)
    return path


def test_wrong_shape_names_the_parameter(tmp_path):
    path = save_toy(tmp_path, ToyModel(in_features=3).state_dict())
    with pytest.raises(ValueError) as error:
        load_checkpoint_checked(ToyModel(), path)
    assert 'linear.weight: checkpoint (1, 3), model (1, 2)' in \
        str(error.value)
    assert path in str(error.value)


def test_load_from_lists_missing_and_unexpected_keys(tmp_path, caplog):
    source = ToyModel()
    state = dict(source.state_dict(), **{'extra.weight': torch.ones(1)})
    del state['linear.bias']
    runner = make_runner(tmp_path)
    cfg = Config(dict(load_from=save_toy(tmp_path, state)))
    with caplog.at_level(logging.WARNING, logger='opera'):
        _resume_or_load(runner, cfg)
    (message, ) = [r.getMessage() for r in caplog.records]
    assert '1 missing from the checkpoint (left at their initial values): ' \
        'linear.bias' in message
    assert '1 unexpected (ignored): extra.weight' in message
    assert torch.equal(runner.model.linear.weight, source.linear.weight)
    with pytest.raises(ValueError, match='linear.bias'):
        load_checkpoint_checked(ToyModel(), cfg.load_from, strict=True)


def test_resume_from_a_wrong_shape_stops(tmp_path):
    path = save_toy(tmp_path, ToyModel(in_features=3).state_dict())
    runner = make_runner(tmp_path)
    with pytest.raises(ValueError, match='linear.weight: checkpoint'):
        runner.resume(path)


@pytest.mark.parametrize('num_workers, pauses', [(0, 0), (1, 2)])
def test_epoch_pause_only_with_loader_workers(tmp_path, monkeypatch,
                                              num_workers, pauses):
    """mmcv's 2 s pause guards against worker deadlocks at the epoch
    change; without workers the epoch starts at once, and trains the same."""
    slept = []
    monkeypatch.setattr(epoch_based_runner.time, 'sleep', slept.append)
    loader = torch.utils.data.DataLoader(
        [ONES[0], 2 * ONES[0]], batch_size=2, num_workers=num_workers)
    runner = make_runner(tmp_path)
    register_hooks(runner)
    runner.run([loader], [('train', 1)])
    # (mmcv's run() also sleeps 1 s at its end, for the loggers.)
    assert [s for s in slept if s == 2] == [2] * pauses
    assert runner.iter == 2 and runner.epoch == 2
    reference = make_runner(tmp_path / 'lists')
    register_hooks(reference)
    reference.run([[torch.stack([ONES[0], 2 * ONES[0]])]], [('train', 1)])
    assert torch.equal(runner.model.linear.weight,
                       reference.model.linear.weight)


def damaged_copy(tmp_path, how):
    """A checkpoint of the toy model cut to half its size, emptied, or
    replaced by text."""
    path = save_toy(tmp_path, ToyModel().state_dict())
    data = open(path, 'rb').read()
    damaged = dict(half=data[:len(data) // 2], empty=b'', text=b'hello')[how]
    with open(path, 'wb') as f:
        f.write(damaged)
    return path, len(damaged)


@pytest.mark.parametrize('how, problem', [
    ('half', 'a zip archive cut short at {size} bytes (no end record): '
     'truncated'),
    ('empty', 'the file is empty (0 bytes)'),
    ('text', "not a torch checkpoint (starts with b'hell', 5 bytes)"),
])
@pytest.mark.parametrize('load', ['load_from', 'resume_from'])
def test_unreadable_checkpoint_names_the_file_and_the_problem(
        tmp_path, how, problem, load):
    path, size = damaged_copy(tmp_path, how)
    runner = make_runner(tmp_path)
    with pytest.raises(mmcv_custom.CheckpointReadError) as error:
        _resume_or_load(runner, Config({load: path}))
    assert str(error.value).startswith(
        f'cannot read checkpoint {path}: {problem.format(size=size)}')
