"""The models on a non-CPU device, checked on a CPU machine.

The tiny H-Deformable-DETR and H-PETR run their training step (forward,
losses with matching, backward) and test step with every parameter and
input on the virtual device of ``virtual_device.py``: an op that mixes
device and host tensors fails as it would on CUDA, the deformable attention
kernel's arguments must all be on the device, and every device-to-host
copy and value read is recorded by the line of opera (or mmdet, mmcv)
code that made it. Outputs must equal the plain CPU run's.
"""
from collections import Counter

import numpy as np
import pytest
import torch
from mmcv.ops import multi_scale_deform_attn

from conftest import detection_inputs, pose_inputs
from test_h_petr import TINY_H_PETR
from test_hybrid_matching import TINY_HYBRID
from test_petr import build_tiny
from virtual_device import (DeformableAttentionKernel, DeviceMismatch,
                            VirtualDevice, VirtualTensor, to_virtual)

from opera.core.bbox.assigners import repeated_targets
from opera.models.attention import pose_attention

pytestmark = pytest.mark.usefixtures('single_thread')
MATCHING = ('opera/core/bbox/assigners/repeated_targets.py '
            '(match_with_repeated_targets)')
HEATMAP = 'opera/core/keypoint/heatmap_target.py (keypoint_heatmap_target)'


@pytest.fixture
def device(monkeypatch):
    """The virtual device (enter it with ``with device:``), with the
    deformable attention kernel's stand-in where mmcv and opera call the
    CUDA kernel (on virtual tensors only: they alone report ``is_cuda``)."""
    mode = VirtualDevice()
    mode.kernel = DeformableAttentionKernel(mode)
    monkeypatch.setattr(multi_scale_deform_attn, 'IS_CUDA_AVAILABLE', True)
    for module in (multi_scale_deform_attn, pose_attention):
        monkeypatch.setattr(module, 'MultiScaleDeformableAttnFunction',
                            mode.kernel)
    return mode


