"""get_flops (parameters, matmul/conv + deformable-sampling FLOPs) and
analyze_results (per-image AP, best / worst drawings)."""
import importlib.util
import json
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import REPO_ROOT, data_path, run_in_repo
from test_param_counts import REFERENCE_COUNTS

from opera.apis import init_model
from opera.models.attention import MultiScaleDeformableAttention
from opera.utils.flops import flop_counter_mode

pytestmark = pytest.mark.usefixtures('single_thread')

TINY_DETECTION = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'
TINY_POSE = f'{REPO_ROOT}/tests/configs/tiny_petr.py'


def load_tool(relative_path):
    """Import a script of the repository as a module."""
    path = osp.join(REPO_ROOT, relative_path)
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


get_flops = load_tool('tools/analysis_tools/get_flops.py')
analyze_results = load_tool('tools/analysis_tools/analyze_results.py')

# get_flops ------------------------------------------------------------------


# The R50 model of each kind (test_param_counts.py checks every config).
R50_CONFIGS = ('hdetr/deformable_detr_tricks_r50_two_stage_12ep.py',
               'hdetr/h_deformable_detr_r50_two_stage_12ep.py',
               'petr/petr_r50_16x2_100e_coco.py',
               'petr/h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py')


@pytest.mark.parametrize('config', R50_CONFIGS)
def test_get_flops_parameter_counts_equal_the_reference(config):
    model = init_model(osp.join(REPO_ROOT, 'configs', config))
    total, trainable = get_flops.count_parameters(model)
    assert trainable == REFERENCE_COUNTS[config]
    # ResNet's frozen stem and first stage are the untrained rest.
    assert total > trainable


def test_deformable_sampling_flops_follow_the_formula():
    """One deformable attention call: torch's counter sees exactly its four
    linear layers; our counter adds 10 FLOPs per query x head x level x
    point x head channel."""
    embed, heads, levels, points = 32, 4, 2, 3
    batch, num_query = 2, 5
    attention = MultiScaleDeformableAttention(
        embed_dims=embed, num_heads=heads, num_levels=levels,
        num_points=points).eval()
    shapes = torch.tensor([[4, 4], [2, 2]])
    num_value = int(shapes.prod(1).sum())
    query = torch.randn(num_query, batch, embed)
    value = torch.randn(num_value, batch, embed)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, get_flops.DeformableSamplingCounter(
            attention) as sampling:
        attention(
            query,
            value=value,
            reference_points=torch.rand(batch, num_query, levels, 2),
            spatial_shapes=shapes,
            level_start_index=torch.tensor([0, 16]))
    linear = 2 * batch * (num_value * embed * embed +  # value_proj
                          num_query * embed * heads * levels * points * 2 +
                          num_query * embed * heads * levels * points +
                          num_query * embed * embed)  # output_proj
    assert counter.get_total_flops() == linear
    assert sampling.calls == 1
    assert sampling.flops == 10 * batch * num_query * levels * points * embed


def test_count_flops_of_a_tiny_detector_adds_every_deformable_call():
    model = init_model(TINY_DETECTION)
    flops = get_flops.count_flops(model, (256, 320))
    # 2 encoder + 2 decoder layers; 4 levels of 32x40 .. 4x5 (strides 8-64)
    # give 1700 encoder queries, the decoder runs the 20 one-to-one ones.
    assert flops['deformable_calls'] == 4
    positions = 32 * 40 + 16 * 20 + 8 * 10 + 4 * 5
    assert flops['deformable_sampling'] == 10 * (2 * positions + 2 * 20) * (
        4 * 4 * 256)
    assert flops['total'] == flops['matmul_conv'] + flops[
        'deformable_sampling']
    assert set(flops['by_module']) == {'backbone', 'neck', 'bbox_head'}
    assert sum(flops['by_module'].values()) == flops['matmul_conv']


def test_cpu_self_attention_products_are_counted():
    """torch's counter has no formula for the CPU attention kernel; ours
    counts its products as the CUDA flash kernel's: 4 b h s_q s_k d
    forward, 10 b h s_q s_k d backward (scores recomputed)."""
    b, h, s_q, s_k, d = 2, 4, 10, 12, 8
    query = torch.randn(b, h, s_q, d, requires_grad=True)
    key = torch.randn(b, h, s_k, d, requires_grad=True)
    value = torch.randn(b, h, s_k, d, requires_grad=True)
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value)
    plain, ours = FlopCounterMode(display=False), flop_counter_mode(
        display=False)
    for counter in (plain, ours):
        with counter:
            torch.nn.functional.scaled_dot_product_attention(
                query, key, value).backward(torch.ones_like(output))
    assert plain.get_total_flops() == 0
    assert ours.get_total_flops() == (4 + 10) * b * h * s_q * s_k * d


