"""One-to-many matching from the untiled costs equals matching tiled targets.

Both heads match their one-to-many queries against the ground truth repeated
K times by calling the assigner with the untiled targets and
``num_repeats=K``: the costs are computed once per distinct target and the
Hungarian algorithm sees repeated columns of the candidate queries only.
These tests check that every query gets the same target as the plain way
(the assigner's own matching of the tiled targets, K = 1), and the losses
are bit for bit the same, for the box assigner against mmdet's and for both
heads end to end. Which copy of a target a
query gets may differ: the copies are the same box or person.
"""
import os.path as osp
from unittest import mock

import pytest
import torch
from mmcv import Config
from mmdet.core.bbox.builder import build_assigner as mmdet_build_assigner

from conftest import (REPO_ROOT, detection_inputs, matched_targets,
                      pose_inputs, targets_of)

import opera  # noqa: F401
from opera.core.bbox import build_assigner, build_match_cost
from opera.models import build_detector

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = osp.join(REPO_ROOT, 'tests', 'configs',
                       'tiny_h_deformable_detr.py')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')
BOX_COSTS = dict(
    cls_cost=dict(type='FocalLossCost', weight=2.0),
    reg_cost=dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0))
OPERA_BOX_COSTS = {
    name: dict(cost, type='opera.' + cost['type'])
    for name, cost in BOX_COSTS.items()
}
IMG_META = dict(img_shape=(96, 128, 3))


def random_boxes(num_query, num_gts, seed):
    """Predictions (cx, cy, w, h) [Q, 4], logits [Q, 80], ground truth
    (x1, y1, x2, y2) pixels [G, 4] and labels [G]."""
    gen = torch.Generator().manual_seed(seed)
    pred = torch.rand(num_query, 4, generator=gen) * 0.5 + 0.2
    logits = torch.randn(num_query, 80, generator=gen)
    xy = torch.rand(num_gts, 2, generator=gen) * torch.tensor([80., 60.])
    wh = torch.rand(num_gts, 2, generator=gen) * 30 + 5
    labels = torch.randint(0, 80, (num_gts, ), generator=gen)
    return pred, logits, torch.cat([xy, xy + wh], 1), labels


@pytest.mark.parametrize('num_query,num_gts,num_repeats',
                         [(30, 4, 6), (12, 5, 3), (7, 3, 3), (9, 0, 2),
                          (8, 3, 1), (300, 6, 6), (1500, 8, 6)])
def test_box_assigner_repeated_equals_mmdet_on_tiled(num_query, num_gts,
                                                     num_repeats):
    ours = build_assigner(
        dict(type='opera.HungarianAssigner', **OPERA_BOX_COSTS))
    mmdet = mmdet_build_assigner(dict(type='HungarianAssigner', **BOX_COSTS))
    pred, logits, boxes, labels = random_boxes(num_query, num_gts, num_query)
    tiled = (boxes.repeat(num_repeats, 1), labels.repeat(num_repeats))

    plain = mmdet.assign(pred, logits, *tiled, IMG_META)
    repeated = ours.assign(
        pred, logits, boxes, labels, IMG_META, num_repeats=num_repeats)
    assert repeated.num_gts == plain.num_gts == num_repeats * num_gts
    assert torch.equal(matched_targets(repeated.gt_inds, num_gts),
                       matched_targets(plain.gt_inds, num_gts))
    assert torch.equal(repeated.labels, plain.labels)
    matched = repeated.gt_inds[repeated.gt_inds > 0]
    assert matched.numel() == min(num_query, num_repeats * num_gts)
    # Untiled, ours is mmdet's assigner.
    untiled = ours.assign(pred, logits, boxes, labels, IMG_META)
    assert torch.equal(untiled.gt_inds,
                       mmdet.assign(pred, logits, boxes, labels,
                                    IMG_META).gt_inds)


@pytest.mark.parametrize('num_query,num_gts', [(1500, 8), (7, 3), (0, 2),
                                               (5, 0)])
