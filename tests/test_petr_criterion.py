"""opera.PETRCriterion on its own: built from the base config, fed
hand-made predictions (no head, no transformer), checked by hand; and the
errors of a head or criterion config that leaves out part of the recipe."""
import os.path as osp

import pytest
import torch
from mmcv import Config

from conftest import REPO_ROOT

import opera  # noqa: F401  (registers modules)
from opera.core.keypoint import get_keypoint_layout
from opera.models import build_detector, build_model
from opera.models.query_groups import HybridQueryGroups

PETR_BASE = osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'petr_r50.py')
COCO = get_keypoint_layout('coco')
K = COCO.num_keypoints
IMG_H, IMG_W = 80, 100
META = dict(img_shape=(IMG_H, IMG_W, 3))
# Person 0 is labelled at keypoints 0-9 only, person 1 at all 17.
VISIBLE = [10, 17]
ONE2ONE, ONE2MANY, K_ONE2MANY, LAYERS = 3, 4, 2, 2


def criterion_cfg(with_assigner=True):
    """The base config's criterion with what a head fills in, for COCO."""
    cfg = Config.fromfile(PETR_BASE)
    criterion = cfg.model.bbox_head.criterion
    sigmas = list(COCO.sigmas)
    criterion.update(
        num_classes=1,
        num_keypoints=K,
        loss_oks=dict(criterion.loss_oks, num_keypoints=K, sigmas=sigmas),
        loss_oks_refine=dict(
            criterion.loss_oks_refine, num_keypoints=K, sigmas=sigmas))
    if with_assigner:
        assigner = cfg.model.train_cfg.assigner
        assigner.oks_cost.update(num_keypoints=K, sigmas=sigmas)
        criterion.assigner = assigner
    return criterion


def pose_targets(gt_bboxes, gt_labels, gt_keypoints, gt_areas):
    """The criterion's ``targets``: the per-image lists by name."""
    return dict(gt_bboxes=gt_bboxes, gt_labels=gt_labels,
                gt_keypoints=gt_keypoints, gt_areas=gt_areas)


