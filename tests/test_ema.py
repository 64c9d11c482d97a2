"""EMA of the weights (``ema = dict(enable=True)``, opera.EMAHook): the
update rule, checkpoints with both weight sets, resuming, and evaluation
with the averages (docs/reliability.md, "EMA weights")."""
import importlib.util
import logging
import math
import pickle
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO_ROOT, run_in_repo, subset_annotations
from toy_training import ToyRegressor, toy_cfg, trained_toy

import opera  # noqa: F401
from mmcv_custom import EMAHook, ema_weights, register_ema
from opera.apis import init_model
from opera.models import build_detector
from opera.utils import load_config

SAMPLE = f'{REPO_ROOT}/demo/data/coco_sample'
DETR_CONFIG = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'
# Two of the sample images, in the json's order (file names: zero-padded ids).
TEST_IMAGES = (214704, 30752)


def load_tool(path):
    """A script of the repository as a module."""
    spec = importlib.util.spec_from_file_location('tool', f'{REPO_ROOT}/{path}')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def set_weight(model, value):
    with torch.no_grad():
        model.linear.weight.fill_(value)
        model.linear.bias.fill_(value)


def averaged_toy(start, **hook_args):
    """A toy model with all weights ``start`` and an EMAHook started on
    them (as at iteration 0)."""
    model = ToyRegressor()
    hook = EMAHook(**hook_args)
    hook.attach(model)
    set_weight(model, start)
    hook.before_run(SimpleNamespace(iter=0))
    return model, hook


def test_averages_follow_the_momentum():
    model, hook = averaged_toy(0., momentum=0.25)
    for iteration, weight in enumerate([4., 8.]):
        set_weight(model, weight)
        hook.after_train_iter(SimpleNamespace(iter=iteration))
    # 0.75 x 0 + 0.25 x 4 = 1, then 0.75 x 1 + 0.25 x 8 = 2.75
    assert torch.equal(model.ema_linear_weight, torch.full((1, 3), 2.75))
    assert torch.equal(model.ema_linear_bias, torch.tensor([2.75]))


def test_warmup_and_interval():
    model, hook = averaged_toy(0., momentum=0.25, warmup_updates=2,
                               interval=2)
    set_weight(model, 4.)
    hook.after_train_iter(SimpleNamespace(iter=0))  # not an update
    assert torch.equal(model.ema_linear_bias, torch.tensor([0.]))
    hook.after_train_iter(SimpleNamespace(iter=1))  # update 0
    momentum = 0.25 + 0.75 * math.exp(-1 / 2)
    assert hook.momentum_at(0) == pytest.approx(momentum)
    torch.testing.assert_close(model.ema_linear_bias,
                               torch.tensor([4 * momentum]))


@pytest.mark.parametrize('enable', [False, True])
def test_the_switch(enable):
    hooks = []
    runner = SimpleNamespace(
        model=ToyRegressor(),
        logger=logging.getLogger('ema_test'),
        register_hook=lambda hook, priority: hooks.append(hook))
    register_ema(runner, dict(enable=enable, momentum=0.1), interval=2)
    assert len(hooks) == int(enable)
    buffers = {k for k in runner.model.state_dict() if k.startswith('ema_')}
    assert buffers == ({'ema_linear_weight', 'ema_linear_bias'}
                       if enable else set())
    if enable:
        assert hooks[0].momentum == 0.1 and hooks[0].interval == 2


def test_ema_weights_swaps_in_and_back():
    model, hook = averaged_toy(2., momentum=0.5)
    set_weight(model, 6.)
    hook.after_train_iter(SimpleNamespace(iter=0))
    with ema_weights(model) as swapped:
        assert swapped and torch.equal(model.linear.bias, torch.tensor([4.]))
    assert torch.equal(model.linear.bias, torch.tensor([6.]))
    assert torch.equal(model.ema_linear_bias, torch.tensor([4.]))


def test_checkpoints_hold_both_and_resume_bit_identically(tmp_path):
    ema = dict(momentum=0.3)
    full = tmp_path / 'full'
    trained_toy(toy_cfg(full, 2, max_epochs=2, ema=ema))
    first = torch.load(full / 'epoch_1.pth')['state_dict']
    last = torch.load(full / 'epoch_2.pth')['state_dict']
    assert not torch.equal(last['ema_linear_weight'], last['linear.weight'])
    assert not torch.equal(first['ema_linear_weight'],
                           last['ema_linear_weight'])
    resumed = tmp_path / 'resumed'
    trained_toy(
        toy_cfg(resumed, 2, max_epochs=2, ema=ema,
                resume_from=str(full / 'epoch_1.pth')))
    again = torch.load(resumed / 'epoch_2.pth')['state_dict']
    for key in ('linear.weight', 'linear.bias', 'ema_linear_weight',
                'ema_linear_bias'):
        assert torch.equal(again[key], last[key]), key


def test_test_py_evaluates_the_ema_weights(tmp_path):
    torch.manual_seed(0)
    model = build_detector(load_config(DETR_CONFIG).model)
    model.init_weights()
    weights = model.state_dict()
    averages = {
        k: v + 0.01 if v.is_floating_point() else v
        for k, v in weights.items()
    }
    with_ema = dict(weights)
    with_ema.update({
        'ema_' + k.replace('.', '_'): v
        for k, v in averages.items() if v.is_floating_point()
    })
    torch.save(dict(state_dict=with_ema), tmp_path / 'ema.pth')
    # init_model (the demo, ONNX export) loads the averages.
    loaded = init_model(DETR_CONFIG, str(tmp_path / 'ema.pth'))
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, averages[key]), key
    ann_file = subset_annotations(
        f'{SAMPLE}/annotations/instances_sample.json', TEST_IMAGES,
        tmp_path / 'ann.json')
    result = run_in_repo([
        sys.executable, 'tools/test.py', DETR_CONFIG,
        str(tmp_path / 'ema.pth'), '--out',
        str(tmp_path / 'results.pkl'), '--cfg-options',
        f'data.test.ann_file={ann_file}',
        f'data.test.img_prefix={SAMPLE}/images/'
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'ema.pth: using its EMA weights' in result.stdout + result.stderr
    with open(tmp_path / 'results.pkl', 'rb') as f:
        results = pickle.load(f)
    assert len(results) == len(TEST_IMAGES)
    # The function test.py loads the model with: the averages as weights.
    tool = load_tool('tools/test.py')
    cfg = load_config(DETR_CONFIG)
    model = tool.load_model(cfg, str(tmp_path / 'ema.pth'),
                            SimpleNamespace(CLASSES=None))
    for key, value in model.state_dict().items():
        assert torch.equal(value, averages[key]), key
