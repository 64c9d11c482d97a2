"""Fine-tuning a checkpoint on other classes or keypoints: ``load_from``
with ``load_from_reinit`` patterns (docs/custom_datasets.md)."""
import json
import logging
import sys
from fnmatch import fnmatchcase

import numpy as np
import pytest
import torch

from conftest import (REPO_ROOT, data_path, run_in_repo,
                      subset_annotations, train_iterations)
from test_custom_datasets import DETECTION_IMAGES, five_keypoint_json

import opera  # noqa: F401
from mmcv_custom import load_checkpoint_checked
from opera.models import build_detector
from opera.utils import load_config

pytestmark = pytest.mark.usefixtures('single_thread')

CONFIGS = f'{REPO_ROOT}/tests/configs'
COCO_CONFIG = f'{CONFIGS}/tiny_h_deformable_detr.py'
THREE_CLASSES_CONFIG = f'{CONFIGS}/tiny_detr_3_classes_finetune.py'
POSE_17_CONFIG = f'{CONFIGS}/tiny_petr_sample.py'
POSE_5_CONFIG = f'{CONFIGS}/tiny_petr_5_keypoints_finetune.py'
CLASS_BRANCHES = load_config(THREE_CLASSES_CONFIG).load_from_reinit
KEYPOINT_BRANCHES = load_config(POSE_5_CONFIG).load_from_reinit


def saved_model(config, path, seed=0):
    """Build ``config``'s model with seed ``seed``, save it at ``path``;
    return its state dict."""
    torch.manual_seed(seed)
    model = build_detector(load_config(config).model)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)
    return model.state_dict()


def fresh_model(config, seed=1):
    """A newly initialised model of ``config`` and a copy of its state."""
    torch.manual_seed(seed)
    model = build_detector(load_config(config).model)
    model.init_weights()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope='module')
def coco_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('coco80') / 'coco80.pth'
    return str(path), saved_model(COCO_CONFIG, path)


def check_loaded(model, initial, checkpoint_state, reinit_keys):
    """Re-initialised keys keep ``initial``; all others are the file's."""
    for key, value in model.state_dict().items():
        expected = initial[key] if key in reinit_keys else \
            checkpoint_state[key]
        assert torch.equal(value, expected), key


def test_named_entries_are_reinitialised_and_logged(coco_checkpoint, caplog):
    path, coco_state = coco_checkpoint
    model, initial = fresh_model(THREE_CLASSES_CONFIG)
    logger = logging.getLogger('finetune_test')
    with caplog.at_level(logging.INFO, logger='finetune_test'):
        load_checkpoint_checked(
            model, path, logger=logger, reinit=CLASS_BRANCHES)
    reinit_keys = {k for k in initial if k.startswith('bbox_head.cls_br')}
    # 2 decoder layers + the two-stage encoder's branch, weight and bias.
    assert len(reinit_keys) == 6
    check_loaded(model, initial, coco_state, reinit_keys)
    weight = 'bbox_head.cls_branches.0.weight'
    assert coco_state[weight].shape[0] == 80 and initial[weight].shape[0] == 3
    assert '6 entries re-initialised' in caplog.text
    for key in reinit_keys:
        assert (f'{key}: checkpoint {tuple(coco_state[key].shape)}, model '
                f'{tuple(initial[key].shape)}') in caplog.text


def test_other_mismatches_still_stop(coco_checkpoint):
    path, _ = coco_checkpoint
    model, _ = fresh_model(THREE_CLASSES_CONFIG)
    with pytest.raises(ValueError) as error:
        load_checkpoint_checked(
            model, path, reinit=['bbox_head.reg_branches.*'])
    assert 'bbox_head.cls_branches.0.weight: checkpoint (80,' in str(
        error.value)
    with pytest.raises(ValueError, match="pattern 'bbox_head.cls_branch' "
                       r'\(load_from_reinit\) matches no parameter'):
        load_checkpoint_checked(model, path, reinit=['bbox_head.cls_branch'])


def test_detection_80_to_3_classes_trains(coco_checkpoint, tmp_path):
    path, _ = coco_checkpoint
    root = data_path('coco_mini')
    ann_file = subset_annotations(
        f'{root}/annotations/instances_train2017.json', DETECTION_IMAGES,
        tmp_path / 'ann.json')
    options = [
        f'data.train.ann_file={ann_file}',
        f'data.train.img_prefix={root}/train2017/', f'load_from={path}',
        'runner.max_epochs=1'
    ]
    work_dir = tmp_path / 'work'
    result = run_in_repo([
        sys.executable, 'tools/train.py', THREE_CLASSES_CONFIG, '--work-dir',
        str(work_dir), '--no-validate', '--seed', '0', '--cfg-options',
        *options
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    (log_file, ) = work_dir.glob('*.log')
    log = log_file.read_text()
    assert '6 entries re-initialised, not loaded (load_from_reinit)' in log
    assert 'bbox_head.cls_branches.2.bias: checkpoint (80,), model (3,)' \
        in log
    (json_log, ) = work_dir.glob('*.log.json')
    losses = [
        json.loads(line)['loss'] for line in json_log.read_text().split('\n')
        if '"loss"' in line
    ]
    assert len(losses) == 2 and np.isfinite(losses).all()
    trained = torch.load(work_dir / 'epoch_1.pth')['state_dict']
    assert trained['bbox_head.cls_branches.0.weight'].shape[0] == 3


def test_pose_17_to_5_keypoints_trains(tmp_path):
    path = tmp_path / 'coco17.pth'
    coco_state = saved_model(POSE_17_CONFIG, path)
    five_keypoint_json(tmp_path / 'limbs5.json')
    cfg = load_config(
        POSE_5_CONFIG, {
            'data.train.ann_file': str(tmp_path / 'limbs5.json'),
            'data.train.img_prefix': data_path('coco_mini') + '/train2017/'
        })
    model, initial = fresh_model(POSE_5_CONFIG)
    load_checkpoint_checked(model, str(path), reinit=KEYPOINT_BRANCHES)
    differ = {
        k for k in initial if initial[k].shape != coco_state[k].shape
    }
    reinit_keys = {
        k for k in initial
        if any(fnmatchcase(k, p) for p in KEYPOINT_BRANCHES)
    }
    # Every entry whose shape depends on K is re-initialised.
    assert differ and differ <= reinit_keys
    check_loaded(model, initial, coco_state, reinit_keys)
    history = train_iterations(model, cfg, 2, ('cls', 'kpt', 'oks'))
    assert len(history) == 2
    assert all(np.isfinite(step['one2one']) for step in history)
