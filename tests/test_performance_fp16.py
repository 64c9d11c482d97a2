"""Mixed-precision training through mmcv's fp16 support, checked on CPU.

``fp16 = dict(loss_scale=...)`` in a config makes the trainer use mmcv's
``Fp16OptimizerHook``, which sets ``fp16_enabled`` on every module that has
it; the detector's ``auto_fp16`` then runs the model under
``torch.cuda.amp.autocast`` and ``force_fp32`` takes it back to fp32 where
it must be. Without CUDA, that autocast does nothing, so here CPU autocast
to fp16 stands in for it (same decorators, same casts), and a CPU
GradScaler for the hook's CUDA one. GPU speed is not measured here.
"""
import os.path as osp
import types

import pytest
import torch
from mmcv import Config
from mmcv.runner import Fp16OptimizerHook, LogBuffer, fp16_utils
from mmdet.core import build_optimizer

from conftest import REPO_ROOT, detection_inputs, pose_inputs

import opera  # noqa: F401
from opera.models import build_detector
from opera.models.attention import (MultiScaleDeformableAttention,
                                    PoseDeformableAttention)

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = osp.join(REPO_ROOT, 'tests', 'configs',
                       'tiny_h_deformable_detr.py')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')


@pytest.fixture
def cpu_autocast(monkeypatch):
    """mmcv's decorators enter CPU autocast to fp16 instead of CUDA's."""

    def autocast(enabled=True):
        return torch.autocast('cpu', dtype=torch.float16, enabled=enabled)

    monkeypatch.setattr(fp16_utils, 'autocast', autocast)


def fp16_runner(path, train_backbone=True):
    """A model and optimizer from ``path`` with ``fp16`` set as on the
    command line, the optimizer hook the trainer builds from it, and the
    runner fields that hook uses. Only the last backbone stage trains, or
    none (``train_backbone=False``): fp16 convolutions are slow on CPU."""
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'fp16.loss_scale': 512.})
    cfg.model.backbone.frozen_stages = 3 if train_backbone else 4
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    hook = Fp16OptimizerHook(
        **cfg.optimizer_config, **cfg.fp16, distributed=False)
    # torch.cuda.amp's GradScaler turns itself off without CUDA; without
    # loss scaling small fp16 gradients underflow to 0.
    hook.loss_scaler = torch.amp.GradScaler(
        'cpu', init_scale=cfg.fp16.loss_scale)
    runner = types.SimpleNamespace(
        model=model,
        optimizer=build_optimizer(model, cfg.optimizer),
        meta={},
        log_buffer=LogBuffer())
    hook.before_run(runner)  # wrap_fp16_model: sets fp16_enabled
    return runner, hook


def record_dtypes(model, deformable_type):
    """Dtypes inside and outside the fp32 regions: (input, output) of some
    modules, and the head's class scores and boxes / poses."""
    seen = {}

    def record(name):

        def hook(module, args, output):
            seen.setdefault(name, (args[0].dtype, output.dtype))

        return hook

    def record_head(module, args, output):
        cls = output['cls_scores']
        coords = output['poses' if 'poses' in output else 'bbox_preds']
        seen.setdefault('head', (cls.dtype, coords.dtype))

    layer = model.bbox_head.transformer.decoder.layers[0]
    cross_attn = layer.attentions[1]
    assert isinstance(cross_attn, deformable_type)
    cross_attn.value_proj.register_forward_hook(record('deformable'))
    layer.ffns[0].layers[0][0].register_forward_hook(record('ffn_linear'))
    model.backbone.conv1.register_forward_hook(record('backbone'))
    # Both heads' losses are in their criterion.
    model.bbox_head.criterion.loss_cls.register_forward_hook(record('loss'))
    model.bbox_head.register_forward_hook(record_head)
    return seen


@pytest.mark.parametrize('path,inputs,deformable_type,train_backbone', [
    (TINY_HYBRID, lambda: detection_inputs([(64, 96), (48, 96)]),
     MultiScaleDeformableAttention, True),
    (TINY_H_PETR, lambda: pose_inputs([(96, 96), (96, 64)],
                                      num_persons=(2, 3)),
     PoseDeformableAttention, False),
])
def test_fp16_train_step(cpu_autocast, path, inputs, deformable_type,
                         train_backbone):
    runner, hook = fp16_runner(path, train_backbone)
    model = runner.model
    assert model.fp16_enabled and model.bbox_head.fp16_enabled
    deformables = [
        m for m in model.modules()
        if isinstance(m, (MultiScaleDeformableAttention,
                          PoseDeformableAttention))
    ]
    assert deformables and all(m.fp16_enabled for m in deformables)
    dtypes = record_dtypes(model, deformable_type)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    data = inputs()
    for meta in data['img_metas']:
        meta['batch_input_shape'] = tuple(data['img'].shape[-2:])
    runner.outputs = model.train().train_step(data, runner.optimizer)
    hook.after_train_iter(runner)

    half, full = torch.float16, torch.float32
    assert dtypes['backbone'] == (half, half)  # auto_fp16 cast the image
    assert dtypes['ffn_linear'][1] == half  # autocast in the decoder
    assert dtypes['deformable'] == (full, full)  # force_fp32
    # Scores in fp16; boxes / poses refined in fp32, layer after layer.
    assert dtypes['head'] == (half, full)
    assert dtypes['loss'][0] == full  # force_fp32 on the head's loss
    assert torch.isfinite(runner.outputs['loss'])
    grads = {
        n: p.grad
        for n, p in model.named_parameters() if p.grad is not None
    }
    assert all(torch.isfinite(g).all() for g in grads.values())
    # (Some gradients are 0 in fp32 too: ResNet's zero-initialised
    # residual norms block their branch at the first step.)
    trained = [n for n, g in grads.items() if g.abs().sum() > 0]
    assert any(n.startswith('backbone.') for n in trained) == train_backbone
    assert any('sampling_offsets' in n for n in trained)
    params = dict(model.named_parameters())
    for name in trained:
        assert not torch.equal(params[name], before[name]), name
