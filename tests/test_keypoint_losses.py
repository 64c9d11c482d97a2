"""PETR's pose losses: OKS loss, keypoint L1 and the heatmap focal loss."""
import math

import pytest
import torch
from mmdet.models.utils.gaussian_target import gaussian_radius

import opera  # noqa: F401
from opera.models import LOSSES
from opera.core.keypoint import (centernet_gaussian_radius,
                                 keypoint_heatmap_target)

HALF = math.exp(-0.5)


def three_poses():
    """Predicted / target poses [3, 34], labelled flags [3, 17], areas [3].

    Pose 0: only the nose labelled, predicted 2.6 px off; area 2500 gives
    e = 2.6^2 / (2 * 2500 * (2 * .026)^2) = 6.76 / 13.52 = .5, OKS exp(-.5).
    Pose 1: perfect, OKS 1. Pose 2: nothing labelled.
    """
    target = torch.rand(3, 17, 2, generator=torch.Generator().manual_seed(0))
    target = target * 300
    pred = target.clone()
    pred[0, 0, 0] += 2.6
    pred[0, 1:] += 40.  # unlabelled: ignored
    pred[2] += 40.
    visible = torch.zeros(3, 17)
    visible[0, 0] = 2
    visible[1] = 1
    areas = torch.tensor([2500., 900., 400.])
    return pred.reshape(3, -1), target.reshape(3, -1), visible, areas


def test_oks_loss_by_hand():
    pred, target, visible, areas = three_poses()
    oks_loss = LOSSES.build(dict(type='opera.OKSLoss', loss_weight=2.0))
    per_pose = oks_loss(
        pred, target, visible, areas, reduction_override='none')
    # -log(exp(-.5)) = .5; perfect -> 0; no labelled keypoint -> 0
    assert torch.allclose(per_pose, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)
    # weighted sum (.5 + 0 + 0) / avg_factor 2, times loss_weight 2
    loss = oks_loss(pred, target, visible, areas, avg_factor=2.0)
    assert loss.item() == pytest.approx(0.5, abs=1e-5)
    ignored = oks_loss(
        pred, target, visible, areas, weight=torch.tensor([0., 1., 1.]))
    assert ignored.item() == pytest.approx(0.0, abs=1e-6)


def test_oks_loss_linear_and_gradients():
    pred, target, visible, areas = three_poses()
    pred.requires_grad_()
    oks_loss = LOSSES.build(dict(type='opera.OKSLoss', linear=True))
    loss = oks_loss(pred, target, visible, areas, avg_factor=2.0)
    assert loss.item() == pytest.approx((1 - HALF) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0, 0] > 0  # pulls the nose back (x too large)
    assert (pred.grad[0, 1:] == 0).all() and (pred.grad[2] == 0).all()


def test_oks_loss_is_resize_invariant_and_handles_empty():
    pred, target, visible, areas = three_poses()
    oks_loss = LOSSES.build(dict(type='opera.OKSLoss'))
    loss = oks_loss(pred, target, visible, areas)
    # An image resized by 2: coordinates x2, areas x4 -> same OKS.
    resized = oks_loss(pred * 2, target * 2, visible, areas * 4)
    assert resized.item() == pytest.approx(loss.item(), rel=1e-5)
    empty = oks_loss(
        torch.zeros(0, 34, requires_grad=True),
        torch.zeros(0, 34),
        torch.zeros(0, 17),
        torch.zeros(0),
        avg_factor=1.0)
    assert empty.item() == 0 and empty.requires_grad


def test_crowdpose_oks_loss_uses_14_sigmas():
    oks_loss = LOSSES.build(dict(type='opera.OKSLoss', num_keypoints=14))
    target = torch.full((1, 14, 2), 50.)
    pred = target.clone()
    pred[0, 12, 1] += 7.9  # head: sigma .079, (2 sigma)^2 = .024964
    visible = torch.zeros(1, 14)
    visible[0, 12] = 1
    # e = 7.9^2 / (2 * 1250 * .024964) = 62.41 / 62.41 = 1 -> loss 1
    loss = oks_loss(
        pred.reshape(1, -1), target.reshape(1, -1), visible,
        torch.tensor([1250.]))
    assert loss.item() == pytest.approx(1.0, abs=1e-5)


