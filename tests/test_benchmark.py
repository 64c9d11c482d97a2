"""The benchmark tool runs and reports every field it promises."""
import json
import sys

from conftest import REPO_ROOT

sys.path.insert(0, f'{REPO_ROOT}/tools/analysis_tools')
import benchmark  # noqa: E402

TINY_HYBRID = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'


def test_benchmark_reports_inference_train_split_and_memory(tmp_path):
    out = tmp_path / 'bench.json'
    result = benchmark.main([
        TINY_HYBRID, '--input-size', '96', '128', '--batch-size', '2',
        '--num-boxes', '3', '--iters', '1', '--warmup', '0', '--json',
        str(out)
    ])
    step = result['train_step']
    assert set(step) == {'forward', 'matching', 'loss', 'backward', 'total'}
    assert step['matching'] > 0 and step['forward'] > 0
    parts = step['forward'] + step['matching'] + step['loss'] + \
        step['backward']
    assert abs(parts - step['total']) < 1e-3
    assert result['inference']['images_per_second'] > 0
    assert result['peak_memory_mb'] > 0
    assert json.loads(out.read_text())['trainable_params'] == \
        result['trainable_params']
