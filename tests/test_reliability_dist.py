"""Loss normalisation across processes, as in the reference heads.

Each loss is divided by a target count (matched queries, visible keypoint
coordinates, ...) averaged over the processes with mmdet's ``reduce_mean``,
in both matching branches. DDP then averages the gradients, so two processes
with one image each must train exactly like one process with both images:
the mean over processes of every loss equals the loss of the whole batch.
Two gloo processes on the CPU check this for the tiny H-Deformable-DETR and
H-PETR, with images that hold different numbers of targets (one with none
or with invisible keypoints only).
"""
import os.path as osp

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmcv import Config

from conftest import REPO_ROOT, detection_inputs, pose_inputs

WORLD_SIZE = 2
SHAPES = [(96, 128)] * WORLD_SIZE  # same size: no padding differences
CONFIGS = {
    'detection': ('tiny_h_deformable_detr.py', detection_inputs,
                  dict(num_boxes=(3, 0))),
    'pose': ('tiny_h_petr.py', pose_inputs, dict(num_persons=(3, 1))),
}
# The heatmap loss is normalised by the local number of Gaussian peaks, as
# in the PETR reference (not averaged over processes).
LOCAL_LOSSES = ('loss_hm', )


def build_model(config_name):
    """The tiny model in training mode, identical in every process."""
    from opera.models import build_detector
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   config_name))
    model = build_detector(cfg.model)
    model.init_weights()
    return model.train()


def image_slice(inputs, index):
    """The inputs of image ``index`` alone, as a batch of one."""
    return {
        key: value[index:index + 1]
        for key, value in inputs.items()
    }


def loss_values(model, inputs):
    """{name: loss value} of one forward pass."""
    losses = model.forward_train(**inputs)
    return {
        name: float(sum(value) if isinstance(value, list) else value)
        for name, value in losses.items() if 'loss' in name
    }


def run_rank(rank, init_file, out_file):
    """Losses of the whole batch (before joining the group, so with local
    normalisers) and the process-averaged losses of this rank's image."""
    torch.set_num_threads(1)
    import opera  # noqa: F401  (registers modules)
    models = {task: build_model(cfg[0]) for task, cfg in CONFIGS.items()}
    batches = {
        task: make_inputs(SHAPES, seed=0, **kwargs)
        for task, (_, make_inputs, kwargs) in CONFIGS.items()
    }
    whole = {
        task: loss_values(models[task], batches[task])
        for task in CONFIGS
    }
    dist.init_process_group(
        'gloo',
        init_method=f'file://{init_file}',
        rank=rank,
        world_size=WORLD_SIZE)
    averaged = {}
    for task in CONFIGS:
        mine = loss_values(models[task], image_slice(batches[task], rank))
        values = torch.tensor(list(mine.values()), dtype=torch.float64)
        dist.all_reduce(values)
        averaged[task] = dict(zip(mine, (values / WORLD_SIZE).tolist()))
    if rank == 0:
        torch.save(dict(whole=whole, averaged=averaged), out_file)
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def losses(tmp_path_factory):
    folder = tmp_path_factory.mktemp('dist')
    out_file = str(folder / 'losses.pth')
    mp.start_processes(
        run_rank,
        args=(str(folder / 'init'), out_file),
        nprocs=WORLD_SIZE,
        start_method='spawn')
    return torch.load(out_file)


@pytest.mark.parametrize('task', sorted(CONFIGS))
def test_process_average_equals_whole_batch(losses, task):
    whole, averaged = losses['whole'][task], losses['averaged'][task]
    assert sorted(whole) == sorted(averaged)
    branches = {name.endswith('_one2many') for name in whole}
    assert branches == {True, False}, 'both matching branches are checked'
    checked = [name for name in whole if name not in LOCAL_LOSSES]
    assert len(checked) > 10
    for name in checked:
        assert averaged[name] == pytest.approx(whole[name], rel=1e-4), name
