"""Contrastive pose denoising (opera.PoseDenoisingQueries) on the tiny
H-PETR: the queries it makes, how they see the others, its losses, and
that nothing of it runs at test."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import (REPO_ROOT, load_tool, pose_inputs, targets_of,
                      train_iterations)
from test_petr import build_tiny, total_loss
from test_petr_training import (HYBRID_OPTIONS, POSE_LOSSES, build,
                                coco_mini_options, mean)

import opera  # noqa: F401
from opera.models.builder import MODELS
from opera.models.transformers.dino_transformer import box_sine_embedding

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')
TINY_H_PETR_DN = osp.join(REPO_ROOT, 'tests', 'configs',
                          'tiny_h_petr_dn.py')
NUM_MATCHING = 30  # 10 one-to-one + 20 one-to-many queries
K = 17
# One 200 x 100 image (w x h), two persons (x1, y1, x2, y2 pixels): person
# 0 normalised (cx, cy, w, h) = (0.4, 0.5, 0.4, 0.4), person 1 (0.8, 0.5,
# 0.3, 0.6). Their keypoints lie farther inside the image than the outer
# band (0.8 half box sizes at noise scale 0.4), so no noised keypoint is
# clamped.
META = dict(img_shape=(100, 200, 3))
BOXES = torch.tensor([[40., 30., 120., 70.], [130., 20., 190., 80.]])
CENTRES = torch.tensor([[0.4, 0.5], [0.8, 0.5]])
HALF_SIZES = torch.tensor([[0.2, 0.2], [0.15, 0.3]])
UNLABELLED = 3  # keypoint 3 of person 0 has v = 0, stored at (0, 0)


def two_persons(labels=(0, 0)):
    """Targets of the image ``META`` and the persons' poses [2, 2K] as the
    queries should start from them (unlabelled keypoint: box centre)."""
    steps = torch.linspace(0, 1, K)
    x = torch.stack([60 + 40 * steps, 140 + 30 * steps])  # pixels
    y = torch.stack([40 + 20 * steps, 60 - 20 * steps])
    visible = torch.full((2, K), 2.)
    visible[0, UNLABELLED] = 0
    keypoints = torch.stack([x, y, visible], -1)
    keypoints[0, UNLABELLED, :2] = 0
    poses = torch.stack([x / 200, y / 100], -1)
    poses[0, UNLABELLED] = CENTRES[0]
    targets = dict(
        gt_bboxes=[BOXES],
        gt_labels=[torch.tensor(labels)],
        gt_keypoints=[keypoints],
        gt_areas=[torch.tensor([3200., 3600.])])
    return targets, poses.flatten(1)


def maker(**options):
    cfg = dict(type='opera.PoseDenoisingQueries', num_classes=1,
               embed_dims=256)
    cfg.update(options)
    return MODELS.build(cfg)


@pytest.fixture(scope='module')
def dn_model():
    return build_tiny(TINY_H_PETR_DN).train()


@pytest.fixture(scope='module')
def plain_model(dn_model):
    """Tiny H-PETR with the weights of ``dn_model`` (less the denoising
    parts)."""
    plain = build_tiny(TINY_H_PETR).train()
    plain.load_state_dict(without_denoising(dn_model.state_dict()))
    return plain


def without_denoising(state):
    return {
        name: value
        for name, value in state.items()
        if not name.startswith(('bbox_head.group_makers.',
                                'bbox_head.transformer.pose_position.'))
    }


def test_positives_inside_the_inner_band_negatives_between_the_bands(
        dn_model):
    torch.manual_seed(0)
    targets, clean = two_persons()
    # 200 groups: 200 positive and 200 negative copies of each person.
    group = maker(dn_number=400, keypoint_noise_scale=0.4)(
        dn_model.bbox_head.transformer, None, None, targets, [META])
    assert group.num_blocks == 200 and group.num_queries == 800
    reference = group.queries.reference[0].view(200, 2, 2, 2 * K)
    band = 0.4 * HALF_SIZES.repeat(1, K)  # [person, 2K]
    offsets = (reference - clean) / band  # [group, sign, person, 2K]
    positive, negative = offsets[:, 0].abs(), offsets[:, 1].abs()
    assert positive.max() < 1 and positive.max() > 0.99
    assert negative.min() >= 1 and negative.min() < 1.01
    assert negative.max() < 2 and negative.max() > 1.99
    # Both directions, about equally often.
    assert 0.45 < (offsets > 0).float().mean() < 0.55
    # The unlabelled keypoint is noised around its person's box centre.
    unlabelled = reference[:, :, 0, 2 * UNLABELLED:2 * UNLABELLED + 2]
    inner = 0.4 * HALF_SIZES[0]
    assert ((unlabelled[:, 0] - CENTRES[0]).abs() < inner).all()
    assert ((unlabelled[:, 1] - CENTRES[0]).abs() >= inner).all()


def test_label_flips_at_the_configured_ratio(dn_model):
    # Four classes embedded one-hot, so a query's content names its label.
    labels = (1, 3)
    targets, _ = two_persons(labels)
    transformer = dn_model.bbox_head.transformer
    for ratio, expected in ((0.5, 0.5 / 2 * 3 / 4), (0., 0.)):
        torch.manual_seed(0)
        flipping = maker(num_classes=4, dn_number=2000,
                         label_noise_ratio=ratio)
        with torch.no_grad():
            flipping.label_embedding.weight.zero_()
            flipping.label_embedding.weight[:, :4] = torch.eye(4)
        group = flipping(transformer, None, None, targets, [META])
        content = group.queries.content[0].view(-1, 2, 256)  # 2000 copies
        drawn = content[..., :4].argmax(-1)
        # A flip draws any class, its own too: 3 in 4 flips change it.
        changed = (drawn != torch.tensor(labels)).float().mean().item()
        assert changed == pytest.approx(expected, abs=0.02)


def test_layout_of_a_batch_with_different_person_counts(dn_model):
    targets, clean = two_persons()
    one = {name: [value[0][:1]] for name, value in targets.items()}
    none = {name: [value[0][:0]] for name, value in targets.items()}
    batch = {
        name: targets[name] + one[name] + none[name]
        for name in targets
    }
    # No noise: every query starts at its person's pose exactly.
    noiseless = maker(dn_number=5, keypoint_noise_scale=0.,
                      label_noise_ratio=0.)
    group = noiseless(dn_model.bbox_head.transformer, None, None, batch,
                      [META] * 3)
    # 5 // 2 = 2 groups of 2 x 2 queries: per image positives of group 0
    # (one slot per person of the largest image), its negatives, group 1's.
    assert group.num_queries == 8 and group.num_blocks == 2
    assert group.block_sizes == [4, 4] and group.sees_matching
    person = [[0, 1, 0, 1, 0, 1, 0, 1], [0, -1, 0, -1, 0, -1, 0, -1],
              [-1] * 8]
    reference, content = group.queries.reference, group.queries.content
    embedding = noiseless.label_embedding.weight[0]
    for img, slots in enumerate(person):
        for query, index in enumerate(slots):
            if index < 0:  # padding: image centre, no content
                assert (reference[img, query] == 0.5).all()
                assert (content[img, query] == 0).all()
            else:
                assert torch.equal(reference[img, query], clean[index])
                assert torch.equal(content[img, query], embedding)
    assert [q.tolist() for q, _ in group.matches] == [[0, 1, 4, 5], [0, 4],
                                                      []]
    assert [t.tolist() for _, t in group.matches] == [[0, 1, 0, 1], [0, 0],
                                                      []]


@pytest.mark.parametrize('counts, num_groups, num_queries', [
    ((3, 1, 0), 3, 18),  # 10 // 3 = 3 groups of 2 x 3 queries
    ((2, ), 5, 20),
    ((11, ), 1, 22),  # more persons than dn_number: still one group
])
def test_query_counts_follow_the_largest_image(dn_model, counts, num_groups,
                                               num_queries):
    inputs = pose_inputs([(96, 96)] * len(counts), num_persons=counts)
    metas = inputs['img_metas']
    group = maker(dn_number=10)(dn_model.bbox_head.transformer, None, None,
                                targets_of(inputs), metas)
    assert group.num_blocks == num_groups
    assert group.num_queries == num_queries
    assert group.queries.reference.shape == (len(counts), num_queries, 2 * K)
    assert group.queries.position.shape == (len(counts), num_queries, 256)
    assert [q.numel() for q, _ in group.matches] == [
        count * num_groups for count in counts
    ]


def test_queries_from_poses_take_position_from_the_pose_box(dn_model):
    transformer = dn_model.bbox_head.transformer
    steps = torch.linspace(0, 1, K)
    pose = torch.stack([0.2 + 0.3 * steps, 0.7 - 0.6 * steps], -1)
    poses = pose.flatten()[None, None].requires_grad_()
    content = torch.randn(1, 1, 256)
    queries = transformer.queries_from_poses(poses, content)
    box = torch.tensor([[0.35, 0.4, 0.3, 0.6]])  # around the keypoints
    expected = transformer.pose_position(box_sine_embedding(box, 128))
    torch.testing.assert_close(queries.position[0], expected)
    assert torch.equal(queries.reference, poses.detach())
    assert not queries.reference.requires_grad
    assert queries.content is content
    with pytest.raises(ValueError, match='poses \\[bs, n, 34\\]'):
        transformer.queries_from_poses(poses[..., :4], content)
    plain = build_tiny(TINY_H_PETR).bbox_head.transformer
    assert plain.pose_position is None
    with pytest.raises(TypeError, match='transformer.given_pose_queries'):
        plain.queries_from_poses(poses, content)
    targets, _ = two_persons()
    with pytest.raises(TypeError, match='Identity has none'):
        maker()(nn.Identity(), None, None, targets, [META])


def head_outputs(model, inputs, targets=None):
    feats = model.extract_feat(inputs['img'])
    return model.bbox_head(feats, inputs['img_metas'], targets)


def test_denoising_blocks_see_the_matching_queries_one_way(dn_model):
    inputs = pose_inputs([(128, 128), (128, 96)], num_persons=(2, 3))
    head = dn_model.bbox_head
    with torch.no_grad():
        outputs = head_outputs(dn_model, inputs, targets_of(inputs))
        plain = head_outputs(dn_model, inputs)
    (group, ) = outputs['fixed_groups']
    # dn_number 12 // 3 persons = 4 blocks of 2 x 3 queries.
    assert group.block_sizes == [6] * 4
    mask = head.query_groups.self_attn_mask(NUM_MATCHING, 'cpu', [group]).dense()
    starts = [0, 10, 30, 36, 42, 48, 54]  # one-to-one, one-to-many, blocks
    expected = torch.ones(54, 54, dtype=torch.bool)
    for start, end in zip(starts[:-1], starts[1:]):
        expected[start:end, start:end] = False
        if start >= NUM_MATCHING:
            expected[start:end, :NUM_MATCHING] = False
    assert torch.equal(mask, expected)
    # The matching queries' outputs are those of a batch without the group.
    for name in ('cls_scores', 'poses'):
        assert outputs[name].size(2) == NUM_MATCHING + 24
        torch.testing.assert_close(outputs[name][:, :, :NUM_MATCHING],
                                   plain[name], rtol=0, atol=1e-6)


def test_losses_of_the_group_and_the_others_unchanged(dn_model, plain_model):
    inputs = pose_inputs([(128, 128), (128, 96)], num_persons=(2, 3))
    torch.manual_seed(0)
    losses = dn_model.forward_train(**inputs)
    theirs = plain_model.forward_train(**inputs)
    dn_names = {name for name in losses if name.endswith('_dn')}
    assert dn_names == {
        f'{prefix}loss_{part}_dn'
        for prefix in ('d0.', '') for part in ('cls', 'kpt', 'oks')
    } | {'num_matched_dn'}
    # 4 groups x 5 persons; each image's first person has no visible
    # keypoint: supervised as a person, its keypoints not.
    assert losses['num_matched_dn'].item() == 20
    assert all(losses[name] > 0 for name in dn_names)
    # Matching, proposal, heatmap and refine losses are H-PETR's: the
    # refine decoder trains on the matching groups' persons only.
    assert set(losses) - dn_names == set(theirs)
    for name, value in theirs.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-6, atol=1e-6)
    dn_model.zero_grad()
    sum(v for k, v in losses.items() if k in dn_names).backward()
    head = dn_model.bbox_head
    assert head.transformer.pose_position[0].weight.grad.abs().sum() > 0
    assert head.group_makers[0].label_embedding.weight.grad.abs().sum() > 0


def test_keypoint_loss_of_the_positives_by_hand(dn_model):
    """loss_kpt_dn: 70 x the L1 of each positive query's pose against its
    person's visible keypoints, over their number; negatives and padding
    count only in the class loss."""
    inputs = pose_inputs([(128, 128), (128, 96)], num_persons=(2, 3))
    targets = targets_of(inputs)
    with torch.no_grad():
        outputs = head_outputs(dn_model, inputs, targets)
        losses = dn_model.bbox_head.loss(outputs, targets,
                                         inputs['img_metas'])
    (group, ) = outputs['fixed_groups']
    total, count = 0., 0
    for img, (query_inds, target_inds) in enumerate(group.matches):
        h, w = inputs['img_metas'][img]['img_shape'][:2]
        keypoints = targets['gt_keypoints'][img][target_inds]
        visible = (keypoints[..., 2] > 0).float()[..., None]
        poses = outputs['poses'][-1, img, NUM_MATCHING + query_inds]
        error = (poses.view(-1, K, 2) -
                 keypoints[..., :2] / torch.tensor([w, h])).abs()
        total += (error * visible).sum()
        count += 2 * visible.sum()
    # Each image's first person has no visible keypoint: 4 groups x 3
    # persons with visible keypoints.
    assert count == 2 * K * 12
    torch.testing.assert_close(losses['loss_kpt_dn'], 70 * total / count)


def test_batch_without_persons_adds_no_queries(dn_model, plain_model):
    inputs = pose_inputs([(128, 128), (128, 96)], num_persons=(0, 0))
    with torch.no_grad():
        outputs = head_outputs(dn_model, inputs, targets_of(inputs))
    (group, ) = outputs['fixed_groups']
    assert group.num_queries == 0
    assert outputs['poses'].size(2) == NUM_MATCHING
    dn_model.zero_grad()
    losses = dn_model.forward_train(**inputs)
    theirs = plain_model.forward_train(**inputs)
    for name, value in theirs.items():
        torch.testing.assert_close(losses[name], value, rtol=0, atol=0)
    dn_losses = {k: v for k, v in losses.items() if k.endswith('_dn')}
    assert len(dn_losses) == 7 and all(v == 0 for v in dn_losses.values())
    total_loss(losses).backward()
    # Its parameters stay in the graph (a distributed run needs every one).
    assert dn_model.bbox_head.transformer.pose_position[0].weight.grad \
        is not None


def test_test_time_outputs_do_not_depend_on_denoising(dn_model):
    inputs = pose_inputs([(128, 128), (128, 96)], num_persons=(2, 3))
    other = build_tiny(
        TINY_H_PETR_DN,
        seed=1,
        fixed_target_groups=[
            dict(type='opera.PoseDenoisingQueries', dn_number=30,
                 keypoint_noise_scale=0.1, label_noise_ratio=0.,
                 loss_weight=2.0)
        ])
    other.load_state_dict(dn_model.state_dict())
    plain = build_tiny(TINY_H_PETR, seed=2)
    plain.load_state_dict(without_denoising(dn_model.state_dict()))
    results = []
    for model in (dn_model, other, plain):
        model.eval()
        try:
            with torch.no_grad():
                outputs = head_outputs(model, inputs, targets_of(inputs))
                assert outputs['fixed_groups'] == []
                assert outputs['poses'].size(2) == 10
                results.append(
                    model.simple_test(inputs['img'], inputs['img_metas']))
        finally:
            model.train()
    for other_results in results[1:]:
        for ours, theirs in zip(results[0], other_results):
            # Per image: boxes [5, 5] and keypoints [5, K, 3] of class 0.
            for a, b in zip(ours, theirs):
                assert a[0].shape[0] == 5
                np.testing.assert_array_equal(a[0], b[0])


def test_benchmark_train_step_runs_the_denoising_group():
    benchmark = load_tool('tools/analysis_tools/benchmark.py')
    args = benchmark.parse_args(
        ['unused', '--input-size', '96', '128', '--num-boxes', '3'])
    forward_flops = []
    for config in (TINY_H_PETR, TINY_H_PETR_DN):
        run = benchmark.build_run(config, None, None, args, 'cpu')
        flops = benchmark.count_flops(benchmark.train_step, run, 'cpu')
        forward_flops.append(flops['forward'])
    # 24 more decoder queries (4 groups x 2 x 3 persons) in training.
    assert forward_flops[1] > forward_flops[0]


DN_OPTIONS = {
    'model.bbox_head.transformer.given_pose_queries': True,
    'model.bbox_head.fixed_target_groups': [
        dict(type='opera.PoseDenoisingQueries', dn_number=12)
    ],
}
# The denoising branch by its class loss: its keypoint losses stay at the
# noise level in short runs (measured, seed 0, 120 iterations:
# loss_kpt_dn 4.6-4.9 over iterations 1-8, 4.4-4.8 over 110-120, while the
# one-to-one loss_kpt fell from 15.2 to 0.2).
BRANCHES = (('one2one', ''), ('one2many', '_one2many'),
            ('dn', '_dn', ('cls', )))


def test_h_petr_with_denoising_short_training_lowers_its_losses(tmp_path):
    options = {**coco_mini_options(tmp_path), **HYBRID_OPTIONS, **DN_OPTIONS}
    cfg, model = build(options)
    assert len(model.bbox_head.group_makers) == 1
    history = train_iterations(model, cfg, 20, POSE_LOSSES, BRANCHES)
    for branch, *_ in BRANCHES:
        first = mean([h[branch] for h in history[:4]])
        last = mean([h[branch] for h in history[-4:]])
        assert last < 0.7 * first, (branch, [h[branch] for h in history])
