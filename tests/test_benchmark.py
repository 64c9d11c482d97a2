"""The benchmark tool runs and reports every field it promises."""
import json
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, f'{REPO_ROOT}/tools/analysis_tools')
import benchmark  # noqa: E402

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
    assert 'inference' not in result
