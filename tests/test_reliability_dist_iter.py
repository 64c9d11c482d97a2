"""Distributed training with an iteration-based runner on CPUs.

mmdet's samplers for ``IterBasedRunner`` share their seed through a CUDA
tensor, so distributed training on a machine without GPUs (``bash
tools/dist_train.sh`` with an iteration-based config) used to stop with
"Found no NVIDIA driver"; ``opera.apis.train_model`` gives them the process
group's device. Two gloo processes train the tiny H-Deformable-DETR for a
few iterations on the bundled sample, one image each per iteration.
"""
import json
import os.path as osp

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmcv import Config

from conftest import REPO_ROOT

WORLD_SIZE = 2
ITERS = 3
CONFIG = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_deformable_detr.py')
SAMPLE = osp.join(REPO_ROOT, 'demo', 'data', 'coco_sample')


def iteration_cfg(work_dir):
    """The tiny config on the sample with mmcv's IterBasedRunner."""
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({
        'data.train.ann_file': f'{SAMPLE}/annotations/instances_sample.json',
        'data.train.img_prefix': f'{SAMPLE}/images/',
        'data.samples_per_gpu': 1,
        # What --cfg-options runner.type=IterBasedRunner runner.max_iters=3
        # runner.max_epochs=None does to the epoch-based schedule.
        'runner.type': 'IterBasedRunner',
        'runner.max_iters': ITERS,
        'runner.max_epochs': None,
        'checkpoint_config.interval': ITERS,
        'work_dir': work_dir,
        'seed': 0,
    })
    return cfg


def run_rank(rank, work_dir):
    """Join a 2-process gloo group and train as tools/train.py does."""
    torch.set_num_threads(1)
    from mmdet.datasets import build_dataset

    from opera.apis import train_model
    from opera.models import build_detector
    from opera.utils import get_root_logger
    dist.init_process_group(
        'gloo',
        init_method=f'file://{osp.join(work_dir, "init")}',
        rank=rank,
        world_size=WORLD_SIZE)
    cfg = iteration_cfg(work_dir)
    get_root_logger(log_file=osp.join(work_dir, f'rank{rank}.log'))
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    train_model(
        model, [build_dataset(cfg.data.train)],
        cfg,
        distributed=True,
        validate=False,
        timestamp='run')
    dist.destroy_process_group()


def test_two_cpu_processes_train_with_an_iteration_runner(tmp_path):
    mp.start_processes(
        run_rank,
        args=(str(tmp_path), ),
        nprocs=WORLD_SIZE,
        start_method='spawn')
    assert (tmp_path / f'iter_{ITERS}.pth').is_file()
    records = [
        json.loads(line)
        for line in (tmp_path / 'run.log.json').read_text().splitlines()
    ]
    trained = [r['iter'] for r in records if r.get('mode') == 'train']
    assert trained == list(range(1, ITERS + 1))
