"""Activation checkpointing (``with_cp``) leaves the gradients unchanged.

The encoder and decoder layers (``opera.DetrTransformerEncoder``,
``opera.DeformableDetrTransformerDecoder``, ``opera.PETRPoseDecoder``) and
mmdet's Swin backbone run again in the backward pass instead of keeping
their activations; every gradient must be the one of the plain run.
"""
import os.path as osp

import pytest
import torch
from mmcv import Config
from mmdet.models.builder import BACKBONES

from conftest import REPO_ROOT, detection_inputs, pose_inputs

import opera  # noqa: F401
from opera.models import build_detector

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = osp.join(REPO_ROOT, 'tests', 'configs',
                       'tiny_h_deformable_detr.py')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')
SWIN_L_CONFIGS = [
    'hdetr/h_deformable_detr_swin_large_two_stage_12ep.py',
    'petr/h_petr_swin-l-p4-w7-22kto1k_8x1_100e_coco_t900_group5_ffn2x_dp0.py',
]


def gradients(path, inputs, with_cp):
    """Gradients of one training step, and how often the first encoder and
    decoder layers ran."""
    cfg = Config.fromfile(path)
    cfg.model.backbone.frozen_stages = 4  # not checkpointed: skip its grads
    transformer = cfg.model.bbox_head.transformer
    transformer.encoder.with_cp = with_cp
    transformer.decoder.with_cp = with_cp
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    calls = []
    for name in ('encoder', 'decoder'):
        layers = getattr(model.bbox_head.transformer, name).layers
        layers[0].register_forward_pre_hook(
            lambda module, args, name=name: calls.append(name))
    losses = model.train().forward_train(**inputs)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grads = {
        n: p.grad
        for n, p in model.named_parameters() if p.grad is not None
    }
    return grads, sorted(calls)


@pytest.mark.parametrize('path,inputs', [
    (TINY_HYBRID, lambda: detection_inputs([(64, 96), (48, 96)])),
    (TINY_H_PETR, lambda: pose_inputs([(96, 96), (96, 64)],
                                      num_persons=(2, 3))),
])
def test_transformer_with_cp_gives_the_same_gradients(path, inputs):
    plain, plain_calls = gradients(path, inputs(), with_cp=False)
    checkpointed, cp_calls = gradients(path, inputs(), with_cp=True)
    assert plain_calls == ['decoder', 'encoder']
    # Checkpointed layers run again during the backward pass.
    assert cp_calls == ['decoder', 'decoder', 'encoder', 'encoder']
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


def swin_gradients(with_cp):
    torch.manual_seed(0)
    swin = BACKBONES.build(
        dict(
            type='SwinTransformer',
            embed_dims=32,
            depths=[2, 2],
            num_heads=[2, 4],
            strides=(4, 2),
            out_indices=(0, 1),
            drop_path_rate=0.2,
            with_cp=with_cp))
    swin.train()  # (mmdet's Swin returns None here)
    img = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    sum(out.square().sum() for out in swin(img)).backward()
    return {n: p.grad for n, p in swin.named_parameters()}


def test_swin_with_cp_gives_the_same_gradients():
    plain, checkpointed = swin_gradients(False), swin_gradients(True)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        assert grad is not None, name
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


@pytest.mark.parametrize('config', SWIN_L_CONFIGS)
def test_swin_large_configs_checkpoint_the_backbone(config):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    assert cfg.model.backbone.with_cp is True
