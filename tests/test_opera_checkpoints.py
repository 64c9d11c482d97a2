"""Checkpoints saved by Opera / H-PETR-Pose load here and give its outputs.

``tests/data/opera_petr_checkpoint_layouts.json.gz`` lists every
state-dict entry (name and shape) of the six reference PETR / H-PETR models,
read off the reference code; ``h_petr_r50_reference_outputs.npz`` holds
what the reference H-PETR R50 predicts from the weights of
``keyed_weights.py`` on two random images (one image per call, as the
reference requires).
"""
import gzip
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv.runner import load_checkpoint, save_checkpoint

from conftest import REPO_ROOT, run_with_avx2_onednn
from keyed_weights import fill_keyed_weights

import opera  # noqa: F401
from opera.models import build_detector
from opera.utils import load_config

DATA = osp.join(REPO_ROOT, 'tests', 'data')
H_PETR_R50 = 'petr/h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py'
IMAGE_SHAPES = [(320, 384), (256, 320)]


def build(config):
    cfg = load_config(
        osp.join(REPO_ROOT, 'configs', config),
        {'model.backbone.init_cfg': None})
    return build_detector(cfg.model)


def reference_layouts():
    with gzip.open(osp.join(DATA, 'opera_petr_checkpoint_layouts.json.gz'),
                   'rt') as f:
        return json.load(f)


@pytest.mark.parametrize('config', sorted(reference_layouts()))
def test_state_dict_layout_equals_reference(config):
    expected = reference_layouts()[config]['state_dict']
    ours = {k: list(v.shape) for k, v in build(config).state_dict().items()}
    assert sorted(set(expected) - set(ours)) == []  # missing here
    assert sorted(set(ours) - set(expected)) == []  # unknown to Opera
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}


def reference_inputs():
    """The two images and metas the reference outputs were computed on."""
    gen = torch.Generator().manual_seed(0)
    for h, w in IMAGE_SHAPES:
        img = torch.randn(1, 3, h, w, generator=gen)
        meta = dict(
            img_shape=(h, w, 3),
            ori_shape=(2 * h, 2 * w, 3),
            pad_shape=(h, w, 3),
            batch_input_shape=(h, w),
            scale_factor=np.full(4, 0.5, np.float32),
            flip=False)
        yield img, meta


def test_h_petr_checkpoint_gives_reference_outputs(tmp_path):
    """The check below, in a child process whose oneDNN is pinned to AVX2:
    the reference outputs were computed with AVX2 convolution kernels, and
    oneDNN's AVX-512 kernels round differently, which the keyed weights
    amplify to 3e-4 in the scores (measured on an AVX-512/AMX Xeon, with
    the code of f5e6e2e too). The pin must be set before oneDNN's first
    convolution, hence the process of its own."""
    result = run_with_avx2_onednn('test_opera_checkpoints',
                                  'check_h_petr_reference_outputs',
                                  str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def check_h_petr_reference_outputs(tmp_dir):
    """H-PETR R50 with keyed weights, saved and loaded as a checkpoint,
    gives the reference implementation's outputs."""
    reference = np.load(osp.join(DATA, 'h_petr_r50_reference_outputs.npz'))
    saved = fill_keyed_weights(build(H_PETR_R50))
    checkpoint = osp.join(tmp_dir, 'h_petr_r50.pth')
    save_checkpoint(saved, checkpoint, meta=dict(CLASSES=('person', )))

    model = build(H_PETR_R50)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    for i, (img, meta) in enumerate(reference_inputs()):
        with torch.no_grad():
            boxes, keypoints = model.simple_test(img, [meta], rescale=True)[0]
        expected_boxes = reference[f'boxes{i}']
        num = len(expected_boxes)
        # Scores to float32 precision; pixels (up to 768) to ~1e-6 relative.
        np.testing.assert_allclose(
            boxes[0][:num, 4], expected_boxes[:, 4], rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            boxes[0][:num, :4], expected_boxes[:, :4], rtol=0, atol=2e-3)
        np.testing.assert_allclose(
            keypoints[0][:num], reference[f'keypoints{i}'], rtol=0, atol=2e-3)
