"""Every config under configs/ parses; each distinct model among them
builds and runs a training and a test forward pass."""
import glob
import os.path as osp

import pytest
import torch
from mmcv import Config

from conftest import REPO_ROOT, detection_inputs, pose_inputs

import opera  # noqa: F401  (registers modules)
from opera.models import build_detector

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def config_id(path):
    return osp.relpath(path, osp.join(REPO_ROOT, 'configs'))


def distinct_models(paths):
    """{first path: [paths]} of the configs that build the same model (a
    schedule, a dataset or a test-time variant of another config)."""
    groups = {}
    for path in paths:
        groups.setdefault(repr(Config.fromfile(path).model), []).append(path)
    return {same[0]: same for same in groups.values()}


MODELS = distinct_models(CONFIGS)


def test_too_small_input_names_the_problem():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'hdetr',
                                   'deformable_detr_r50_two_stage_12ep.py'))
    cfg.model.backbone.init_cfg = None
    model = build_detector(cfg.model).eval()
    inputs = detection_inputs([(96, 128)])
    with pytest.raises(ValueError, match='300 two-stage queries'):
        model.simple_test(inputs['img'], inputs['img_metas'])


def test_misspelt_head_key_is_rejected_by_name():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'hdetr',
                                   'h_deformable_detr_r50_two_stage_12ep.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.bbox_head.num_querry = 300
    with pytest.raises(TypeError, match='num_querry'):
        build_detector(cfg.model)


def test_configs_found():
    assert any('hdetr' in p for p in CONFIGS)


def is_pose(cfg):
    # K follows from the head's keypoint layout (never written in configs).
    return cfg.model.type.split('.')[-1] == 'PETR'


def check_detections(bboxes, num_classes, max_per_img, nms=False):
    assert len(bboxes) == num_classes
    count = sum(len(b) for b in bboxes)
    # A (soft-)NMS may leave fewer (soft-NMS drops scores under 1e-3).
    assert 0 < count <= max_per_img if nms else count == max_per_img
    assert all(b.shape[1] == 5 for b in bboxes)


def test_every_config_is_in_a_model_group():
    assert sorted(p for same in MODELS.values() for p in same) == CONFIGS


@pytest.mark.parametrize('path', sorted(MODELS), ids=config_id)
def test_config_builds_and_runs(path):
    cfg = Config.fromfile(path)
    # No pretrained weights on test machines.
    cfg.model.backbone.init_cfg = None
    model = build_detector(cfg.model)
    model.init_weights()
    groups = model.bbox_head.query_groups
    groups.set_epoch(0)  # (the schedule hook's job in training)
    # 2765 encoder positions: enough for up to 900 + 1500 two-stage
    # queries; 3570 for Group DETR's 11 x 300.
    shapes = [(320, 416), (288, 416)]
    if groups.num_query_total > 2765:
        shapes = [(384, 448), (352, 448)]
    if is_pose(cfg):
        num_keypoints = model.bbox_head.num_keypoints
        inputs = pose_inputs(shapes, num_keypoints=num_keypoints)
    else:
        inputs = detection_inputs(shapes, num_boxes=(3, 0))

    model.train()
    losses = model.forward_train(**inputs)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()

    model.eval()
    with torch.no_grad():
        results = model.simple_test(
            inputs['img'], inputs['img_metas'], rescale=True)
    assert len(results) == 2
    num_classes = cfg.model.bbox_head.num_classes
    max_per_img = cfg.model.test_cfg.max_per_img
    if is_pose(cfg):
        bboxes, keypoints = results[0]
        check_detections(bboxes, num_classes, max_per_img)
        assert keypoints[0].shape == (max_per_img, num_keypoints, 3)
    else:
        check_detections(results[0], num_classes, max_per_img,
                         nms='nms' in cfg.model.test_cfg)