def persons():
    """Two persons of one image: keypoints [2, K, 3] in pixels, normalised
    (x, y) [2, 2K], boxes [2, 4] and areas [2]."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[25., 20.], [70., 55.]])
    xy = centres[:, None] + torch.rand(2, K, 2, generator=gen) * 16 - 8
    visible = torch.zeros(2, K, 1)
    for person, count in enumerate(VISIBLE):
        visible[person, :count] = 2
    keypoints = torch.cat([xy, visible], -1)
    boxes = torch.cat([xy.amin(1), xy.amax(1)], -1)
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    normalised = (xy / torch.tensor([IMG_W, IMG_H])).flatten(1)
    return keypoints, normalised, boxes, areas


def hand_made_outputs(normalised, offsets):
    """Poses of every query at both layers: query q is ``normalised`` of
    person ``offsets[q][0]`` plus ``offsets[q][1]``; class logits 0, so
    the match follows the poses. The proposals are the one-to-one
    queries' poses and scores at layer 0."""
    poses = torch.stack([normalised[p] + e for p, e in offsets])
    poses = poses[None, None].repeat(LAYERS, 1, 1, 1)  # [L, 1, Q, 2K]
    cls_scores = torch.zeros(LAYERS, 1, poses.size(2), 1)
    stride = 8  # heatmap_target.stride of the base config
    hm_size = (IMG_H // stride, -(-IMG_W // stride))
    return dict(
        cls_scores=cls_scores,
        poses=poses,
        enc_cls=cls_scores[0, :, :ONE2ONE],
        enc_poses=poses[0, :, :ONE2ONE],
        hm_logits=torch.zeros(1, K, *hm_size),
        hm_padding=torch.zeros(1, *hm_size, dtype=torch.bool))


# (person, offset) of each query: one-to-one queries 0-2 (query 2 is far
# from both), one-to-many queries 3-6, two per person.
OFFSETS = [(1, 0.01), (0, 0.02), (0, 0.45), (0, 0.01), (0, 0.03), (1, 0.02),
           (1, 0.04)]


def test_criterion_of_the_base_config_matches_and_scores_by_hand():
    criterion = build_model(criterion_cfg())
    assert criterion.state_dict() == {}  # nothing in a checkpoint
    keypoints, normalised, boxes, areas = persons()
    groups = HybridQueryGroups.hybrid_branch(ONE2ONE, ONE2MANY, K_ONE2MANY,
                                             num_layers=LAYERS)
    outputs = hand_made_outputs(normalised, OFFSETS)
    losses, positives = criterion(
        outputs, pose_targets([boxes], [torch.zeros(2).long()], [keypoints],
                              [areas]), [META], groups)

    per_layer = ['loss_cls', 'loss_kpt', 'loss_oks']
    names = []
    for suffix in ('', '_one2many'):
        names += [f'd0.{name}{suffix}' for name in per_layer]
        names += [name + suffix for name in per_layer + ['num_matched']]
    names += ['enc_loss_cls', 'enc_loss_kpt', 'loss_hm']
    assert list(losses) == names
    assert losses['num_matched'] == 2
    assert losses['num_matched_one2many'] == 2 * K_ONE2MANY

    # The matched queries (ascending, per group): 0 -> person 1, 1 -> 0;
    # 3, 4 -> person 0; 5, 6 -> person 1.
    matched = [1, 0, 0, 0, 1, 1]
    targets = normalised[matched]
    torch.testing.assert_close(positives['targets'], targets)
    torch.testing.assert_close(
        positives['poses'],
        outputs['poses'][-1, 0, [0, 1, 3, 4, 5, 6]])
    assert positives['img_inds'].tolist() == [0] * 6
    torch.testing.assert_close(positives['areas'], areas[matched])
    assert positives['weights'].sum(-1).tolist() == [
        2 * VISIBLE[p] for p in matched
    ]

    # loss_kpt: 70 x L1 over the visible coordinates / their number.
    def kpt_loss(queries):
        offsets = [OFFSETS[q] for q in queries]
        total = sum(2 * VISIBLE[p] * e for p, e in offsets)
        return torch.tensor(70 * total / sum(2 * VISIBLE[p]
                                             for p, _ in offsets))

    for prefix in ('d0.', ''):
        torch.testing.assert_close(losses[prefix + 'loss_kpt'],
                                   kpt_loss([0, 1]))
        torch.testing.assert_close(losses[prefix + 'loss_kpt_one2many'],
                                   kpt_loss([3, 4, 5, 6]))
    # The proposals (class-agnostic, one-to-one) match as queries 0, 1.
    torch.testing.assert_close(losses['enc_loss_kpt'], kpt_loss([0, 1]))

    # Refine layer 0 off by 0.05 everywhere, layer 1 exact.
    refined = targets.view(-1, K, 2)[None].repeat(2, 1, 1, 1)
    refined[0] += 0.05
    refine = criterion.refine_losses(refined, positives, [META])
    assert list(refine) == [
        'd0.loss_kpt_refine', 'd0.loss_oks_refine', 'd1.loss_kpt_refine',
        'd1.loss_oks_refine'
    ]
    torch.testing.assert_close(refine['d0.loss_kpt_refine'],
                               torch.tensor(80 * 0.05))
    assert refine['d0.loss_oks_refine'] > 0
    assert refine['d1.loss_kpt_refine'] == 0
    torch.testing.assert_close(refine['d1.loss_oks_refine'],
                               torch.tensor(0.))


def test_no_person_gives_a_placeholder_that_trains_nothing():
    criterion = build_model(criterion_cfg())
    _, normalised, _, _ = persons()
    groups = HybridQueryGroups.hybrid_branch(ONE2ONE, num_layers=LAYERS)
    outputs = hand_made_outputs(normalised, OFFSETS[:ONE2ONE])
    losses, positives = criterion(
        outputs, pose_targets([torch.zeros(0, 4)], [torch.zeros(0).long()],
                              [torch.zeros(0, K, 3)], [torch.zeros(0)]),
        [META], groups)
    assert losses['num_matched'] == 0
    assert positives['poses'].shape == (1, 2 * K)
    assert positives['weights'].sum() == 0
    refined = torch.rand(2, 1, K, 2, requires_grad=True)
    refine = criterion.refine_losses(refined, positives, [META])
    assert all(value == 0 for value in refine.values())
    sum(refine.values()).backward()
    assert refined.grad is not None


def test_criterion_without_assigner_refuses_to_match():
    criterion = build_model(criterion_cfg(with_assigner=False))
    keypoints, normalised, boxes, areas = persons()
    groups = HybridQueryGroups.hybrid_branch(ONE2ONE, num_layers=LAYERS)
    outputs = hand_made_outputs(normalised, OFFSETS[:ONE2ONE])
    with pytest.raises(RuntimeError, match='no assigner.*train_cfg.assigner'):
        criterion(outputs, pose_targets([boxes], [torch.zeros(2).long()],
                                        [keypoints], [areas]), [META], groups)


def test_criterion_missing_a_loss_names_it():
    cfg = criterion_cfg()
    cfg.pop('loss_hm')
    cfg.pop('heatmap_target')
    with pytest.raises(TypeError) as error:
        build_model(cfg)
    message = str(error.value)
    assert 'PETRCriterion needs `loss_hm`, `heatmap_target`' in message
    assert 'model.bbox_head.criterion.loss_hm' in message
    assert 'configs/_base_/models/petr_r50.py' in message


@pytest.mark.parametrize('key', ['criterion', 'positional_encoding'])
def test_pose_head_missing_its_recipe_names_the_key(key):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   'tiny_petr.py'))
    cfg.model.bbox_head.pop(key)
    with pytest.raises(TypeError,
                       match=f'PETRHead needs `{key}` '
                       f'\\(model.bbox_head.{key}\\)'):
        build_detector(cfg.model)


def test_pose_head_refuses_a_criterion_key_it_fills_in():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   'tiny_petr.py'))
    cfg.model.bbox_head.criterion.num_classes = 2
    with pytest.raises(ValueError, match='criterion.num_classes is set by'):
        build_detector(cfg.model)


@pytest.mark.parametrize('key', ['loss_cls', 'loss_iou', 'transformer'])
def test_detection_head_missing_its_recipe_names_the_key(key):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   'tiny_h_deformable_detr.py'))
    cfg.model.bbox_head.pop(key)
    with pytest.raises(TypeError,
                       match=f'DETRDetectionHead needs `{key}`'):
        build_detector(cfg.model)
