"""Decide how ``tools/install.sh`` builds mmcv-full's ops: CPU or CUDA.

The installer runs::

    python tools/cuda_build_plan.py --cuda-ops {auto,yes,no}

and ``eval``s what it prints: shell assignments ``CUDA_OPS`` (0/1),
``FLAVOUR`` (the wheel cache folder), ``TORCH_CUDA_ARCH_LIST``, ``CUDA_HOME``,
``CUDA_MAJOR`` and ``NVCC_PACKAGES`` (compiler wheels to pip-install, empty
when a matching nvcc is already there). When CUDA ops cannot be built it
prints why on stderr and exits with status 2.

The decision itself (:func:`decide`) takes plain values, so the tests can
check every branch without a GPU or a compiler; :func:`probe` gathers those
values on the machine.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field

# Oldest GPU architecture each CUDA major release compiles for (and so the
# oldest the torch wheels built with it run on): CUDA 13 dropped Maxwell,
# Pascal and Volta, CUDA 12 dropped Kepler.
MIN_ARCH = {11: (3, 5), 12: (5, 0), 13: (7, 5)}

# CUDA compiler wheels on the package index per torch.version.cuda; the
# CUDA 13.0 set built all of mmcv-full 1.7.2's ops against torch 2.14.1+cu130.
NVCC_WHEELS = {
    '13.0': ('nvidia-cuda-nvcc==13.0.88', 'nvidia-cuda-cccl==13.0.85',
             'nvidia-cuda-crt==13.0.88', 'nvidia-nvvm==13.0.88'),
}

GPU_NAMES_BY_ARCH = {
    (7, 5): 'T4, RTX 20xx', (8, 0): 'A100', (8, 6): 'RTX 30xx, A10, A40',
    (8, 9): 'L4, L40, RTX 40xx', (9, 0): 'H100, H200',
}


class PlanError(Exception):
    """CUDA ops were asked for (or a GPU is present) but cannot be built."""


@dataclass
class Machine:
    """What the build depends on, as found on the machine.

    Attributes:
        torch_version (str): ``torch.__version__``, e.g. ``'2.14.1+cu130'``.
        torch_cuda (str | None): ``torch.version.cuda``; None for a CPU wheel.
        gpu_archs (list[tuple[int, int]]): compute capability of each visible
            GPU (empty without a GPU or with a CPU torch).
        nvcc_release (tuple[int, int] | None): version of the nvcc found
            (``$CUDA_HOME/bin/nvcc`` or on PATH), None if there is none.
        nvcc_home (str | None): the CUDA_HOME that nvcc lives in.
        arch_list_env (str): ``$TORCH_CUDA_ARCH_LIST`` ('' when unset).
        site_packages (str): where pip installs the compiler wheels.
    """
    torch_version: str
    torch_cuda: str = None
    gpu_archs: list = field(default_factory=list)
    nvcc_release: tuple = None
    nvcc_home: str = None
    arch_list_env: str = ''
    site_packages: str = ''


@dataclass
class Plan:
    """How to build mmcv-full's ops (see the module docstring)."""
    cuda_ops: bool
    flavour: str
    arch_list: str = ''
    cuda_home: str = ''
    cuda_major: int = 0
    nvcc_packages: tuple = ()

    def shell(self):
        """Shell assignments for the installer's ``eval``."""
        values = dict(CUDA_OPS=int(self.cuda_ops), FLAVOUR=self.flavour,
                      TORCH_CUDA_ARCH_LIST=self.arch_list,
                      CUDA_HOME=self.cuda_home, CUDA_MAJOR=self.cuda_major,
                      NVCC_PACKAGES=' '.join(self.nvcc_packages))
        return '\n'.join(f'{key}={shlex.quote(str(value))}'
                         for key, value in values.items())