def test_count_flops_includes_the_decoder_self_attention(monkeypatch):
    """The tiny detector's 2 decoder layers run self-attention over its 20
    one-to-one queries at test time (8 heads of 32 channels): 4 x 20^2 x
    256 FLOPs per layer more than torch's counter alone sees."""
    model = init_model(TINY_DETECTION)
    ours = get_flops.count_flops(model, (256, 320))
    monkeypatch.setattr(get_flops, 'flop_counter_mode', FlopCounterMode)
    plain = get_flops.count_flops(model, (256, 320))
    assert ours['matmul_conv'] - plain['matmul_conv'] == 2 * 4 * 20**2 * 256
    assert ours['by_module']['bbox_head'] - plain['by_module'][
        'bbox_head'] == 2 * 4 * 20**2 * 256
    assert ours['by_module']['backbone'] == plain['by_module']['backbone']


def test_get_flops_cli_prints_parameters_and_flops():
    proc = run_in_repo([
        'python3', 'tools/analysis_tools/get_flops.py', TINY_POSE,
        '--input-size', '128', '160'
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = init_model(TINY_POSE)
    total, trainable = get_flops.count_parameters(model)
    assert f'parameters   {total:,} ({trainable:,} trainable)' in proc.stdout
    assert 'deformable sampling' in proc.stdout
    assert 'input        1 x 3 x 128 x 160' in proc.stdout


# analyze_results ------------------------------------------------------------


def fake_results(ann_file):
    """Per image of coco_val_tiny: 785 every person exact, 40083 every
    person 40 px off, 196141 nothing, 197388 3 of its 5 persons exact."""
    coco = mmcv.load(ann_file)
    results = []
    for image in coco['images']:
        anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        if image['id'] == 196141:
            anns = []
        elif image['id'] == 197388:
            anns = anns[:3]
        shift = 40. if image['id'] == 40083 else 0.
        boxes = np.array([[
            a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
            a['bbox'][1] + a['bbox'][3], 0.9
        ] for a in anns], np.float32).reshape(-1, 5)
        boxes[:, :4] += shift
        kpts = np.array([a['keypoints'] for a in anns],
                        np.float32).reshape(-1, 17, 3)
        kpts[..., :2] += shift
        kpts[..., 2] = 1.
        results.append(([boxes], [kpts]))
    return coco, results


@pytest.mark.parametrize('metric', ['keypoints', 'bbox'])
def test_analyze_results_ranks_and_draws_images(tmp_path, metric):
    ann_file = data_path('coco_val_tiny', 'test_coco.json')
    coco, results = fake_results(ann_file)
    pkl = str(tmp_path / 'results.pkl')
    mmcv.dump(results, pkl)
    out = tmp_path / 'analysis'
    aps = analyze_results.main([
        TINY_POSE, pkl, '--show-dir',
        str(out), '--topk', '2', '--metric', metric, '--cfg-options',
        f'data.test.ann_file={ann_file}',
        f'data.test.img_prefix={osp.dirname(ann_file)}/'
    ])
    ap = {image['id']: value for image, value in zip(coco['images'], aps)}
    assert ap[785] == pytest.approx(1.0)
    assert ap[196141] == 0.0
    assert ap[40083] < 0.5
    # Recall 3/5 at precision 1 (COCO's 101 recall points: 0.60 or 0.61).
    assert 0.59 < ap[197388] < 0.61

    best = sorted(p.name for p in (out / 'best').iterdir())
    worst = sorted(p.name for p in (out / 'worst').iterdir())
    assert best == ['000_000000000785_ap1.000.png',
                    '001_000000197388_ap' + f'{ap[197388]:.3f}.png']
    assert worst[0] == '000_000000196141_ap0.000.png'
    saved = json.loads((out / 'per_image_ap.json').read_text())
    assert saved['metric'] == metric
    assert saved['per_image_ap']['000000000785.jpg'] == pytest.approx(1.0)

    # Ground truth on the left, predictions (none here) on the right.
    image = mmcv.imread(data_path('coco_val_tiny', '000000196141.jpg'))
    drawn = mmcv.imread(str(out / 'worst' / worst[0]))
    height, width = image.shape[:2]
    assert drawn.shape == (height, 2 * width, 3)
    np.testing.assert_array_equal(drawn[:, width:], image)
    assert (drawn[:, :width] != image).any()


def test_analyze_results_refuses_results_of_another_dataset(tmp_path):
    ann_file = data_path('coco_val_tiny', 'test_coco.json')
    _, results = fake_results(ann_file)
    pkl = str(tmp_path / 'results.pkl')
    mmcv.dump(results[:3], pkl)
    with pytest.raises(ValueError, match='holds 3 results for 4 test images'):
        analyze_results.main([
            TINY_POSE, pkl, '--show-dir',
            str(tmp_path), '--cfg-options', f'data.test.ann_file={ann_file}',
            f'data.test.img_prefix={osp.dirname(ann_file)}/'
        ])
