"""The installer's CPU/CUDA build decision (tools/cuda_build_plan.py), for
machines this CI does not have: GPUs of several generations, with and
without nvcc, CPU build nodes asked for CUDA ops."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
import cuda_build_plan as plan_mod  # noqa: E402
from cuda_build_plan import Machine, PlanError, decide  # noqa: E402

SITE = '/venv/lib/python3.11/site-packages'
CU13_WHEELS = ('nvidia-cuda-nvcc==13.0.88', 'nvidia-cuda-cccl==13.0.85',
               'nvidia-cuda-crt==13.0.88', 'nvidia-nvvm==13.0.88')


def machine(**fields):
    """torch 2.14.1+cu130, no GPU, no nvcc, unless ``fields`` say else."""
    values = dict(torch_version='2.14.1+cu130', torch_cuda='13.0',
                  site_packages=SITE)
    values.update(fields)
    return Machine(**values)


def test_no_gpu_builds_cpu_ops():
    plan = decide(machine())
    assert not plan.cuda_ops
    assert plan.flavour == 'torch2.14.1_cu130-cpuops'
    assert (plan.arch_list, plan.cuda_home, plan.nvcc_packages) == ('', '', ())


def test_gpu_without_nvcc_installs_the_compiler_wheels():
    plan = decide(machine(gpu_archs=[(9, 0)]))
    assert plan.cuda_ops
    assert plan.arch_list == '9.0'
    assert plan.nvcc_packages == CU13_WHEELS
    assert plan.cuda_home == f'{SITE}/nvidia/cu13'
    assert plan.cuda_major == 13
    assert plan.flavour == 'torch2.14.1_cu130-cudaops-sm90'


def test_matching_nvcc_is_used_and_every_gpu_architecture_built():
    plan = decide(machine(gpu_archs=[(8, 6), (8, 0), (8, 6)],
                          nvcc_release=(13, 1), nvcc_home='/usr/local/cuda'))
    assert plan.arch_list == '8.0;8.6'
    assert plan.cuda_home == '/usr/local/cuda'
    assert plan.nvcc_packages == ()
    assert plan.flavour == 'torch2.14.1_cu130-cudaops-sm80_86'


def test_nvcc_of_another_major_release_is_not_used():
    plan = decide(machine(gpu_archs=[(8, 9)], nvcc_release=(12, 4),
                          nvcc_home='/usr/local/cuda-12.4'))
    assert plan.nvcc_packages == CU13_WHEELS
    assert plan.cuda_home == f'{SITE}/nvidia/cu13'


def test_build_node_without_gpu_needs_an_arch_list():
    with pytest.raises(PlanError, match='TORCH_CUDA_ARCH_LIST=9.0'):
        decide(machine(), 'yes')
    plan = decide(machine(arch_list_env='8.0; 9.0'), 'yes')
    assert plan.cuda_ops and plan.arch_list == '8.0;9.0'
    assert plan.flavour == 'torch2.14.1_cu130-cudaops-sm80_90'
    plan = decide(machine(arch_list_env='8.6+PTX'), 'yes')
    assert plan.flavour == 'torch2.14.1_cu130-cudaops-sm86ptx'


def test_arch_list_overrides_the_gpus_own():
    plan = decide(machine(gpu_archs=[(9, 0)], arch_list_env='8.0;9.0'))
    assert plan.arch_list == '8.0;9.0'


@pytest.mark.parametrize('fields, cuda_ops, message', [
    (dict(gpu_archs=[(7, 0)]), 'auto', r'GPU sm_70 is older than CUDA 13.0'),
    (dict(gpu_archs=[(6, 1)], arch_list_env='9.0'), 'auto', 'needs sm_75'),
    (dict(arch_list_env='7.0;9.0'), 'yes', r'entry sm_70 is older'),
    (dict(arch_list_env='sm_90'), 'yes', "'sm_90' is not an architecture"),
    (dict(torch_cuda=None, torch_version='2.14.1+cpu'), 'yes',
     'CPU-only build'),
    (dict(torch_cuda='12.8', gpu_archs=[(9, 0)]), 'auto',
     'install the CUDA 12.x toolkit'),
    (dict(), 'maybe', 'must be auto, yes or no'),
])
def test_impossible_cuda_builds_stop_with_the_reason(fields, cuda_ops,
                                                    message):
    with pytest.raises(PlanError, match=message):
        decide(machine(**fields), cuda_ops)


def test_turing_is_the_oldest_gpu_for_cuda_13_and_older_cuda_allows_more():
    assert decide(machine(gpu_archs=[(7, 5)])).arch_list == '7.5'
    plan = decide(machine(torch_version='2.14.1+cu126', torch_cuda='12.6',
                          gpu_archs=[(7, 0)], nvcc_release=(12, 6),
                          nvcc_home='/usr/local/cuda'))
    assert plan.arch_list == '7.0' and plan.nvcc_packages == ()


def test_cpu_ops_on_request_even_with_a_gpu():
    plan = decide(machine(gpu_archs=[(9, 0)]), 'no')
    assert not plan.cuda_ops and plan.flavour.endswith('-cpuops')


def test_shell_assignments_survive_eval():
    plan = decide(machine(gpu_archs=[(8, 0), (9, 0)]))
    out = subprocess.run(
        ['bash', '-c', 'eval "$1"; printf "%s|%s|%s|%s" "$CUDA_OPS" '
         '"$TORCH_CUDA_ARCH_LIST" "$NVCC_PACKAGES" "$FLAVOUR"', '_',
         plan.shell()], capture_output=True, text=True, check=True).stdout
    assert out.split('|') == ['1', '8.0;9.0', ' '.join(CU13_WHEELS),
                              'torch2.14.1_cu130-cudaops-sm80_90']


def test_main_prints_the_plan_or_the_reason(monkeypatch, capsys):
    monkeypatch.setattr(plan_mod, 'probe', lambda: machine())
    assert plan_mod.main(['--cuda-ops', 'auto']) == 0
    assert 'CUDA_OPS=0' in capsys.readouterr().out
    assert plan_mod.main(['--cuda-ops', 'yes']) == 2
    captured = capsys.readouterr()
    assert captured.out == ''
    assert captured.err.startswith('install.sh: CUDA ops were asked for')


def make_toolkit(root, headers=True):
    """A folder with an executable bin/nvcc (and include/cuda_runtime.h)."""
    os.makedirs(osp.join(root, 'bin'))
    nvcc = osp.join(root, 'bin', 'nvcc')
    with open(nvcc, 'w') as f:
        f.write('#!/bin/sh\necho "Cuda compilation tools, release 13.0, '
                'V13.0.88"\n')
    os.chmod(nvcc, 0o755)
    if headers:
        os.makedirs(osp.join(root, 'include'))
        open(osp.join(root, 'include', 'cuda_runtime.h'), 'w').close()
    return nvcc


def test_find_cuda_home_skips_wrapper_scripts(tmp_path, monkeypatch):
    wrapper_bin = make_toolkit(tmp_path / 'wrapper', headers=False)
    make_toolkit(tmp_path / 'toolkit')
    monkeypatch.delenv('CUDA_HOME', raising=False)
    monkeypatch.delenv('CUDA_PATH', raising=False)
    monkeypatch.setenv('PATH', osp.dirname(wrapper_bin))
    # /usr/local/cuda, the last candidate, may exist on the test machine.
    assert plan_mod.find_cuda_home() in (None, '/usr/local/cuda')
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'toolkit'))
    assert plan_mod.find_cuda_home() == str(tmp_path / 'toolkit')
    assert plan_mod.nvcc_release(
        str(tmp_path / 'toolkit' / 'bin' / 'nvcc')) == (13, 0)
    assert plan_mod.nvcc_release(str(tmp_path / 'missing')) is None


def test_install_sh_rejects_unknown_options():
    result = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools',
                                              'install.sh'), '--gpu'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'usage: bash tools/install.sh [--cuda | --cpu]' in result.stderr