def parse_arch(entry):
    """``'8.6'``, ``'8.6+PTX'`` or ``'9.0a'`` -> ``(8, 6)`` etc."""
    match = re.fullmatch(r'(\d+)\.(\d+)[a-z]?(\+PTX)?', entry.strip())
    if match is None:
        raise PlanError(
            f'TORCH_CUDA_ARCH_LIST entry {entry!r} is not an architecture '
            'like 8.0, 8.6+PTX or 9.0')
    return int(match.group(1)), int(match.group(2))


def arch_label(arch):
    """``(7, 0)`` -> ``'sm_70 (V100)'``-style text for messages."""
    names = GPU_NAMES_BY_ARCH.get(tuple(arch))
    return f'sm_{arch[0]}{arch[1]}' + (f' ({names})' if names else '')


def check_archs(archs, torch_cuda, what):
    """Stop on an architecture older than CUDA ``torch_cuda`` supports."""
    major = int(torch_cuda.split('.')[0])
    oldest = MIN_ARCH.get(major)
    for arch in archs:
        if oldest is not None and tuple(arch) < oldest:
            raise PlanError(
                f'{what} {arch_label(arch)} is older than CUDA {torch_cuda} '
                f'(the CUDA of this torch) supports: it needs '
                f'sm_{oldest[0]}{oldest[1]} or newer. Use a torch wheel built '
                f'with an older CUDA for this GPU, or install with --cpu for '
                f'CPU ops only (see docs/get_started.md).')


def target_arch_list(machine):
    """The architectures to compile for: $TORCH_CUDA_ARCH_LIST or the GPUs'."""
    if machine.arch_list_env.strip():
        entries = machine.arch_list_env.replace(',', ';').replace(' ', ';')
        entries = [entry for entry in entries.split(';') if entry]
        check_archs([parse_arch(entry) for entry in entries],
                    machine.torch_cuda, 'TORCH_CUDA_ARCH_LIST entry')
        return ';'.join(entries)
    if not machine.gpu_archs:
        raise PlanError(
            'CUDA ops were asked for but no GPU is visible: set '
            'TORCH_CUDA_ARCH_LIST to the target GPUs\' architectures, e.g. '
            'TORCH_CUDA_ARCH_LIST=9.0 for H100/H200 or "8.0;8.6" for A100 and '
            'RTX 30xx (docs/get_started.md).')
    return ';'.join(f'{major}.{minor}'
                    for major, minor in sorted(set(machine.gpu_archs)))


def compiler(machine):
    """``(cuda_home, nvcc_packages)``: the nvcc found or wheels to install."""
    major = int(machine.torch_cuda.split('.')[0])
    if machine.nvcc_release is not None and machine.nvcc_release[0] == major:
        return machine.nvcc_home, ()
    if machine.torch_cuda not in NVCC_WHEELS:
        found = ('no nvcc' if machine.nvcc_release is None else
                 'nvcc %d.%d' % tuple(machine.nvcc_release))
        raise PlanError(
            f'torch is built with CUDA {machine.torch_cuda} but {found} was '
            f'found, and the installer knows no CUDA compiler wheels for '
            f'{machine.torch_cuda} (it knows {", ".join(NVCC_WHEELS)}): '
            f'install the CUDA {major}.x toolkit and set CUDA_HOME to it, or '
            f'install with --cpu for CPU ops only.')
    cuda_home = os.path.join(machine.site_packages, 'nvidia', f'cu{major}')
    return cuda_home, NVCC_WHEELS[machine.torch_cuda]


