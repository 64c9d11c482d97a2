"""tools/gpu_check.py without a GPU: a clear message and exit status 2,
and the pieces of its table that need no GPU."""
import os.path as osp
import sys

import pytest
import torch
from mmcv import ops
from mmcv.runner import fp16_utils

from conftest import REPO_ROOT, run_in_repo

sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is here')
def test_without_cuda_it_says_why_and_measures_nothing():
    result = run_in_repo([sys.executable, 'tools/gpu_check.py', '--quick'])
    assert result.returncode == gpu_check.NO_CUDA_EXIT == 2
    assert result.stdout.startswith('gpu_check: no GPU check on this '
                                    'machine: torch ')
    assert result.stdout.rstrip().endswith('Nothing was measured.')
    assert '| check |' not in result.stdout


def test_each_missing_piece_is_named(monkeypatch):
    monkeypatch.setattr(torch.version, 'cuda', None)
    assert 'is a CPU-only build' in gpu_check.cuda_problem()
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert 'sees no CUDA device' in gpu_check.cuda_problem()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(ops, 'get_compiling_cuda_version',
                        lambda: 'not available')
    assert 'install.sh --cuda' in gpu_check.cuda_problem()
    monkeypatch.setattr(ops, 'get_compiling_cuda_version', lambda: '13.0')
    assert gpu_check.cuda_problem() is None


def test_relative_error_is_max_difference_over_max_reference():
    reference = torch.tensor([[2., -4.], [1., 0.]])
    value = torch.tensor([[2.5, -4.], [1., -1.]], dtype=torch.float16)
    assert gpu_check.relative_error(value, reference) == 1 / 4


def test_table_marks_rows_over_their_limit():
    rows = [gpu_check.row('kernel', 'forward', 5e-5, 1e-4),
            gpu_check.row('kernel', 'grad value', 2e-3, 1e-3),
            gpu_check.row('speed', 'train step, s', 0.5, unit='s')]
    assert [r['passed'] for r in rows] == [True, False, True]
    table = gpu_check.format_table(rows).split('\n')
    assert table[2] == '| kernel | forward | 5e-05 rel. err | <= 0.0001 | ok |'
    assert table[3].endswith('| <= 0.001 | FAIL |')
    assert table[4] == '| speed | train step, s | 0.5 s |  | ok |'


def test_quick_halves_the_timed_steps():
    args = gpu_check.parse_args(['--quick'])
    assert (args.iters, args.warmup) == (5, 2)
    assert gpu_check.parse_args([]).input_size == [800, 1216]


def test_a_broken_part_becomes_a_failed_row():
    def broken(dtype):
        raise RuntimeError(f'no kernel for {dtype}')

    rows = gpu_check.guarded('kernel', broken, 'half')
    assert len(rows) == 1 and not rows[0]['passed']
    assert rows[0]['setting'] == 'error: RuntimeError: no kernel for half'
    assert gpu_check.guarded('kernel', lambda: [1, 2]) == [1, 2]


@pytest.fixture
def tiny_on_cpu(monkeypatch, single_thread):
    """The training and speed parts on the CPU with the tiny configs."""
    monkeypatch.setattr(gpu_check, 'DEVICE', 'cpu')
    tiny = 'tests/configs/tiny_{}.py'
    monkeypatch.setattr(gpu_check, 'CONFIGS', {
        name: tiny.format(name) for name in ('h_deformable_detr', 'petr',
                                             'h_petr')})
    gpu_check.CONFIGS['deformable_detr'] = tiny.format('h_deformable_detr')
    return gpu_check.parse_args(['--input-size', '128', '128', '--iters', '1',
                                 '--warmup', '0', '--num-boxes', '2'])


def test_train_step_rows_on_cpu(tiny_on_cpu, monkeypatch):
    # mmcv's fp16 decorators enter CUDA autocast, a no-op here: CPU
    # autocast to fp16 stands in (as in test_performance_fp16.py).
    monkeypatch.setattr(
        fp16_utils, 'autocast',
        lambda enabled=True: torch.autocast('cpu', dtype=torch.float16,
                                            enabled=enabled))
    fp32 = gpu_check.train_step_check('h_petr', False, tiny_on_cpu)
    assert [r['setting'] for r in fp32] == ['fp32', 'fp32 losses vs CPU']
    assert fp32[0]['passed'] and fp32[0]['value'] > 0
    # The "GPU" step here is the CPU step: the same losses.
    assert fp32[1]['value'] == 0 and fp32[1]['passed']
    fp16 = gpu_check.train_step_check('h_deformable_detr', True, tiny_on_cpu)
    assert len(fp16) == 1 and fp16[0]['passed']


def test_speed_rows_on_cpu(tiny_on_cpu):
    rows = gpu_check.speed_rows('h_petr', 'petr', tiny_on_cpu)
    assert [(r['check'], r['unit']) for r in rows] == [
        ('speed petr', 's'), ('speed petr', 'MiB'), ('speed petr', 'img/s'),
        ('speed h_petr', 's'), ('speed h_petr', 'MiB'),
        ('speed h_petr', 'img/s'), ('h_petr / petr', 'ratio'),
        ('h_petr / petr', 'ratio')]
    assert all(r['value'] > 0 and r['passed'] for r in rows)
    assert rows[6]['value'] == pytest.approx(rows[3]['value'] /
                                             rows[0]['value'])