@pytest.mark.parametrize('iou_mode', ['giou', 'iou'])
def test_opera_box_costs_are_mmdets(num_query, num_gts, iou_mode):
    """opera's DETR costs give mmdet's values, target-major: the IoU and L1
    costs bit for bit, the focal cost to float rounding (its log and sigmoid
    run over other memory, vectorised differently)."""
    pred, logits, boxes, labels = random_boxes(num_query, num_gts, 5)
    pred = torch.cat([pred[:, :2] * 128, pred[:, 2:] * 96], 1)  # x1y1 wh
    pred = torch.cat([pred[:, :2], pred[:, :2] + pred[:, 2:]], 1)
    num_same = min(num_query, num_gts) // 2
    boxes[:num_same] = pred[:num_same]  # some exact overlaps
    costs = (('FocalLossCost', {}), ('IoUCost', dict(iou_mode=iou_mode)),
             ('BBoxL1Cost', dict(box_format='xywh')),
             ('BBoxL1Cost', dict(box_format='xyxy')))
    normalised = (pred / 128, boxes / 128)
    inputs = ((logits, labels), (pred, boxes), normalised, normalised)
    for (name, kwargs), args in zip(costs, inputs):
        ours = build_match_cost(
            dict(type='opera.' + name, weight=2.0, **kwargs))
        theirs = build_match_cost(dict(type=name, weight=2.0, **kwargs))
        expected, got = theirs(*args), ours(*args)
        assert got.shape == expected.shape == (num_query, num_gts)
        if name == 'FocalLossCost':
            assert torch.allclose(got, expected, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(got, expected), name
        if num_query and num_gts:
            assert got.abs().max() > 0


def test_repeated_matching_needs_an_assigner_that_supports_it():
    cfg = Config.fromfile(TINY_HYBRID)
    cfg.model.train_cfg.assigner = dict(type='HungarianAssigner', **BOX_COSTS)
    with pytest.raises(TypeError, match='HungarianAssigner'):
        build_detector(cfg.model)


def one2many_assignments(head, run_loss, plain):
    """Losses and the target of every one-to-many query of every assigner call
    (:func:`conftest.matched_targets`).

    ``plain``: each call with ``num_repeats`` K > 1 is replaced by the
    assigner's own matching of the targets tiled K times (K = 1).
    """
    assigner, records = head.criterion.assigner, []
    assign = assigner.assign

    def recorded(*args, num_repeats=1, **kwargs):
        # Both assigners take (prediction, prediction, *targets, img_meta).
        if plain and num_repeats > 1:
            tiled = [
                t.repeat(num_repeats, *[1] * (t.dim() - 1))
                for t in args[2:-1]
            ]
            result = assign(*args[:2], *tiled, args[-1], **kwargs)
        else:
            result = assign(*args, num_repeats=num_repeats, **kwargs)
        if num_repeats > 1:
            records.append(
                matched_targets(result.gt_inds, result.num_gts // num_repeats))
        return result

    with mock.patch.object(assigner, 'assign', recorded):
        losses = run_loss()
    return losses, records


def check_same_matching(head, run_loss, num_calls):
    losses, repeated = one2many_assignments(head, run_loss, False)
    plain_losses, plain = one2many_assignments(head, run_loss, True)
    assert len(repeated) == len(plain) == num_calls
    for ours, theirs in zip(repeated, plain):
        assert torch.equal(ours, theirs)
    assert max(int((targets >= 0).sum()) for targets in repeated) > 0
    assert losses.keys() == plain_losses.keys()
    for name, value in losses.items():
        assert torch.equal(value, plain_losses[name]), name


def test_detection_head_one2many_matching_equals_tiled():
    cfg = Config.fromfile(TINY_HYBRID)
    torch.manual_seed(0)
    head = build_detector(cfg.model).bbox_head
    num_layers, one2one, one2many = 2, 20, 40
    gen = torch.Generator().manual_seed(1)
    cls = torch.randn(num_layers, 2, one2one + one2many, 80, generator=gen)
    boxes = torch.rand(num_layers, 2, one2one + one2many, 4, generator=gen)
    boxes = boxes * 0.5 + 0.2
    inputs = detection_inputs([(96, 128), (96, 128)], num_boxes=(3, 5))

    def run_loss():
        return head.loss(
            dict(cls_scores=cls, bbox_preds=boxes, enc_cls=None,
                 enc_bbox_preds=None), targets_of(inputs),
            inputs['img_metas'])

    check_same_matching(head, run_loss, num_calls=num_layers * 2)


def test_pose_head_one2many_matching_equals_tiled():
    cfg = Config.fromfile(TINY_H_PETR)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    head = model.train().bbox_head
    inputs = pose_inputs([(128, 128), (128, 128)], num_persons=(2, 3))
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = (128, 128)
    with torch.no_grad():
        outputs = head(model.extract_feat(inputs['img']), inputs['img_metas'])

        def run_loss():
            return head.loss(outputs, targets_of(inputs),
                             inputs['img_metas'])

        num_layers = outputs['poses'].size(0)
        check_same_matching(head, run_loss, num_calls=num_layers * 2)