def decide(machine, cuda_ops='auto'):
    """Plan the mmcv-full build.

    Args:
        machine (Machine): the probed machine.
        cuda_ops (str): 'yes' (``--cuda``), 'no' (``--cpu``) or 'auto':
            CUDA ops exactly when a GPU is visible.

    Returns:
        Plan: CPU ops, or CUDA ops with the compiler and architectures.

    Raises:
        PlanError: CUDA ops wanted but impossible (CPU torch, too old a GPU,
            no architecture to build for, no compiler for this CUDA).
    """
    if cuda_ops not in ('auto', 'yes', 'no'):
        raise PlanError(f'--cuda-ops must be auto, yes or no, not {cuda_ops!r}')
    torch_tag = 'torch' + machine.torch_version.replace('+', '_')
    if cuda_ops == 'no' or (cuda_ops == 'auto' and not machine.gpu_archs):
        return Plan(cuda_ops=False, flavour=f'{torch_tag}-cpuops')
    if machine.torch_cuda is None:
        raise PlanError(
            f'CUDA ops were asked for but torch {machine.torch_version} is a '
            'CPU-only build (torch.version.cuda is None): install a CUDA torch '
            'wheel first (e.g. the default PyPI torch on Linux).')
    check_archs(machine.gpu_archs, machine.torch_cuda, 'the GPU')
    arch_list = target_arch_list(machine)
    cuda_home, packages = compiler(machine)
    arch_tag = '_'.join(entry.replace('.', '').replace('+PTX', 'ptx')
                        for entry in arch_list.split(';'))
    return Plan(cuda_ops=True, flavour=f'{torch_tag}-cudaops-sm{arch_tag}',
                arch_list=arch_list, cuda_home=cuda_home,
                cuda_major=int(machine.torch_cuda.split('.')[0]),
                nvcc_packages=packages)


def nvcc_release(nvcc):
    """``(major, minor)`` from ``nvcc --version``, None if it does not run."""
    try:
        text = subprocess.run([nvcc, '--version'], capture_output=True,
                              text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+)\.(\d+)', text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_cuda_home():
    """A CUDA toolkit folder with ``bin/nvcc`` and its headers, or None.

    Tried in torch's order: $CUDA_HOME, $CUDA_PATH, the folder above the
    nvcc on PATH (symlinks resolved), /usr/local/cuda. A folder without
    ``include/cuda_runtime.h`` is skipped: a wrapper script such as
    /usr/local/bin/nvcc does not make /usr/local a toolkit.
    """
    nvcc_on_path = shutil.which('nvcc')
    candidates = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH'),
                  nvcc_on_path and os.path.dirname(os.path.dirname(
                      os.path.realpath(nvcc_on_path))),
                  '/usr/local/cuda']
    for home in filter(None, candidates):
        if (os.access(os.path.join(home, 'bin', 'nvcc'), os.X_OK)
                and os.path.isfile(
                    os.path.join(home, 'include', 'cuda_runtime.h'))):
            return home
    return None


def probe():
    """The :class:`Machine` this interpreter runs on."""
    import torch
    gpu_archs = []
    if torch.cuda.is_available():
        gpu_archs = [torch.cuda.get_device_capability(index)
                     for index in range(torch.cuda.device_count())]
    cuda_home = find_cuda_home()
    nvcc = cuda_home and os.path.join(cuda_home, 'bin', 'nvcc')
    return Machine(
        torch_version=torch.__version__, torch_cuda=torch.version.cuda,
        gpu_archs=gpu_archs, nvcc_release=nvcc and nvcc_release(nvcc),
        nvcc_home=cuda_home if nvcc else None,
        arch_list_env=os.environ.get('TORCH_CUDA_ARCH_LIST', ''),
        site_packages=sysconfig.get_paths()['purelib'])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cuda-ops', default='auto',
                        choices=('auto', 'yes', 'no'))
    args = parser.parse_args(argv)
    machine = probe()
    try:
        plan = decide(machine, args.cuda_ops)
    except PlanError as error:
        print(f'install.sh: {error}', file=sys.stderr)
        return 2
    if (args.cuda_ops == 'auto' and not machine.gpu_archs
            and shutil.which('nvidia-smi')):
        print(f'install.sh: nvidia-smi is here but torch '
              f'{machine.torch_version} sees no GPU: building CPU ops',
              file=sys.stderr)
    print(plan.shell())
    return 0


if __name__ == '__main__':
    sys.exit(main())
