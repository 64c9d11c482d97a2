"""Keypoint layouts: one definition of each dataset's keypoints, read by the
datasets, the OKS loss and cost, the PETR head and the drawing helpers."""
import glob
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmcv import Config
from pycocotools.cocoeval import Params

from conftest import REPO_ROOT

import opera  # noqa: F401
from opera.core.bbox import build_match_cost
from opera.core.keypoint import (COCO, CROWDPOSE, KeypointLayout,
                                 get_keypoint_layout, layouts,
                                 register_keypoint_layout, resolve_sigmas)
from opera.core.visualization import skeleton_of
from opera.datasets import CocoPoseDataset, CrowdPoseDataset
from opera.models import LOSSES, build_detector

# CrowdPose's sigmas, as xtcocotools' keypoints_crowd evaluation uses them.
CROWDPOSE_SIGMAS = np.array(
    [.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79,
     .79]) / 10
THREE = dict(
    name='three',
    keypoint_names=['top', 'left_arm', 'right_arm'],
    sigmas=[0.1, 0.2, 0.2],
    flip_pairs=[[1, 2]],
    skeleton=[[0, 1], [0, 2]])


@pytest.fixture
def private_registry(monkeypatch):
    """Layouts registered by a test vanish after it."""
    monkeypatch.setattr(layouts, '_LAYOUTS', dict(layouts._LAYOUTS))


def test_coco_layout_equals_the_coco_api():
    assert COCO.num_keypoints == 17
    np.testing.assert_allclose(COCO.sigmas,
                               Params(iouType='keypoints').kpt_oks_sigmas)
    assert COCO.flip_pairs == tuple((i, i + 1) for i in range(1, 17, 2))
    for left, right in COCO.flip_pairs:
        assert COCO.keypoint_names[left] == 'left_' + COCO.keypoint_names[
            right][len('right_'):]
    assert COCO.flip_index()[:5] == [0, 2, 1, 4, 3]


def test_crowdpose_layout_equals_the_crowdpose_metric():
    assert CROWDPOSE.num_keypoints == 14
    np.testing.assert_allclose(CROWDPOSE.sigmas, CROWDPOSE_SIGMAS)
    assert CROWDPOSE.keypoint_names[12:] == ('top_head', 'neck')
    assert CROWDPOSE.flip_pairs == tuple((i, i + 1) for i in range(0, 12, 2))


def test_coco_sigmas_are_written_in_one_file_of_opera():
    # The nose and eye sigmas of COCO, in any float spelling.
    pattern = re.compile(r'0?\.026\b[\s\S]{0,40}0?\.025\b')
    files = [
        osp.relpath(path, REPO_ROOT)
        for path in glob.glob(osp.join(REPO_ROOT, 'opera', '**', '*.py'),
                              recursive=True)
        if pattern.search(open(path).read())
    ]
    assert files == ['opera/core/keypoint/layouts.py']


def test_datasets_losses_costs_and_skeletons_read_the_layouts():
    # The datasets keep no copies: their sigmas, flip pairs and skeleton
    # are read from KEYPOINT_LAYOUT (or the layout given to them).
    assert CocoPoseDataset.KEYPOINT_LAYOUT is COCO
    assert CrowdPoseDataset.KEYPOINT_LAYOUT is CROWDPOSE
    assert skeleton_of(14) == [list(p) for p in CROWDPOSE.skeleton]
    by_layout = LOSSES.build(
        dict(type='opera.OKSLoss', num_keypoints=14,
             keypoint_layout='crowdpose'))
    by_count = LOSSES.build(dict(type='opera.OKSLoss', num_keypoints=14))
    assert by_layout.sigmas == by_count.sigmas == CROWDPOSE.sigmas
    cost = build_match_cost(
        dict(type='opera.OksCost', num_keypoints=3, keypoint_layout=THREE))
    assert cost.sigmas == (0.1, 0.2, 0.2)
    with pytest.raises(ValueError, match="'crowdpose' has 14 keypoints"):
        resolve_sigmas(17, keypoint_layout='crowdpose')


def test_layout_from_a_dict_and_its_errors_name_the_field():
    layout = get_keypoint_layout(THREE)
    assert isinstance(layout, KeypointLayout)
    assert layout.num_keypoints == 3 and layout.flip_index() == [0, 2, 1]
    assert get_keypoint_layout(layout.to_dict()) == layout
    bad = [
        (dict(THREE, sigmas=[0.1, 0.2]), '2 sigmas for 3 keypoint_names'),
        (dict(THREE, flip_pairs=[[1, 3]]), 'flip_pairs entry \\[1, 3\\]'),
        (dict(THREE, skeleton=[[0, 5]]), 'skeleton entry \\[0, 5\\]'),
        (dict(THREE, flip_pairs=[[1, 2], [2, 0]]), 'a keypoint is in two'),
        (dict(THREE, sigmas=[0.1, 0., 0.2]), 'sigmas must be positive'),
        (dict(THREE, keypoint_names=['a', 'a', 'b']), 'keypoint_names are not'),
    ]
    for spec, message in bad:
        with pytest.raises(ValueError, match="layout 'three': " + message):
            get_keypoint_layout(spec)
    with pytest.raises(KeyError, match="unknown keypoint layout 'coco18'"):
        get_keypoint_layout('coco18')
    with pytest.raises(KeyError, match="misses \\['skeleton'\\]"):
        get_keypoint_layout(
            {k: v
             for k, v in THREE.items() if k != 'skeleton'})


