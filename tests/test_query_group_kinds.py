"""Query groups beyond Hungarian matching: one-way self-attention, groups
with given targets, one vocabulary for the hybrid branch, the epoch call."""
import logging

import pytest
import torch

import opera  # noqa: F401
from opera.apis.hooks import QueryGroupScheduleHook
from opera.models.criteria import SetCriterion
from opera.models.query_groups import HybridQueryGroups, build_query_groups
from opera.models.attention import MultiheadAttention, QueryGroupMask
from opera.models.query_groups.fixed_target_groups import (FixedTargetGroup,
                                                           GroundTruthQueries)

pytestmark = pytest.mark.usefixtures('single_thread')


class Queries:
    """The part of DecoderQueries a FixedTargetGroup reads."""

    def __init__(self, bs, num):
        self.reference = torch.zeros(bs, num, 4)
        self.num_queries = num


def fixed_group(num, sees_matching, bs=1, name='gt'):
    matches = [(torch.arange(1), torch.arange(1))] * bs
    return FixedTargetGroup(
        Queries(bs, num), matches, name, sees_matching=sees_matching)


def test_one_way_mask_by_hand():
    # Groups 0 (2 queries) and 1 (1) see themselves; group 2 (2) also
    # sees group 0, which does not see it back.
    mask = QueryGroupMask([2, 1, 2], sees=[(), (), (0, )])
    blocked = torch.tensor([[0, 0, 1, 1, 1],
                            [0, 0, 1, 1, 1],
                            [1, 1, 0, 1, 1],
                            [0, 0, 1, 0, 0],
                            [0, 0, 1, 0, 0]]).bool()
    assert torch.equal(mask.dense(), blocked)
    with pytest.raises(ValueError, match='group 1 sees'):
        QueryGroupMask([2, 1], sees=[(), (1, )])
    with pytest.raises(ValueError, match='one entry per group'):
        QueryGroupMask([2, 1], sees=[()])


def attention_outputs(mask, query, query_pos):
    torch.manual_seed(0)
    attention = MultiheadAttention(embed_dims=8, num_heads=2).eval()
    return attention(query, query_pos=query_pos, attn_mask=mask)


def test_one_way_attention_split_equals_dense_and_is_one_way():
    """Per-group attention with a group that sees another one way equals
    the dense masked attention; perturbing the seeing group leaves the
    seen group's outputs as they were, perturbing the seen group changes
    the seeing group's."""
    mask = QueryGroupMask([3, 2, 4], sees=[(), (), (0, )])
    gen = torch.Generator().manual_seed(1)
    query = torch.randn(9, 2, 8, generator=gen)
    query_pos = torch.randn(9, 2, 8, generator=gen)
    with torch.no_grad():
        split = attention_outputs(mask, query, query_pos)
        dense = attention_outputs(mask.dense(), query, query_pos)
        torch.testing.assert_close(split, dense, rtol=1e-5, atol=1e-6)

        seeing_changed = query.clone()
        seeing_changed[5:] += 1.0
        after = attention_outputs(mask, seeing_changed, query_pos)
        assert torch.equal(after[:5], split[:5])

        seen_changed = query.clone()
        seen_changed[:3] += 1.0
        after = attention_outputs(mask, seen_changed, query_pos)
        assert not torch.allclose(after[5:], split[5:])
        # Group 1 sees neither: unchanged by either perturbation.
        assert torch.equal(after[3:5], split[3:5])


def test_fixed_target_groups_join_the_mask_and_the_split():
    groups = HybridQueryGroups.hybrid_branch(2, 3, k_one2many=2)
    extra = [fixed_group(4, sees_matching=True),
             fixed_group(1, sees_matching=False, name='aux')]
    mask = groups.self_attn_mask(5, torch.device('cpu'), extra)
    assert mask.sizes == (2, 3, 4, 1)
    assert mask.sees == ((), (), (0, 1), ())
    # At test time only the one-to-one group runs: no mask.
    assert groups.self_attn_mask(2, torch.device('cpu')) is None
    # One matching group and a fixed group: the fixed group is kept apart.
    mask = groups.self_attn_mask(2, torch.device('cpu'), extra[:1])
    assert mask.sizes == (2, 4) and mask.sees == ((), (0, ))

    x = torch.arange(10).view(1, 10)
    parts = groups.split(x, 1, extra)
    assert [p.tolist() for p in parts] == [[[0, 1]], [[2, 3, 4]],
                                           [[5, 6, 7, 8]], [[9]]]


def test_blocks_of_a_fixed_group_do_not_see_each_other():
    groups = HybridQueryGroups.hybrid_branch(2)
    denoising = FixedTargetGroup(
        Queries(1, 6), [(torch.arange(1), torch.arange(1))], 'dn',
        sees_matching=True, num_blocks=3)
    assert denoising.block_sizes == [2, 2, 2]
    mask = groups.self_attn_mask(2, torch.device('cpu'), [denoising])
    assert mask.sizes == (2, 2, 2, 2)
    assert mask.sees == ((), (0, ), (0, ), (0, ))
    blocked = mask.dense()
    # Block 1 (queries 4, 5) sees itself and the matching queries only.
    assert blocked[4].tolist() == [False, False, True, True, False, False,
                                   True, True]
    assert blocked[:2, 2:].all()
    with pytest.raises(ValueError, match='do not make 4 equal blocks'):
        FixedTargetGroup(Queries(1, 6), [(torch.arange(1), ) * 2], 'dn',
                         num_blocks=4)


