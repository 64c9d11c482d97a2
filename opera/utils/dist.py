"""Process-group set-up for torchrun and slurm that also works without GPUs.

mmcv's ``init_dist`` always selects a CUDA device, so it fails on CPU-only
machines; here CPU runs fall back to the gloo backend instead. For the same
reason mmdet's samplers for iteration-based runners need
:func:`seed_sync_on_backend_device`.
"""
import contextlib
import functools
import logging
import os
import subprocess

import torch
import torch.distributed as dist
from mmdet.datasets.samplers import infinite_sampler

from .logger import LOGGER_NAME

DEFAULT_PORT = 29500


def get_device():
    """Return 'cuda' when a GPU is usable, else 'cpu'."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def init_dist(launcher, backend=None, port=None, **kwargs):
    """Join the process group started by ``launcher``.

    Args:
        launcher (str): 'pytorch' (torchrun environment variables) or
            'slurm' (srun environment variables).
        backend (str, optional): Requested backend. With CUDA it defaults to
            'nccl'; without CUDA 'gloo' is always used.
        port (int, optional): Master port for slurm; defaults to the env
            variable PORT, then MASTER_PORT, then 29500.
        **kwargs: Passed on to ``torch.distributed.init_process_group``.
    """
    if launcher == 'pytorch':
        rank = int(os.environ['RANK'])
        local_rank = int(os.environ.get('LOCAL_RANK', rank))
    elif launcher == 'slurm':
        rank, local_rank = _export_slurm_env(port)
    else:
        raise ValueError(f'Unknown launcher {launcher!r}; '
                         "expected 'pytorch' or 'slurm'.")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=_choose_backend(backend), **kwargs)


def backend_device():
    """The device of the tensors this process group exchanges: 'cuda' for
    nccl, 'cpu' otherwise (gloo)."""
    if dist.is_available() and dist.is_initialized() and (
            dist.get_backend() == 'nccl'):
        return 'cuda'
    return 'cpu'


@contextlib.contextmanager
def seed_sync_on_backend_device():
    """Let mmdet's infinite samplers share their seed on this process
    group's device.

    Their constructors call mmdet's ``sync_random_seed`` with its default
    device, 'cuda', which fails with "Found no NVIDIA driver" in CPU
    (gloo) processes. Inside this context they get the function with the
    backend's device; outside, mmdet is unchanged.
    """
    mmdet_sync = infinite_sampler.sync_random_seed
    infinite_sampler.sync_random_seed = functools.partial(
        mmdet_sync, device=backend_device())
    try:
        yield
    finally:
        infinite_sampler.sync_random_seed = mmdet_sync


def _choose_backend(requested):
    """Return the backend to use on this machine."""
    if torch.cuda.is_available():
        return requested or 'nccl'
    if requested not in (None, 'gloo'):
        logging.getLogger(LOGGER_NAME).warning(
            'The config asks for the %r backend but CUDA is not available; '
            'using gloo.', requested)
    return 'gloo'


def _export_slurm_env(port):
    """Turn slurm's variables into the env:// ones; return (rank, local)."""
    rank = int(os.environ['SLURM_PROCID'])
    world_size = int(os.environ['SLURM_NTASKS'])
    local_rank = int(
        os.environ.get('SLURM_LOCALID',
                       rank % max(torch.cuda.device_count(), 1)))
    if port is None:
        port = os.environ.get('PORT',
                              os.environ.get('MASTER_PORT', DEFAULT_PORT))
    os.environ['MASTER_PORT'] = str(port)
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = _first_slurm_host()
    os.environ['WORLD_SIZE'] = str(world_size)
    os.environ['RANK'] = str(rank)
    os.environ['LOCAL_RANK'] = str(local_rank)
    return rank, local_rank


def _first_slurm_host():
    """Return the first host name of the job's node list."""
    node_list = os.environ['SLURM_NODELIST']
    hosts = subprocess.run(['scontrol', 'show', 'hostname', node_list],
                           check=True,
                           capture_output=True,
                           text=True)
    return hosts.stdout.split()[0]
