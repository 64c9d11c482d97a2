"""tools/analysis_tools/draw_sampling_points.py: the drawn points are where
the last decoder layer's deformable attention samples (checked against the
module's own output), in pixels of the image."""
import importlib.util

import mmcv
import numpy as np
import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch

from conftest import REPO_ROOT

import opera  # noqa: F401
from opera.apis import init_model
from opera.apis.sampling_points import (LABEL_HEIGHT, decoder_attention_type,
                                        normalised_samples, record_last_call,
                                        run_and_record, to_pixels,
                                        valid_fractions)
from opera.models.attention.pose_attention import PoseDeformableAttention

pytestmark = pytest.mark.usefixtures('single_thread')

IMAGE = f'{REPO_ROOT}/demo/data/coco_sample/images/000000030752.jpg'
CONFIGS = dict(
    detection=f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py',
    pose=f'{REPO_ROOT}/tests/configs/tiny_petr_sample.py')
# The one-to-one (test-time) queries of the tiny configs.
NUM_QUERIES = dict(detection=20, pose=10)


def load_tool():
    path = f'{REPO_ROOT}/tools/analysis_tools/draw_sampling_points.py'
    spec = importlib.util.spec_from_file_location('draw_sampling_points',
                                                  path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def attention_output(module, inputs, locations, weights):
    """The module's output recomputed from ``locations`` and ``weights``
    by mmcv's reference sampling (eval mode: no dropout)."""
    query = inputs['query']
    identity = inputs.get('identity')
    identity = query if identity is None else identity
    value = inputs.get('value')
    value = query if value is None else value
    if not module.batch_first:
        value = value.permute(1, 0, 2)
    value = module.value_proj(value)
    mask = inputs.get('key_padding_mask')
    if mask is not None:
        value = value.masked_fill(mask[..., None], 0.)
    value = value.view(*value.shape[:2], module.num_heads, -1)
    sampled = multi_scale_deformable_attn_pytorch(
        value, inputs['spatial_shapes'], locations, weights)
    output = module.output_proj(sampled)
    if not module.batch_first:
        output = output.permute(1, 0, 2)
    return output + identity


@pytest.mark.parametrize('kind', ['detection', 'pose'])
def test_points_are_where_the_attention_samples(kind, tmp_path):
    torch.manual_seed(0)
    model = init_model(CONFIGS[kind])
    attention, _, meta = run_and_record(model, IMAGE)
    module = attention['module']
    expected_type = PoseDeformableAttention if kind == 'pose' else \
        decoder_attention_type(model)
    assert type(module) is expected_type
    locations, weights = normalised_samples(attention)
    num_queries = NUM_QUERIES[kind]
    assert locations.shape[:2] == (1, num_queries)
    torch.testing.assert_close(weights.sum((-1, -2)),
                               torch.ones(1, num_queries, module.num_heads))
    with torch.no_grad():
        recomputed = attention_output(module, attention['inputs'], locations,
                                      weights)
    torch.testing.assert_close(recomputed, attention['output'])

    torch.manual_seed(0)
    out_file = tmp_path / 'points.png'
    samples = load_tool().main(
        [CONFIGS[kind], IMAGE, '--out-file',
         str(out_file), '--top', '2'])
    image = mmcv.imread(IMAGE)
    height, width = image.shape[:2]
    drawing = mmcv.imread(str(out_file))
    assert drawing.shape == (height + LABEL_HEIGHT,
                             module.num_levels * width, 3)
    assert len(samples) == 2
    for sample in samples:
        expected = to_pixels(locations[0, sample.query], meta,
                             valid_fractions(attention)[:, None])
        np.testing.assert_allclose(sample.locations, expected)
        np.testing.assert_array_equal(sample.weights,
                                      weights[0, sample.query].numpy())
        x, y = sample.locations[..., 0], sample.locations[..., 1]
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        assert inside.mean() > 0.5


def test_pixels_undo_the_padding_and_the_resize():
    # Level of 2 x 4 cells, the last column padding: x = 0.75 of the
    # padded map is the right edge of the image.
    mask = torch.tensor([[False, False, False, True]] * 2).view(1, 8)
    attention = dict(
        inputs=dict(
            spatial_shapes=torch.tensor([[2, 4]]),
            level_start_index=torch.tensor([0]),
            key_padding_mask=mask))
    fractions = valid_fractions(attention)
    torch.testing.assert_close(fractions, torch.tensor([[0.75, 1.0]]))
    meta = dict(img_shape=(100, 300, 3), scale_factor=np.array([0.5] * 4))
    pixels = to_pixels(torch.tensor([[0.75, 0.5]]), meta, fractions[0])
    np.testing.assert_allclose(pixels, [[600., 100.]])


def test_record_keeps_the_last_call():
    layers = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)]
    record = {}
    with record_last_call(layers, record):
        layers[0](torch.ones(1, 2))
        out = layers[1](torch.zeros(1, 2))
    assert record['module'] is layers[1]
    assert torch.equal(record['inputs']['input'], torch.zeros(1, 2))
    assert torch.equal(record['output'], out)
    layers[0](torch.ones(1, 2))  # hooks removed
    assert record['module'] is layers[1]
