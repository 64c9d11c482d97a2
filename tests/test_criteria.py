"""The two criteria (boxes, poses): matching split from scoring.

``DETRCriterion`` is built alone from the R50 H-Deformable-DETR config and
scores hand-made boxes; for both criteria, scoring given the Hungarian's
pairs (no assigner at all) is exactly the Hungarian path.
"""
import os.path as osp

import pytest
import torch
from mmcv import Config

from conftest import REPO_ROOT
from test_petr_criterion import (META, OFFSETS, ONE2ONE, criterion_cfg,
                                 hand_made_outputs, persons, pose_targets)

import opera  # noqa: F401  (registers modules)
from opera.models import build_model
from opera.models.query_groups import HybridQueryGroups

HDETR = osp.join(REPO_ROOT,
                 'configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py')
IMG_H, IMG_W = 80, 100
BOX_META = dict(img_shape=(IMG_H, IMG_W, 3))
# Two boxes (x1, y1, x2, y2) in pixels and their normalised (cx, cy, w, h).
GT_BOXES = torch.tensor([[10., 8., 40., 48.], [50., 20., 90., 60.]])
GT_CXCYWH = torch.tensor([[0.25, 0.35, 0.3, 0.5], [0.7, 0.5, 0.4, 0.5]])
E, D = 0.01, 0.02


def detr_criterion(with_assigner=True):
    """A DETRCriterion from the config's mmdet keys, as the head builds it."""
    cfg = Config.fromfile(HDETR)
    head = cfg.model.bbox_head
    return build_model(
        dict(
            type='opera.DETRCriterion',
            num_classes=head.num_classes,
            loss_cls=head.loss_cls,
            loss_bbox=head.loss_bbox,
            loss_iou=head.loss_iou,
            assigner=cfg.model.train_cfg.assigner if with_assigner else None))


def box_outputs(num_layers=1):
    """Three queries of one image: query 0 is box 1 off by E in every
    coordinate, query 1 box 0 off by D, query 2 a tiny box far from both;
    all class logits 0, so the match follows the boxes."""
    boxes = torch.stack([GT_CXCYWH[1] + E, GT_CXCYWH[0] + D,
                         torch.tensor([0.95, 0.95, 0.01, 0.01])])
    boxes = boxes[None, None].repeat(num_layers, 1, 1, 1)  # [L, 1, 3, 4]
    cls_scores = torch.zeros(num_layers, 1, 3, 80)
    return cls_scores, boxes


def box_targets():
    return dict(gt_bboxes=[GT_BOXES], gt_labels=[torch.tensor([3, 7])])


def test_detr_criterion_of_the_config_matches_and_scores_by_hand():
    criterion = detr_criterion()
    assert criterion.state_dict() == {}  # nothing in a checkpoint
    cls_scores, boxes = box_outputs()
    targets = box_targets()
    matches = criterion.match(cls_scores[0], boxes[0], targets, [BOX_META], 1)
    assert len(matches) == 1
    pos_inds, gt_inds = matches[0]
    assert pos_inds.tolist() == [0, 1] and gt_inds.tolist() == [1, 0]

    losses, num_matched, extra = criterion.layer_losses(
        cls_scores[0], boxes[0], targets, [BOX_META], matches)
    assert num_matched == 2 and extra is None
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_iou'}
    # L1 weight 5: (4 E + 4 D) over 2 matched queries.
    torch.testing.assert_close(losses['loss_bbox'],
                               torch.tensor(5 * (4 * E + 4 * D) / 2))


def test_detr_criterion_forward_names_groups_and_proposals():
    criterion = detr_criterion()
    cls_scores, boxes = box_outputs(num_layers=2)
    groups = HybridQueryGroups.hybrid_branch(3, num_layers=2)
    outputs = dict(cls_scores=cls_scores, bbox_preds=boxes,
                   enc_cls=cls_scores[0], enc_bbox_preds=boxes[0])
    losses = criterion(outputs, box_targets(), [BOX_META], groups)
    assert list(losses) == [
        'enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou', 'd0.loss_cls',
        'd0.loss_bbox', 'd0.loss_iou', 'loss_cls', 'loss_bbox', 'loss_iou',
        'num_matched'
    ]
    # The proposals are matched once to the boxes as one class: the same
    # pairs, so the same L1 loss.
    torch.testing.assert_close(losses['enc_loss_bbox'],
                               torch.tensor(5 * (4 * E + 4 * D) / 2))
    assert losses['num_matched'].item() == 2


def detr_case():
    cls_scores, boxes = box_outputs()
    return (detr_criterion(), (cls_scores[0], boxes[0]), box_targets(),
            [BOX_META])


def petr_case():
    keypoints, normalised, boxes, areas = persons()
    outputs = hand_made_outputs(normalised, OFFSETS[:ONE2ONE])
    targets = pose_targets([boxes], [torch.zeros(2).long()], [keypoints],
                           [areas])
    return (build_model(criterion_cfg()),
            (outputs['cls_scores'][-1], outputs['poses'][-1]), targets,
            [META])


def hungarian_losses(criterion, predictions, targets, metas):
    """The losses of one one-to-one group at one layer as the query groups
    compute them (match, then score), and its matched count."""
    num_queries = predictions[0].size(1)
    groups = HybridQueryGroups([dict(num_queries=num_queries, at_test=True)],
                               num_layers=1)
    losses, _ = criterion.query_group_losses(
        tuple(p[None] for p in predictions), targets, metas, groups)
    return losses, losses.pop('num_matched').item()


@pytest.mark.parametrize('case', [detr_case, petr_case])
def test_scoring_given_the_hungarian_pairs_is_the_hungarian_path(case):
    criterion, predictions, targets, metas = case()
    hungarian, matched = hungarian_losses(criterion, predictions, targets,
                                          metas)
    matches = criterion.match(*predictions, targets, metas, 1)
    assert matched == sum(pos.numel() for pos, _ in matches) == 2
    criterion.assigner = None  # scoring alone needs no assigner
    given, matched_given, _ = criterion.layer_losses(*predictions, targets,
                                                     metas, matches)
    assert list(given) == list(hungarian)
    for name in hungarian:
        assert torch.equal(given[name], hungarian[name]), name
    assert matched_given == matched
    with pytest.raises(RuntimeError, match='no assigner'):
        criterion.match(*predictions, targets, metas, 1)


@pytest.mark.parametrize('case', [detr_case, petr_case])
def test_other_pairs_are_scored_as_given(case):
    """Pairs that are not the Hungarian's (e.g. a group made from the ground
    truth): one query matched to object 0 in place of two."""
    criterion, predictions, targets, metas = case()
    matches = [(torch.tensor([2]), torch.tensor([0]))]
    losses, matched, _ = criterion.layer_losses(*predictions, targets, metas,
                                                matches)
    hungarian, _ = hungarian_losses(criterion, predictions, targets, metas)
    assert matched == 1
    assert not torch.equal(losses['loss_cls'], hungarian['loss_cls'])
