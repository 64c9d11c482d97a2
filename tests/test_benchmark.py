"""The benchmark and profile tools run and report every field they
promise."""
import json
import sys

import pytest

from conftest import REPO_ROOT

from opera.utils.flops import flop_counter_mode

sys.path.insert(0, f'{REPO_ROOT}/tools/analysis_tools')
import benchmark  # noqa: E402
import profile_parts  # noqa: E402

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'
TINY_H_PETR = f'{REPO_ROOT}/tests/configs/tiny_h_petr.py'


def test_benchmark_reports_inference_train_split_and_memory(tmp_path):
    out = tmp_path / 'bench.json'
    result = benchmark.main([
        TINY_HYBRID, '--input-size', '96', '128', '--batch-size', '2',
        '--num-boxes', '3', '--iters', '1', '--warmup', '0', '--json',
        str(out)
    ])
    step = result['train_step']
    assert set(step) == {
        'forward', 'matching', 'loss', 'backward', 'total',
        'matching_one2one', 'matching_one2many', 'matching_encoder'
    }
    assert step['matching'] > 0 and step['forward'] > 0
    parts = step['forward'] + step['matching'] + step['loss'] + \
        step['backward']
    assert abs(parts - step['total']) < 1e-3
    assert result['inference']['images_per_second'] > 0
    assert result['peak_memory_mb'] > 0
    assert json.loads(out.read_text())['trainable_params'] == \
        result['trainable_params']

    # FLOPs per part of the train step, GFLOP/s next to each time.
    flops, rates = result['train_flops'], result['train_gflops_per_second']
    assert set(flops) == {'forward', 'loss', 'backward', 'total'}
    assert flops['total'] == flops['forward'] + flops['loss'] + \
        flops['backward']
    # Backward computes the gradients of the inputs and of the weights;
    # the detection losses and costs have no matmul.
    assert flops['backward'] > flops['forward'] > 0 and flops['loss'] == 0
    assert rates['forward'] == pytest.approx(flops['forward'] / 1e9 /
                                             step['forward'])
    assert rates['loss'] is None
    # Inference runs the one-to-one queries only: fewer FLOPs than the
    # train forward of all groups; its count is the simple_test's.
    inference = result['inference']
    assert 0 < inference['flops'] < flops['forward']
    model, batch = benchmark.build_run(TINY_HYBRID, None, None,
                                       benchmark.parse_args([
                                           TINY_HYBRID, '--input-size', '96',
                                           '128', '--batch-size', '2',
                                           '--num-boxes', '3'
                                       ]), 'cpu')
    model.eval()
    # torch's own counter (its module tracking needs gradients enabled),
    # with the CPU attention kernel's formulas (opera.utils.flops).
    with flop_counter_mode(display=False) as counter:
        model.simple_test(batch['img'], batch['img_metas'])
    assert inference['flops'] == counter.get_total_flops()
    assert inference['gflops_per_second'] == pytest.approx(
        inference['flops'] / 1e9 / inference['seconds_per_batch'])
    table = benchmark.format_table(result)
    assert f"{flops['total'] / 1e9:.1f} GFLOP at" in table


def test_benchmark_pose_config_against_a_second_config_interleaved():
    result = benchmark.main([
        TINY_H_PETR, '--input-size', '96', '96', '--batch-size', '2',
        '--num-boxes', '2', '--iters', '1', '--warmup', '0', '--mode',
        'train', '--vs', TINY_H_PETR, '--vs-cfg-options',
        'model.bbox_head.num_query_one2many=0'
    ])
    hybrid, plain = result['train_step'], result['vs']['train_step']
    # Matching per branch: one-to-one, one-to-many (hybrid only), encoder.
    for step in (hybrid, plain):
        assert step['matching_one2one'] > 0 and step['matching_encoder'] > 0
        branches = sum(step[f'matching_{name}']
                       for name in ('one2one', 'one2many', 'encoder'))
        assert abs(branches - step['matching']) < 1e-6
    assert hybrid['matching_one2many'] > 0 and plain['matching_one2many'] == 0
    assert result['one2many_over_one2one_matching'] > 0
    assert result['vs']['one2many_over_one2one_matching'] is None
    ratio = result['ratios']['train_total']
    assert ratio == plain['total'] / hybrid['total']  # one round
    assert result['round_ratios'] == {'train_total': [ratio]}
    assert f'train_total: {ratio:.2f}x (rounds {ratio:.2f})' in \
        benchmark.format_table(result)
    assert 'inference' not in result
    # The refine decoder runs in the pose loss, on the matched persons.
    for model in (result, result['vs']):
        loss_flops = model['train_flops']['loss']
        assert loss_flops > 0
        assert model['train_gflops_per_second']['loss'] == pytest.approx(
            loss_flops / 1e9 /
            (model['train_step']['loss'] + model['train_step']['matching']))
    # The extra group's FLOPs, and each model's own peak memory.
    assert result['ratios']['train_flops'] == (
        result['vs']['train_flops']['total'] /
        result['train_flops']['total'])
    assert result['ratios']['train_flops'] < 1
    assert result['peak_memory_mb'] > 0 and \
        result['vs']['peak_memory_mb'] > 0


def test_profile_attributes_every_op_and_flop_of_a_train_step():
    """Parts add up to the step's FLOPs as the benchmark counts them; the
    backward ops land on the parts whose forward created them."""
    argv = [
        TINY_HYBRID, '--input-size', '96', '128', '--batch-size', '2',
        '--num-boxes', '3'
    ]
    result, = profile_parts.main(argv)
    parts = result['parts']
    run_ = benchmark.build_run(TINY_HYBRID, None, None,
                               benchmark.parse_args(argv), 'cpu')
    flops = benchmark.count_flops(benchmark.train_step, run_, 'cpu')
    assert result['gflop'] == pytest.approx(flops['total'] / 1e9)
    for part in ('backbone', 'neck', 'encoder: deformable sampling',
                 'encoder: deformable projections', 'encoder: FFN',
                 'decoder: self-attention', 'decoder: deformable sampling',
                 'heads (class, box / pose branches)', 'matching',
                 'loss: loss_cls', 'loss: loss_bbox', 'loss: loss_iou'):
        assert parts[part]['forward_s'] > 0, part
    for part in ('backbone', 'encoder: FFN', 'decoder: self-attention'):
        assert parts[part]['backward_s'] > 0 and parts[part]['gflop'] > 0, \
            part
    assert 'unattributed' not in parts
    # Sampling is grid_sample and element-wise work: no matmul FLOPs.
    assert parts['decoder: deformable sampling']['gflop'] == 0
    assert parts['decoder: deformable sampling']['backward_s'] > 0
    assert 0 < result['matching_s'] < result['step_s']
    assert result['op_s'] == pytest.approx(
        sum(row['total_s'] for row in parts.values()))
    assert result['ops'][0]['seconds'] == max(
        row['seconds'] for row in result['ops'])


def test_vs_ratios_are_medians_of_the_round_ratios():
    first = [dict(total=2.0), dict(total=4.0), dict(total=1.0)]
    second = [dict(total=3.0), dict(total=10.0), dict(total=1.8)]
    assert benchmark.round_ratios(first, second, 'total') == [1.5, 2.5, 1.8]
    assert benchmark.median_ratio(first, second, 'total') == 1.8
    assert benchmark.round_ratios([dict(total=0.0)], [dict(total=1.0)],
                                  'total') is None
