"""Pose matching of PETR: keypoint costs and the Hungarian pose assigner."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from conftest import matched_targets

import opera  # noqa: F401
from opera.core.bbox import (build_assigner, build_match_cost,
                             match_with_repeated_targets)
from opera.core.bbox.assigners.repeated_targets import candidate_queries

IMG_META = dict(img_shape=(400, 600, 3))  # h, w
PETR_ASSIGNER = dict(
    type='opera.PoseHungarianAssigner',
    cls_cost=dict(type='mmdet.FocalLossCost', weight=2.0),
    kpt_cost=dict(type='opera.KptL1Cost', weight=70.0),
    oks_cost=dict(type='opera.OksCost', weight=7.0))


def test_kpt_l1_cost_by_hand():
    cost = build_match_cost(dict(type='opera.KptL1Cost', weight=70.0))
    kpt_pred = torch.tensor([[0.1, 0.2, 0.5, 0.5], [0.3, 0.3, 0.4, 0.6]])
    gt_keypoints = torch.tensor([
        [[0.1, 0.4, 2], [0.9, 0.9, 0]],  # only keypoint 0 labelled
        [[0.0, 0.0, 0], [0.0, 0.0, 0]],  # nothing labelled
        [[0.2, 0.2, 1], [0.5, 0.7, 2]],  # both labelled (v=1 counts)
    ])
    # gt 0 (one keypoint, divisor 2): q0 (0 + .2) / 2 = .1,
    #   q1 (.2 + .1) / 2 = .15
    # gt 1: no labelled keypoint -> 0 (finite)
    # gt 2 (divisor 4): q0 (.1 + 0 + 0 + .2) / 4 = .075,
    #   q1 (.1 + .1 + .1 + .1) / 4 = .1
    expected = 70 * torch.tensor([[0.1, 0.0, 0.075], [0.15, 0.0, 0.1]])
    assert torch.allclose(cost(kpt_pred, gt_keypoints), expected, atol=1e-5)


def test_oks_cost_by_hand_and_ignores_unlabelled():
    cost = build_match_cost(
        dict(
            type='opera.OksCost',
            weight=7.0,
            num_keypoints=2,
            sigmas=[0.25, 0.5]))
    gt_keypoints = torch.tensor([[[10., 10., 2], [50., 50., 2]],
                                 [[10., 10., 2], [0., 0., 0]]])
    gt_areas = torch.tensor([100., 100.])
    kpt_pred = torch.tensor([
        [13., 14., 50., 50.],  # keypoint 0 off by (3, 4)
        [10., 10., 50., 50.],  # perfect
        [10., 10., 90., 0.],  # keypoint 1 far off
    ])
    # OKS = mean over labelled k of exp(-d_k^2 / (2 * area * (2 sigma_k)^2))
    # q0/gt0: k0 d^2 = 25, (2 * .25)^2 = .25 -> e = 25 / (2 * 100 * .25)
    #   = .5; k1 exact -> e = 0. OKS = (exp(-.5) + 1) / 2 = .803265
    # q0/gt1: only k0 labelled -> exp(-.5) = .606531
    # q1: perfect -> OKS 1 with both; q2/gt1: k1 is unlabelled -> 1
    # q2/gt0: k1 d^2 = 40^2 + 50^2 = 4100, (2 * .5)^2 = 1
    #   -> e = 4100 / 200 = 20.5 -> (1 + exp(-20.5)) / 2
    half = math.exp(-0.5)
    expected_oks = torch.tensor([[(half + 1) / 2, half], [1.0, 1.0],
                                 [(1 + math.exp(-20.5)) / 2, 1.0]])
    result = cost(kpt_pred, gt_keypoints, gt_areas)
    assert torch.allclose(result, -7.0 * expected_oks, atol=1e-6)


def test_oks_cost_coco_sigmas():
    cost = build_match_cost(dict(type='opera.OksCost', weight=1.0))
    gt_keypoints = torch.zeros(1, 17, 3)
    gt_keypoints[0, :2] = torch.tensor([[100., 100., 2], [110., 95., 2]])
    kpt_pred = gt_keypoints[:, :, :2].clone()
    kpt_pred[0, 0, 0] += 2.6  # nose: sigma .026, (2 sigma)^2 = .002704
    kpt_pred[0, 5:] = 300.  # unlabelled keypoints: ignored
    # nose: e = 2.6^2 / (2 * 2500 * .002704) = 6.76 / 13.52 = .5
    # left eye exact -> OKS = (exp(-.5) + 1) / 2
    result = cost(kpt_pred.reshape(1, -1), gt_keypoints, torch.tensor([2500.]))
    assert result.item() == pytest.approx(-(math.exp(-0.5) + 1) / 2, 1e-6)


def test_oks_cost_rejects_unknown_keypoint_count():
    with pytest.raises(ValueError):
        build_match_cost(dict(type='opera.OksCost', num_keypoints=5))


def random_persons(num_gts, num_keypoints=17, seed=0):
    """Keypoints [G, K, 3] in pixels of IMG_META's image, and areas [G]."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_gts, num_keypoints, 2, generator=gen)
    labelled = torch.rand(num_gts, num_keypoints, generator=gen) > 0.3
    keypoints = torch.cat(
        [xy * torch.tensor([600., 400.]), 2.0 * labelled[..., None]], -1)
    keypoints[..., :2] *= labelled[..., None]
    areas = torch.rand(num_gts, generator=gen) * 5000 + 500
    return keypoints, areas