def test_mmdet_l1_loss_normalises_by_labelled_coordinates():
    # PETR's keypoint L1 is mmdet's L1Loss: weights mark the labelled
    # coordinates of positive queries, avg_factor = their count.
    l1_loss = LOSSES.build(dict(type='mmdet.L1Loss', loss_weight=70.0))
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.9, 0.9]])
    target = torch.tensor([[0.4, 0.7, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # query 0: keypoint 0 labelled, keypoint 1 not; query 1: background
    weight = torch.tensor([[1., 1., 0., 0.], [0., 0., 0., 0.]])
    loss = l1_loss(pred, target, weight, avg_factor=weight.sum())
    # (|.5 - .4| + |.5 - .7|) / 2 coordinates * 70 = .15 * 70
    assert loss.item() == pytest.approx(10.5, abs=1e-4)


def test_mmdet_gaussian_focal_loss_is_cornernet_focal_loss():
    hm_loss = LOSSES.build(
        dict(type='mmdet.GaussianFocalLoss', loss_weight=4.0))
    target = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    pred = torch.tensor([[0.5, 0.5], [0.5, 0.1]])
    not_padding = torch.tensor([[1., 1.], [1., 0.]])
    # positive (0,0): -log(.5) * (1 - .5)^2              = .1732868
    # (0,1): (1 - .5)^4 * -log(1 - .5) * .5^2 = .0625 * .1732868 = .0108304
    # (1,0): (1 - 0)^4 * -log(.5) * .5^2                 = .1732868
    # (1,1): padding, weight 0
    # sum .3574040 / 1 positive, times loss_weight 4
    num_pos = max(target.eq(1).sum().item(), 1)
    loss = hm_loss(pred, target, not_padding, avg_factor=num_pos)
    assert loss.item() == pytest.approx(4 * 0.3574040, abs=1e-5)
    # no positive at all: the sum of the negative terms (avg_factor 1)
    loss = hm_loss(pred, torch.zeros(2, 2), not_padding, avg_factor=1)
    expected = 4 * 3 * 0.1732868
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_centernet_gaussian_radius_by_hand():
    # h=40, w=20, overlap .9: the third quadratic a=3.6, b=-108, c=-80
    # gives (b + sqrt(b^2 - 4ac)) / 2 = (-108 + sqrt(12816)) / 2 = 2.6039;
    # the others give 59.29 and 117.27.
    radius = centernet_gaussian_radius(
        torch.tensor([40.]), torch.tensor([20.]))
    assert radius.item() == pytest.approx(2.6039, abs=1e-4)
    # mmdet's corrected radius is much smaller: not PETR's targets.
    assert gaussian_radius((40, 20), 0.9) < 1


def test_keypoint_heatmap_target_by_hand():
    gt_keypoints = torch.zeros(2, 3, 3)
    gt_keypoints[0] = torch.tensor([[17., 20., 2], [30., 30., 0],
                                    [90., 10., 1]])  # unlabelled; outside
    gt_keypoints[1, 1] = torch.tensor([24., 16., 2])
    # 128 px box = 16 cells: radius floor(16 * .0974) = 1;
    # 400 px box = 50 cells: radius 4.87 clamped to 3
    gt_bboxes = torch.tensor([[0., 0., 128., 128.], [0., 0., 400., 400.]])
    heatmap = keypoint_heatmap_target(gt_keypoints, gt_bboxes, (5, 8))
    assert heatmap.shape == (3, 5, 8)
    # keypoint (17, 20) -> cell (2, 2); radius 1, sigma 3 / 6 = .5:
    # side neighbours exp(-1 / (2 * .25)) = e^-2, diagonals e^-4
    side, diag = math.exp(-2), math.exp(-4)
    expected = torch.zeros(5, 8)
    expected[1:4, 1:4] = torch.tensor([[diag, side, diag], [side, 1, side],
                                       [diag, side, diag]])
    assert torch.allclose(heatmap[0], expected, atol=1e-6)
    assert heatmap[2].eq(0).all()
    # (24, 16) -> cell (3, 2) with radius 3: a 7 x 7 peak cut by the border
    assert heatmap[1, 2, 3] == 1 and heatmap[1].eq(1).sum() == 1
    assert (heatmap[1] > 0).sum() == 5 * 7
