"""``--auto-scale-lr`` scales each recipe's lr from the total batch that lr
was set for, stated by the recipe itself (``auto_scale_lr.base_batch_size``).
"""
import argparse
import glob
import logging
import os.path as osp
import re

import pytest
from mmcv import Config
from mmdet.apis.train import auto_scale_lr
from mmdet.utils import compat_cfg

from conftest import REPO_ROOT, load_tool

from opera.apis.config_checks import ConfigError

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)
# GPUs x images per GPU of the published recipes without it in their name:
# H-Deformable-DETR and its baselines, DINO and Co-DETR, 8 x 2 (a batch
# of 16 in the public HDETR/H-Deformable-DETR, IDEA-Research/DINO and
# Sense-X/Co-DETR recipes); DINO-5scale 8 x 1 (its
# DINO_5scale.py: batch_size = 1); the CPU quick starts, one process x 2.
STATED_ELSEWHERE = {
    'hdetr': (8, 2),
    'dino': (8, 2),
    'co_detr': (8, 2),
    'quickstart': (1, 2)
}
STATED_FOR_FILE = {'dino_r50_5scale_12ep.py': (8, 1)}
LOGGER = logging.getLogger(__name__)


def recipe_batch(path):
    """(GPUs, images per GPU) the recipe names: ``..._16x2_...`` in the
    file name, else by its folder."""
    match = re.search(r'_(\d+)x(\d+)_', osp.basename(path))
    if match:
        return int(match.group(1)), int(match.group(2))
    if osp.basename(path) in STATED_FOR_FILE:
        return STATED_FOR_FILE[osp.basename(path)]
    return STATED_ELSEWHERE[osp.basename(osp.dirname(path))]


def scaled_lr(cfg, num_gpus):
    """The lr mmdet's ``auto_scale_lr`` gives on ``num_gpus`` processes."""
    cfg = compat_cfg(cfg)
    cfg.auto_scale_lr.enable = True
    cfg.gpu_ids = list(range(num_gpus))
    auto_scale_lr(cfg, distributed=False, logger=LOGGER)
    return cfg.optimizer.lr


@pytest.mark.parametrize(
    'path', CONFIGS, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_each_recipe_scales_from_its_own_batch(path):
    gpus, per_gpu = recipe_batch(path)
    cfg = Config.fromfile(path)
    assert cfg.data.samples_per_gpu == per_gpu
    assert cfg.auto_scale_lr.base_batch_size == gpus * per_gpu
    lr = cfg.optimizer.lr
    # The recipe's own batch keeps its lr; half the GPUs halve it.
    assert scaled_lr(Config.fromfile(path), gpus) == lr
    if gpus % 2 == 0:
        assert scaled_lr(Config.fromfile(path), gpus // 2) == lr / 2


def test_config_without_a_base_batch_is_refused(tmp_path):
    # A recipe that does not state its batch inherits none from
    # default_runtime.py, and --auto-scale-lr then stops naming it.
    path = tmp_path / 'no_base_batch.py'
    path.write_text("_base_ = ['%s']\n" % osp.join(
        REPO_ROOT, 'configs', '_base_', 'default_runtime.py'))
    cfg = Config.fromfile(str(path))
    args = argparse.Namespace(
        config=str(path), work_dir=str(tmp_path), resume_from=None,
        auto_resume=False, auto_scale_lr=True)
    with pytest.raises(ConfigError, match=re.escape(
            f'{path}: --auto-scale-lr needs auto_scale_lr.base_batch_size')):
        load_tool('tools/train.py').apply_args(cfg, args)