def test_assigner_recovers_permuted_poses():
    assigner = build_assigner(PETR_ASSIGNER)
    gt_keypoints, gt_areas = random_persons(4)
    gt_keypoints[3, :, 2] = 0  # a person without labelled keypoints
    gt_labels = torch.zeros(4, dtype=torch.long)
    # Queries 6, 1, 4 predict persons 0, 1, 2 exactly; the rest are noise.
    kpt_pred = torch.rand(8, 34, generator=torch.Generator().manual_seed(1))
    exact = gt_keypoints[:3, :, :2] / torch.tensor([600., 400.])
    kpt_pred[[6, 1, 4]] = exact.reshape(3, -1)
    cls_pred = torch.zeros(8, 1)

    cost = assigner.cost_matrix(cls_pred, kpt_pred, gt_labels, gt_keypoints,
                                gt_areas, IMG_META)
    assert cost.shape == (8, 4) and torch.isfinite(cost).all()
    result = assigner.assign(cls_pred, kpt_pred, gt_labels, gt_keypoints,
                             gt_areas, IMG_META)
    assert result.num_gts == 4
    assert result.gt_inds[[6, 1, 4]].tolist() == [1, 2, 3]
    matched = result.gt_inds[result.gt_inds > 0]
    assert sorted(matched.tolist()) == [1, 2, 3, 4]  # one query per person
    assert (result.labels[result.gt_inds > 0] == 0).all()
    assert (result.labels[result.gt_inds == 0] == -1).all()


def test_assigner_no_person_is_all_background():
    assigner = build_assigner(PETR_ASSIGNER)
    result = assigner.assign(
        torch.randn(5, 1), torch.rand(5, 34), torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 17, 3), torch.zeros(0), IMG_META)
    assert result.num_gts == 0
    assert result.gt_inds.tolist() == [0] * 5
    assert result.labels.tolist() == [-1] * 5


def test_assigner_tiled_persons_get_distinct_queries():
    assigner = build_assigner(PETR_ASSIGNER)
    gt_keypoints, gt_areas = random_persons(2)
    gt_labels = torch.zeros(2, dtype=torch.long)
    gen = torch.Generator().manual_seed(2)
    cls_pred = torch.randn(9, 1, generator=gen)
    kpt_pred = torch.rand(9, 34, generator=gen)
    args = (cls_pred, kpt_pred)
    tiled = (gt_labels.repeat(3), gt_keypoints.repeat(3, 1, 1),
             gt_areas.repeat(3))
    plain = assigner.assign(*args, *tiled, IMG_META)
    repeated = assigner.assign(*args, gt_labels, gt_keypoints, gt_areas,
                               IMG_META, num_repeats=3)
    for result in (plain, repeated):
        assert result.num_gts == 6
        assert sorted(result.gt_inds[result.gt_inds > 0].tolist()) == list(
            range(1, 7))
    # Same matching: the costs are the same, only computed once (which
    # copy of a person a query gets may differ; the copies are identical).
    assert torch.equal(matched_targets(plain.gt_inds, 2),
                       matched_targets(repeated.gt_inds, 2))
    assert torch.equal(plain.labels, repeated.labels)
    # The costs are computed for the 2 distinct persons only.
    label_shapes = []
    cost_matrix = assigner.cost_matrix

    def recorded_cost_matrix(*cost_args):
        label_shapes.append(tuple(cost_args[2].shape))  # gt_labels
        return cost_matrix(*cost_args)

    assigner.cost_matrix = recorded_cost_matrix
    assigner.assign(*args, gt_labels, gt_keypoints, gt_areas, IMG_META,
                    num_repeats=3)
    assert label_shapes == [(2, )]


def brute_force_min_cost(cost):
    """Smallest total cost of a full matching of the (shorter) side."""
    num_rows, num_cols = cost.shape
    if num_rows > num_cols:
        return brute_force_min_cost(cost.T)
    return min(cost[np.arange(num_rows), list(cols)].sum()
               for cols in itertools.permutations(range(num_cols), num_rows))


