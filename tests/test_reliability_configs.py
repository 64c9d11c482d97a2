"""A misspelt key or an unknown type in a config fails, naming it.

Building the model, the runner, a hook or a dataset from a config is where
the names are checked; these cases complement tests/test_configs.py (a head
key) and tests/test_tools.py (the same through tools/train.py).
"""
import os.path as osp

import pytest
import torch
from mmcv import Config
from mmcv.runner import build_runner
from mmcv.runner.hooks import HOOKS
from mmdet.datasets import build_dataset

from conftest import REPO_ROOT

import mmcv_custom  # noqa: F401  (registers the runner and hooks)
import opera  # noqa: F401  (registers modules)
from opera.models import build_detector

TINY = {
    'detection': 'tiny_h_deformable_detr.py',
    'pose': 'tiny_h_petr.py',
}


def tiny_model_cfg(task, override):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs', TINY[task]))
    cfg.merge_from_dict(override, allow_list_keys=True)
    return cfg.model


@pytest.mark.parametrize('task, override, name', [
    ('detection', {'model.bakbone': dict(type='ResNet')}, 'bakbone'),
    ('detection', {'model.backbone.deptth': 18}, 'deptth'),
    ('detection', {'model.neck.in_channel': 3}, 'in_channel'),
    ('detection', {'model.bbox_head.loss_cls.gama': 2.}, 'gama'),
    ('detection', {'model.bbox_head.transformer.encoder.num_layer': 2},
     'num_layer'),
    ('detection', {'model.train_cfg.assigner.cls_cst': {}}, 'cls_cst'),
    ('pose', {'model.bbox_head.num_keypoint': 17}, 'num_keypoint'),
    ('pose', {'model.bbox_head.criterion.loss_oks.lose_weight': 2.},
     'lose_weight'),
    ('pose', {'model.train_cfg.assigner.kpt_cst': {}}, 'kpt_cst'),
    ('pose', {
        'model.bbox_head.transformer.decoder.transformerlayers.attn_cfgs':
        {'1': dict(num_pointz=17)}
    }, 'num_pointz'),
])
def test_misspelt_model_key_is_named(task, override, name):
    with pytest.raises(TypeError) as error:
        build_detector(tiny_model_cfg(task, override))
    assert f"unexpected keyword argument '{name}'" in str(error.value)


@pytest.mark.parametrize('task', ['detection', 'pose'])
@pytest.mark.parametrize('override, name', [
    ({'model.test_cfg.max_per_image': 10}, 'test_cfg has unknown key'),
    ({'model.train_cfg.asigner': {}}, 'train_cfg has unknown key'),
])
def test_misspelt_train_or_test_cfg_key_is_named(task, override, name):
    with pytest.raises(TypeError) as error:
        build_detector(tiny_model_cfg(task, override))
    misspelt = next(iter(override)).split('.')[-1]
    assert f'{name}(s) {misspelt}' in str(error.value)


@pytest.mark.parametrize('task, override, name', [
    ('detection', {'model.type': 'DeformableDETRR'}, 'DeformableDETRR'),
    ('detection', {'model.backbone.type': 'ResNetX'}, 'ResNetX'),
    ('detection', {'model.bbox_head.transformer.type': 'NoSuchTransformer'},
     'NoSuchTransformer'),
    ('pose', {'model.bbox_head.criterion.loss_kpt.type': 'mmdet.L1Los'},
     'L1Los'),
    ('pose', {'model.bbox_head.type': 'opera.PETRHaed'}, 'PETRHaed'),
])
def test_unknown_model_type_is_named(task, override, name):
    with pytest.raises(KeyError, match=f'{name} is not in the'):
        build_detector(tiny_model_cfg(task, override))


def test_unknown_runner_type_is_named(tmp_path):
    model = torch.nn.Linear(1, 1)
    with pytest.raises(KeyError, match='ResumableEpochRunner is not in the '
                       'runner registry'):
        build_runner(
            dict(type='opera.ResumableEpochRunner', max_epochs=1),
            dict(model=model, work_dir=str(tmp_path)))


def test_unknown_hook_type_is_named():
    # What runner.register_custom_hooks does with each custom_hooks entry.
    with pytest.raises(KeyError, match='NonFiniteLosHook is not in the hook '
                       'registry'):
        HOOKS.build(dict(type='opera.NonFiniteLosHook'))


def test_unknown_dataset_argument_is_named():
    with pytest.raises(TypeError, match="unexpected keyword argument "
                       "'ann_fille'"):
        build_dataset(dict(type='opera.CocoDataset', ann_fille='x.json',
                           pipeline=[]))
