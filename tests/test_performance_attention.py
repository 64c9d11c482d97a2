"""Decoder self-attention per query group equals the masked attention.

Also: the per-group module is a drop-in for mmcv's ``MultiheadAttention``
(same parameters), both heads run it through ``HybridQueryGroups``, and in
eval mode no training-only branch runs.
"""
import os.path as osp

import pytest
import torch
from mmcv import Config
from mmcv.cnn.bricks.transformer import \
    MultiheadAttention as MMCVMultiheadAttention

from conftest import REPO_ROOT, detection_inputs, pose_inputs
from test_petr import build_tiny

import opera  # noqa: F401
from opera.models import build_detector
from opera.models.attention import MultiheadAttention, QueryGroupMask

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = osp.join(REPO_ROOT, 'tests', 'configs',
                       'tiny_h_deformable_detr.py')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')


def test_query_group_mask_dense_and_split():
    groups = QueryGroupMask((2, 1, 3))
    dense = groups.dense()
    assert dense.shape == (6, 6) and dense.dtype == torch.bool
    same_group = torch.tensor([0, 0, 1, 2, 2, 2])
    assert torch.equal(dense, same_group[:, None] != same_group[None, :])
    parts = groups.split(torch.arange(12).view(2, 6), dim=1)
    assert [p.tolist() for p in parts] == [[[0, 1], [6, 7]], [[2], [8]],
                                           [[3, 4, 5], [9, 10, 11]]]
    with pytest.raises(ValueError, match='covers 6 queries'):
        groups.split(torch.zeros(5, 2), dim=0)
    with pytest.raises(ValueError, match='positive sizes'):
        QueryGroupMask((3, 0))


@pytest.mark.parametrize('batch_first', [False, True])
def test_split_attention_equals_masked_attention(batch_first):
    torch.manual_seed(0)
    attention = MultiheadAttention(
        embed_dims=32, num_heads=4, batch_first=batch_first)
    reference = MMCVMultiheadAttention(
        embed_dims=32, num_heads=4, batch_first=batch_first)
    # Same parameter names: mmcv checkpoints load as they are.
    reference.load_state_dict(attention.state_dict(), strict=True)
    groups = QueryGroupMask((3, 7))
    shape = (2, 10, 32) if batch_first else (10, 2, 32)
    query, query_pos = torch.randn(shape), torch.randn(shape)
    padding = torch.zeros(2, 10, dtype=torch.bool)
    padding[1, [2, 8, 9]] = True  # keys blocked within both groups

    split = attention(
        query, query, query, query_pos=query_pos, key_pos=query_pos,
        attn_mask=groups, key_padding_mask=padding)
    masked = attention(
        query, query, query, query_pos=query_pos, key_pos=query_pos,
        attn_mask=groups.dense(), key_padding_mask=padding)
    mmcv_masked = reference(
        query, query, query, query_pos=query_pos, key_pos=query_pos,
        attn_mask=groups.dense(), key_padding_mask=padding)
    torch.testing.assert_close(split, masked)
    torch.testing.assert_close(split, mmcv_masked)
    # The groups really are independent: changing the second group's
    # queries leaves the first group's outputs as they are.
    seq = 1 if batch_first else 0
    changed = query.clone()
    changed.narrow(seq, 3, 7).add_(1.0)
    again = attention(changed, query_pos=query_pos, attn_mask=groups,
                      key_padding_mask=padding)
    first, second = (lambda x: x.narrow(seq, 0, 3)), (
        lambda x: x.narrow(seq, 3, 7))
    torch.testing.assert_close(first(again), first(split))
    assert not torch.allclose(second(again), second(split))


def test_group_mask_is_for_self_attention_only():
    attention = MultiheadAttention(embed_dims=8, num_heads=2)
    with pytest.raises(ValueError, match='self-attention'):
        attention(torch.randn(5, 1, 8), torch.randn(4, 1, 8),
                  attn_mask=QueryGroupMask((2, 3)))


def train_outputs(model, inputs):
    """Head outputs of all query groups (the tiny configs have no dropout)."""
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = tuple(inputs['img'].shape[-2:])
    with torch.no_grad():
        return model.train().bbox_head(
            model.extract_feat(inputs['img']), inputs['img_metas'])


def test_detection_decoder_split_equals_masked():
    inputs = detection_inputs([(96, 128), (64, 96)])
    split = train_outputs(build_tiny(TINY_HYBRID), inputs)
    masked = train_outputs(
        build_tiny(TINY_HYBRID, split_self_attn=False), inputs)
    assert split['cls_scores'].shape[2] == 60  # 20 one-to-one + 40 o2m
    for name in ('cls_scores', 'bbox_preds', 'enc_cls', 'enc_bbox_preds'):
        torch.testing.assert_close(split[name], masked[name])


def test_pose_decoder_split_equals_masked():
    inputs = pose_inputs([(128, 128), (128, 96)])
    split = train_outputs(build_tiny(TINY_H_PETR), inputs)
    masked = train_outputs(
        build_tiny(TINY_H_PETR, split_self_attn=False), inputs)
    assert split['poses'].shape[2] == 30  # 10 one-to-one + 20 one-to-many
    for name in ('states', 'cls_scores', 'poses', 'hm_logits'):
        torch.testing.assert_close(split[name], masked[name])


def test_split_form_needs_the_group_attention_in_the_config():
    cfg = Config.fromfile(TINY_HYBRID)
    self_attn = cfg.model.bbox_head.transformer.decoder.transformerlayers[
        'attn_cfgs'][0]
    self_attn['type'] = 'MultiheadAttention'  # mmcv's: no query groups
    with pytest.raises(TypeError, match='opera.MultiheadAttention'):
        build_detector(cfg.model)
    cfg.model.bbox_head.split_self_attn = False
    head = build_detector(cfg.model).bbox_head
    assert head.query_groups.split_self_attn is False


def test_pose_eval_runs_no_training_only_branch():
    model = build_tiny(TINY_H_PETR)
    transformer = model.bbox_head.transformer
    calls = []
    for name in ('hm_encoder', 'encoder'):
        getattr(transformer, name).register_forward_hook(
            lambda module, args, out, name=name: calls.append(name))
    model.bbox_head.fc_hm.register_forward_hook(
        lambda module, args, out: calls.append('fc_hm'))
    inputs = pose_inputs([(128, 128)])
    train = train_outputs(model, inputs)
    assert calls == ['encoder', 'hm_encoder', 'fc_hm']
    assert train['hm_logits'].shape == (1, 17, 16, 16)

    calls.clear()
    model.eval()
    with torch.no_grad():
        outputs = model.bbox_head(
            model.extract_feat(inputs['img']), inputs['img_metas'])
        model.simple_test(inputs['img'], inputs['img_metas'])
    assert calls == ['encoder', 'encoder']  # no heatmap branch
    assert outputs['hm_logits'] is None
    assert outputs['poses'].size(2) == 10  # the one-to-one queries only