def match_against_tiled(cost, num_repeats, same_matching):
    """``match_with_repeated_targets`` checked against the Hungarian
    algorithm on the tiled matrix: the same total cost, and with
    ``same_matching`` the same queries matched to the same targets.

    Returns:
        tuple: Its rows and tiled columns, and the tiled cost matrix.
    """
    num_targets = max(cost.shape[1], 1)
    tiled_cost = np.tile(cost, (1, num_repeats))
    plain_rows, plain_cols = linear_sum_assignment(tiled_cost)
    rows, cols = match_with_repeated_targets(
        torch.from_numpy(cost), num_repeats)
    assert tiled_cost[rows, cols].sum() == pytest.approx(
        tiled_cost[plain_rows, plain_cols].sum(), abs=1e-9)
    if same_matching:
        assert rows.tolist() == plain_rows.tolist()
        assert (cols % num_targets).tolist() == (plain_cols %
                                                 num_targets).tolist()
    return rows, cols, tiled_cost


@pytest.mark.parametrize('num_query,num_gts,num_repeats',
                         [(10, 3, 2), (7, 3, 3), (5, 4, 3), (20, 1, 5),
                          (2, 3, 4), (3, 2, 3), (4, 2, 2), (4, 0, 3),
                          (6, 2, 1)])
def test_repeated_targets_equal_tiled_hungarian(num_query, num_gts,
                                                num_repeats):
    rng = np.random.default_rng(num_query * 100 + num_gts * 10 + num_repeats)
    cost = rng.normal(size=(num_query, num_gts))
    rows, cols, tiled_cost = match_against_tiled(cost, num_repeats, True)
    assert len(rows) == min(num_query, num_repeats * num_gts)
    assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
    total = tiled_cost[rows, cols].sum()
    num_cols = num_repeats * num_gts
    if 0 < math.perm(max(num_query, num_cols), min(num_query,
                                                   num_cols)) <= 1000:
        assert total == pytest.approx(brute_force_min_cost(tiled_cost))


def clustered_costs(num_query, num_gts, seed):
    """Costs [Q, G] as matching makes them: each query near one target."""
    rng = np.random.default_rng(seed)
    targets = rng.random((num_gts, 2))
    queries = rng.random((num_query, 2)) * 0.2 + targets[rng.integers(
        num_gts, size=num_query)] - 0.1
    return np.abs(queries[:, None] - targets[None]).sum(-1)


@pytest.mark.parametrize('num_query,num_gts,num_repeats,decimals',
                         [(300, 5, 6, None), (1500, 8, 6, None),
                          (900, 10, 5, None), (200, 6, 6, 1), (60, 3, 4, 0)])
def test_matching_on_candidate_queries_is_optimal(num_query, num_gts,
                                                  num_repeats, decimals):
    """Large problems: the Hungarian algorithm sees only the candidate
    queries and still finds the tiled matrix's optimum (the same matching
    unless costs tie: rounding to ``decimals`` makes ties on purpose)."""
    cost = clustered_costs(num_query, num_gts, num_query + num_gts)
    if decimals is not None:
        cost = cost.round(decimals)
    num_matched = num_repeats * num_gts
    queries = candidate_queries(cost, num_repeats)
    assert num_matched <= len(queries) < num_query
    rows, cols, _ = match_against_tiled(cost, num_repeats, decimals is None)
    assert len(rows) == len(set(cols)) == num_matched
    assert set(rows) <= set(queries)


def test_candidate_queries_by_hand():
    # Two targets, K = 2 (n = 4). Target 0's cheapest: q0 q1 q2 q3; target
    # 1's: q3 q4 q5 q6 (q3 is shared). Target 0 has 2 unshared queries by
    # q1, target 1 by q5 (q3 shared, q4 and q5 not).
    cost = np.array([[0., 9.], [1., 9.], [2., 9.], [3., 0.], [9., 1.],
                     [9., 2.], [9., 3.], [9., 9.]])
    assert candidate_queries(cost, 2).tolist() == [0, 1, 3, 4, 5]
    # All four of target 0's cheapest queries are shared: it needs all n.
    cost = np.array([[0., 0.], [1., 1.], [2., 2.], [3., 3.], [9., 9.]])
    assert candidate_queries(cost, 2).tolist() == [0, 1, 2, 3]


def test_matching_on_candidate_queries_random_problems():
    """Many small problems, spread, clustered and tied: always an optimum
    of the tiled matrix; the same matching when no cost ties."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        num_repeats = int(rng.integers(2, 7))
        num_gts = int(rng.integers(1, 8))
        num_query = num_repeats * num_gts + int(rng.integers(1, 60))
        kind = trial % 3
        if kind == 1:
            cost = clustered_costs(num_query, num_gts, trial)
        else:
            cost = rng.normal(size=(num_query, num_gts))
            if kind == 2:
                cost = cost.round(1)
        match_against_tiled(cost, num_repeats, kind != 2)


@pytest.mark.parametrize('num_repeats', [1, 3])
def test_matching_refuses_non_finite_costs(num_repeats):
    cost = np.random.default_rng(0).normal(size=(40, 2))
    cost[7, 1] = np.nan
    with pytest.raises(ValueError, match='not all finite'):
        match_with_repeated_targets(cost, num_repeats)