def test_registered_layout_is_found_by_name_and_k(private_registry):
    layout = register_keypoint_layout(THREE)
    assert get_keypoint_layout('three') is layout
    assert skeleton_of(3) == [[0, 1], [0, 2]]
    assert resolve_sigmas(3) == (0.1, 0.2, 0.2)
    register_keypoint_layout(THREE)  # the same again is fine
    with pytest.raises(KeyError, match="different keypoint layout 'three'"):
        register_keypoint_layout(dict(THREE, sigmas=[0.3, 0.2, 0.2]))


def test_a_layout_may_not_take_a_registered_name_with_other_facts():
    """Two layouts named 'coco' could pass for one in messages while their
    sigmas differ; a layout equal to the registered one is that one."""
    with pytest.raises(ValueError,
                       match="layout 'coco' differs from the registered "
                       "layout 'coco' in sigmas, skeleton: give"):
        get_keypoint_layout(
            dict(COCO.to_dict(), sigmas=[0.05] * 17, skeleton=[[0, 1]]))
    with pytest.raises(ValueError, match='in flip_pairs: give'):
        get_keypoint_layout(
            KeypointLayout(**dict(CROWDPOSE.to_dict(), flip_pairs=[])))
    assert get_keypoint_layout(COCO.to_dict()) == COCO
    assert get_keypoint_layout(dict(COCO.to_dict(), name='coco2')).sigmas == (
        COCO.sigmas)


def petr_config(name):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'petr', name))
    cfg.model.backbone.init_cfg = None
    return cfg


def test_crowdpose_config_names_the_layout_once():
    path = osp.join(REPO_ROOT, 'configs', 'petr',
                    'petr_r50_16x2_100e_crowdpose.py')
    text = open(path).read()
    assert 'num_keypoints' not in text and '14' not in text
    cfg = petr_config('petr_r50_16x2_100e_crowdpose.py')
    assert cfg.model.bbox_head.keypoint_layout == 'crowdpose'
    dataset_types = {d.type for d in cfg.data.train.datasets}
    assert dataset_types | {cfg.data.test.type} == {'opera.CrowdPoseDataset'}
    assert CrowdPoseDataset.KEYPOINT_LAYOUT is CROWDPOSE


def test_head_fills_k_and_sigmas_from_its_layout():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   'tiny_petr.py'))
    cfg.model.bbox_head.keypoint_layout = THREE
    head = build_detector(cfg.model).bbox_head
    assert head.num_keypoints == 3
    assert head.kpt_branches[0][-1].out_features == 6
    assert head.fc_hm.out_features == 3
    assert head.transformer.refine_query_embedding.num_embeddings == 3
    attention = head.transformer.decoder.layers[0].attentions[1]
    assert attention.num_points == 3
    criterion = head.criterion
    assert criterion.loss_oks.sigmas == criterion.loss_oks_refine.sigmas == (
        0.1, 0.2, 0.2)
    assert head.criterion.assigner.oks_cost.sigmas == (0.1, 0.2, 0.2)
    # The config given is left as it was.
    assert 'num_keypoints' not in cfg.model.bbox_head.transformer


def test_head_refuses_a_k_that_contradicts_its_layout():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   'tiny_petr.py'))
    cfg.model.bbox_head.keypoint_layout = 'crowdpose'
    cfg.model.bbox_head.criterion.loss_oks.num_keypoints = 17
    with pytest.raises(ValueError, match='loss_oks.num_keypoints is 17'):
        build_detector(cfg.model)
    cfg.model.bbox_head.criterion.loss_oks.pop('num_keypoints')
    cfg.model.bbox_head.num_keypoints = 17
    with pytest.raises(ValueError, match="layout 'crowdpose' has 14"):
        build_detector(cfg.model)


def test_oks_of_the_layout_sigmas_in_the_cost():
    cost = build_match_cost(
        dict(type='opera.OksCost', num_keypoints=3, keypoint_layout=THREE))
    gt = torch.tensor([[[10., 10., 2], [20., 20., 2], [0., 0., 0]]])
    pred = gt[..., :2].clone()
    pred[0, 1, 0] += 8.  # left_arm: sigma .2, (2 sigma)^2 = .16
    # e = 64 / (2 * 1000 * .16) = .2 -> OKS = (1 + exp(-.2)) / 2
    result = cost(pred.reshape(1, -1), gt, torch.tensor([1000.]))
    assert result.item() == pytest.approx(-(1 + np.exp(-0.2)) / 2, abs=1e-6)


def test_training_refuses_a_dataset_of_another_layout():
    """A COCO-keypoint model on a CrowdPose-layout dataset stops before
    training, naming both layouts (train_model checks every dataset)."""
    from types import SimpleNamespace

    from opera.apis.train import check_keypoint_layout
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   'tiny_petr.py'))
    model = build_detector(cfg.model)
    crowd = SimpleNamespace(keypoint_layout=CROWDPOSE, ann_file='crowd.json')
    with pytest.raises(ValueError,
                       match="layout 'crowdpose' .*'coco'.*num_keypoints"):
        check_keypoint_layout(model, crowd, 'training')
    coco = SimpleNamespace(keypoint_layout=COCO, ann_file='coco.json')
    check_keypoint_layout(model, coco, 'training')  # same layout: fine
    check_keypoint_layout(model, SimpleNamespace(), 'training')  # boxes