def unwrap(obj):
    """Plain CPU tensors of (nested) virtual ones; fails on host tensors,
    which a model on the device must not return."""
    if isinstance(obj, VirtualTensor):
        return obj.elem
    if isinstance(obj, torch.Tensor):
        raise AssertionError(f'a host tensor {tuple(obj.shape)} came back')
    if isinstance(obj, dict):
        return {key: unwrap(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unwrap(value) for value in obj)
    return obj


def sites(lines):
    """Counter of ``'path (function)'``: line numbers left out, so edits
    elsewhere in a file do not change it."""
    return Counter(f"{line.split(':')[0]} {line.split(' ', 1)[1]}"
                   for line in lines)


def train_step(model, inputs):
    """Losses and parameter gradients of one training step."""
    model.train()
    model.zero_grad()
    losses = model.forward_train(**inputs)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grads = {name: p.grad for name, p in model.named_parameters()
             if p.grad is not None}
    return losses, grads


def test_virtual_device_applies_cuda_device_rules(device):
    with device:
        check_device_rules(device)


def check_device_rules(device):
    on_device = to_virtual(torch.arange(6.).view(2, 3))
    assert on_device.device.type == 'meta'
    with pytest.raises(DeviceMismatch, match='host tensors of shape'):
        on_device + torch.ones(2, 3)
    # 0-dim host tensors and host index tensors are fine on CUDA too.
    assert torch.equal(unwrap(on_device * torch.tensor(2.)),
                       torch.arange(0., 12., 2.).view(2, 3))
    assert torch.equal(unwrap(on_device[torch.tensor([1])]),
                       torch.tensor([[3., 4., 5.]]))
    made = torch.zeros(2, device=on_device.device) + on_device.new_tensor(
        [1, 2]) + torch.tensor([3., 4.], device=on_device.device)
    assert torch.equal(unwrap(made), torch.tensor([4., 6.]))
    assert on_device.sum().item() == 15.
    assert torch.equal(on_device.cpu(), torch.arange(6.).view(2, 3))
    assert len(device.host_reads) == 1 and len(device.host_copies) == 1


def test_planted_host_tensor_in_matching_is_caught(device, monkeypatch):
    # The classic mistake: assignment results made without device=.
    assign_by_cost = repeated_targets.assign_by_cost

    def forgets_device(cost, gt_labels, num_repeats, num_query, device):
        return assign_by_cost(cost, gt_labels, num_repeats, num_query,
                              torch.device('cpu'))

    monkeypatch.setattr(repeated_targets, 'assign_by_cost', forgets_device)
    for module in ('hungarian_assigner', 'pose_hungarian_assigner'):
        monkeypatch.setattr(f'opera.core.bbox.assigners.{module}.'
                            'assign_by_cost', forgets_device)
    with device, pytest.raises(DeviceMismatch, match=r'at opera/'):
        model = to_virtual(build_tiny(TINY_HYBRID))
        train_step(model, to_virtual(detection_inputs([(96, 128)])))


def relative_error(value, reference):
    """max |value - reference| / max |reference|."""
    if reference.numel() == 0:
        return 0.
    scale = reference.abs().max().clamp(min=1e-12)
    return ((value - reference).abs().max() / scale).item()


@pytest.mark.parametrize('config, make_inputs', [
    (TINY_HYBRID, detection_inputs), (TINY_H_PETR, pose_inputs)])
def test_train_step_on_device_equals_cpu(device, config, make_inputs):
    shapes = [(96, 128), (128, 96)]
    expected_losses, expected_grads = train_step(build_tiny(config),
                                                 make_inputs(shapes))
    model, inputs = build_tiny(config), make_inputs(shapes)
    with device:
        losses, grads = train_step(to_virtual(model), to_virtual(inputs))
        losses, grads = unwrap(losses), unwrap(grads)
    assert losses.keys() == expected_losses.keys()
    assert grads.keys() == expected_grads.keys()
    # The same CPU kernels, called through the mode: rounding differs by a
    # few ulp at most (measured: 1.1e-6 relative).
    for name, value in list(expected_losses.items()) + list(
            expected_grads.items()):
        assert relative_error(losses.get(name, grads.get(name)),
                              value) < 1e-5, name
    assert device.kernel.calls > 0
    # The only device-to-host copies: the Hungarian matching's cost matrix
    # (scipy solves on the host), once per call: each decoder layer's
    # one-to-one and one-to-many queries and the two-stage encoder's
    # proposals, for the one image with targets; H-PETR's heatmap targets
    # copy the radii, the drawn keypoints and their cells once per image.
    head = model.bbox_head
    num_calls = head.transformer.decoder.num_layers * len(
        head.query_groups.groups) + 1
    expected = Counter({MATCHING: num_calls})
    if 'gt_keypoints' in inputs:
        expected[HEATMAP] = 3 * len(shapes)
    assert sites(device.host_copies) == expected
    print('host reads', sites(device.host_reads))


@pytest.mark.parametrize('config, make_inputs', [
    (TINY_HYBRID, detection_inputs), (TINY_H_PETR, pose_inputs)])
def test_test_step_on_device_equals_cpu(device, config, make_inputs):
    inputs = make_inputs([(96, 128), (128, 96)])
    model = build_tiny(config).eval()
    with torch.no_grad():
        expected = model.simple_test(inputs['img'], inputs['img_metas'])
        with device:
            results = to_virtual(model).simple_test(
                to_virtual(inputs['img']), inputs['img_metas'])
    assert len(results) == len(expected) == 2
    for result, expected_result in zip(results, expected):
        flat, expected_flat = flatten_result(result), flatten_result(
            expected_result)
        assert len(flat) == len(expected_flat)
        for array, expected_array in zip(flat, expected_flat):
            assert array.shape == expected_array.shape
            assert np.allclose(array, expected_array, rtol=1e-5, atol=1e-4)
    # Results leave the device once, image by image, at the end.
    if 'gt_keypoints' in inputs:  # boxes, labels, keypoints
        expected = {'opera/core/keypoint/transforms.py (bbox_kpt2result)': 6}
    else:  # boxes and labels
        expected = {'mmdet/core/bbox/transforms.py (bbox2result)': 4}
    assert sites(device.host_copies) == Counter(expected)
    print('test-step host reads', sites(device.host_reads))


def flatten_result(result):
    """The numpy arrays of one image's result, in order."""
    if isinstance(result, np.ndarray):
        return [result]
    return [array for part in result for array in flatten_result(part)]
