"""tools/gpu_check.py without a GPU: a clear message and exit status 2,
and the pieces of its table that need no GPU."""
import os.path as osp
import sys

import pytest
import torch
from mmcv import ops

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