def test_fixed_group_adds_its_own_losses_once():
    groups = HybridQueryGroups.hybrid_branch(1, num_layers=2)

    class Criterion(SetCriterion):
        def match(self, preds, targets, img_metas, num_repeats):
            return [(torch.arange(1), torch.arange(1))]

        def layer_losses(self, preds, targets, img_metas, matches):
            return dict(loss_x=preds.sum()), 1, None

    auxiliary = FixedTargetGroup(
        Queries(1, 2), [(torch.arange(1), torch.arange(1))], 'aux',
        losses=dict(loss_rpn=torch.tensor(7.)))
    preds = torch.ones(2, 1, 3)  # layers, bs, 1 matching + 2 group queries
    losses, _ = Criterion().query_group_losses(
        (preds, ), dict(gt_labels=[torch.zeros(1)]), [{}], groups,
        [auxiliary])
    assert losses['loss_rpn'].item() == 7.
    assert losses['loss_x_aux'].item() == 2. and losses['loss_x'].item() == 1.
    clash = FixedTargetGroup(
        Queries(1, 2), [(torch.arange(1), torch.arange(1))], 'aux',
        losses=dict(loss_x=torch.tensor(7.)))
    with pytest.raises(ValueError, match=r"names its own losses \['loss_x'\]"):
        Criterion().query_group_losses(
            (preds, ), dict(gt_labels=[torch.zeros(1)]), [{}], groups,
            [clash])


def test_fixed_target_group_checks_its_pairs():
    with pytest.raises(ValueError, match='2 match lists for 1 images'):
        FixedTargetGroup(Queries(1, 3), [(torch.arange(1), ) * 2] * 2, 'gt')
    with pytest.raises(ValueError, match='address the 3 queries'):
        FixedTargetGroup(Queries(1, 3), [(torch.tensor([3]), ) * 2], 'gt')
    with pytest.raises(ValueError, match='address the 3 queries'):
        FixedTargetGroup(Queries(1, 3), [(torch.tensor([-1]), ) * 2], 'gt')
    # A negative target index would wrap around to the last object.
    group = FixedTargetGroup(
        Queries(1, 3), [(torch.tensor([0]), torch.tensor([-1]))], 'gt')
    batch = dict(gt_labels=[torch.zeros(2)])
    with pytest.raises(ValueError, match=r'target indices \[-1\] outside'):
        group.targets_of(batch)
    group = FixedTargetGroup(
        Queries(1, 3), [(torch.tensor([0]), torch.tensor([2]))], 'gt')
    with pytest.raises(ValueError, match="outside the image's 2 targets"):
        group.targets_of(batch)
    assert group.targets_of(dict(gt_labels=[torch.zeros(3)]))['gt_labels']
    with pytest.raises(ValueError, match='needs a name'):
        FixedTargetGroup(Queries(1, 3), [(torch.arange(1), ) * 2], '')


def test_hybrid_branch_shorthand_is_expanded_in_one_place():
    shorthand = build_query_groups(
        300,
        hybrid_branch_keys=dict(
            num_query_one2many=1500, k_one2many=6, lambda_one2many=0.5))
    explicit = build_query_groups(300, [
        dict(num_queries=300, at_test=True),
        dict(num_queries=1500, num_repeats=6, loss_weight=0.5,
             name='one2many')
    ])
    assert repr(shorthand.groups) == repr(explicit.groups)
    with pytest.raises(TypeError, match='needs k_one2many'):
        build_query_groups(300, hybrid_branch_keys=dict(num_query_one2many=9))
    with pytest.raises(TypeError,
                       match="unexpected keyword argument 'k_one2man'"):
        build_query_groups(300, hybrid_branch_keys=dict(k_one2man=6))
    with pytest.raises(ValueError, match='num_query_one2many=9'):
        build_query_groups(
            300, [dict(num_queries=300, at_test=True)],
            hybrid_branch_keys=dict(num_query_one2many=9))


def test_layer_count_comes_from_the_decoder():
    groups = build_query_groups(
        4, [dict(num_queries=4, at_test=True, num_repeats=[2, 2, 1])])
    assert groups.num_layers is None

    class Decoder:
        num_layers = 3
        layers = ()

    groups.bind_decoder(Decoder())
    assert groups.num_repeats(groups.groups[0]) == (2, 2, 1)
    Decoder.num_layers = 2
    wrong = build_query_groups(
        4, [dict(num_queries=4, at_test=True, num_repeats=[2, 2, 1])])
    with pytest.raises(ValueError, match='one int >= 1 per decoder layer'):
        wrong.bind_decoder(Decoder())


class Runner:

    def __init__(self, model, epoch):
        self.model, self.epoch = model, epoch
        self.logger = logging.getLogger('test_query_group_kinds')


def test_schedule_hook_calls_the_detector_set_epoch(caplog):
    calls = []

    class Detector(torch.nn.Module):

        def set_epoch(self, epoch):
            calls.append(epoch)
            return 'K 10' if epoch < 2 else 'K 1'

    hook = QueryGroupScheduleHook()
    with caplog.at_level(logging.INFO, logger='test_query_group_kinds'):
        for epoch in (0, 0, 1, 2, 2):
            hook.before_train_iter(Runner(Detector(), epoch))
    assert calls == [0, 0, 1, 2, 2]
    assert [r.message for r in caplog.records] == [
        'query groups at epoch 1: K 10', 'query groups at epoch 3: K 1'
    ]
    # A model without set_epoch is left alone.
    hook.before_train_iter(Runner(torch.nn.Linear(1, 1), 0))


def test_ground_truth_queries_need_a_box_transformer():
    maker = GroundTruthQueries(num_classes=2, embed_dims=8)

    class PoseTransformer:
        pass

    targets = dict(gt_bboxes=[torch.zeros(1, 4)], gt_labels=[torch.zeros(1)])
    with pytest.raises(TypeError, match='queries_from_boxes'):
        maker(PoseTransformer(), None, None, targets, [dict()])
