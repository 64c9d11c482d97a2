"""The transformers' three stages (issue 24): ``encode`` -> ``pre_decoder``
-> ``forward_decoder``, the :class:`DecoderQueries` hand-off between the
last two, ``queries_from_boxes``, and the refinement loop both decoders
share (``run_refining_layers``)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmcv import Config
from mmcv.cnn.bricks.transformer import build_transformer_layer
from mmdet.models.utils.transformer import inverse_sigmoid

from conftest import REPO_ROOT, detection_inputs, pose_inputs

import opera  # noqa: F401
from opera.models import build_detector
from opera.models.attention import QueryGroupMask
from opera.models.transformers.decoder_queries import DecoderQueries
from opera.models.transformers.deformable_encoder import memory_inputs
from opera.models.transformers.padding import masks_and_positions
from opera.models.transformers.refine import (run_refining_layers,
                                              scale_by_valid_ratios,
                                              self_attention_masks)

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = osp.join(REPO_ROOT, 'tests', 'configs',
                       'tiny_h_deformable_detr.py')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')


def built_and_encoded(path, inputs):
    """The config's model in eval mode, and its encoder stage on
    ``inputs``.

    Returns:
        tuple: The model, and its head transformer's input and encoder
        output: feats, masks, positions, memory [bs, S, c], levels.
    """
    torch.manual_seed(0)
    model = build_detector(Config.fromfile(path).model)
    model.init_weights()
    model.eval()
    head = model.bbox_head
    with torch.no_grad():
        feats = model.extract_feat(inputs['img'])
        masks, positions = masks_and_positions(feats, inputs['img_metas'],
                                               head.positional_encoding)
        memory, levels = head.transformer.encode(feats, masks, positions)
    return model, (feats, masks, positions, memory, levels)


@pytest.fixture(scope='module')
def detection():
    return built_and_encoded(
        TINY_HYBRID, detection_inputs([(96, 128), (80, 112)], seed=1))


@pytest.fixture(scope='module')
def pose():
    return built_and_encoded(TINY_H_PETR,
                             pose_inputs([(96, 128), (80, 112)], seed=1))


def test_decoder_queries_cat_in_order_and_names_a_mismatch():
    first = DecoderQueries(
        torch.arange(24.).view(2, 3, 4),
        -torch.arange(24.).view(2, 3, 4),
        torch.rand(2, 3, 4))
    second = DecoderQueries(
        torch.full((2, 2, 4), 7.), torch.full((2, 2, 4), 8.),
        torch.full((2, 2, 4), 0.5))
    both = first.cat(second)
    assert (first.num_queries, second.num_queries, both.num_queries) == (3, 2,
                                                                         5)
    assert both.content.shape == both.position.shape == (2, 5, 4)
    assert torch.equal(both.content[:, :3], first.content)
    assert torch.equal(both.position[:, 3:], second.position)
    assert torch.equal(both.reference,
                       torch.cat([first.reference, second.reference], 1))
    with pytest.raises(ValueError, match='group 2 has bs=1, the first group '
                       'bs=2'):
        first.cat(second,
                  DecoderQueries(*(torch.zeros(1, 2, 4), ) * 2,
                                 torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match='group 1 has c=8'):
        first.cat(DecoderQueries(*(torch.zeros(2, 2, 8), ) * 2,
                                 torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match='group 1 has R=2'):
        first.cat(DecoderQueries(*(torch.zeros(2, 2, 4), ) * 2,
                                 torch.zeros(2, 2, 2)))
    with pytest.raises(ValueError, match=r'must be \[bs, n, R\]'):
        DecoderQueries(*(torch.zeros(2, 3, 4), ) * 2, torch.zeros(2, 2, 4))


def test_references_scale_by_valid_ratios_per_level():
    # One image, two levels: (w, h) valid fractions (0.5, 0.25), (1, 0.75).
    ratios = torch.tensor([[[0.5, 0.25], [1.0, 0.75]]])
    four = torch.tensor([[[0.2, 0.4, 0.6, 0.8]]])
    expected = torch.tensor([[[[0.1, 0.1, 0.3, 0.2], [0.2, 0.3, 0.6, 0.6]]]])
    # A box (cx, cy, w, h) and a pose of K = 2 keypoints scale alike.
    assert torch.allclose(scale_by_valid_ratios(four, ratios), expected)
    assert torch.allclose(
        scale_by_valid_ratios(four[..., :2], ratios), expected[..., :2])
    with pytest.raises(ValueError, match='pairs'):
        scale_by_valid_ratios(torch.rand(1, 1, 3), ratios)


@pytest.mark.parametrize('order,expected', [
    (('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm'), 0),
    (('cross_attn', 'norm', 'self_attn', 'norm', 'ffn', 'norm'), 1),
])
def test_self_attention_mask_goes_where_the_layer_self_attends(
        order, expected):
    layer = build_transformer_layer(
        dict(
            type='BaseTransformerLayer',
            attn_cfgs=dict(type='MultiheadAttention', embed_dims=8,
                           num_heads=2),
            ffn_cfgs=dict(embed_dims=8, feedforward_channels=16),
            operation_order=order))
    mask = torch.ones(3, 3, dtype=torch.bool)
    masks = self_attention_masks(layer, mask)
    assert len(masks) == 2 and masks[expected] is mask
    assert masks[1 - expected] is None
    assert self_attention_masks(layer, None) == [None, None]


def test_refinement_loop_moves_references_in_logit_space(detection):
    """Branches with zero weights and bias 0.5 move every coordinate by 0.5
    in logit space per layer, whatever the states."""
    model, (_, _, _, memory, levels) = detection
    transformer = model.bbox_head.transformer
    queries, _, _ = transformer.pre_decoder(
        memory, levels, model.bbox_head.query_embedding.weight[:20], 20,
        reg_branches=model.bbox_head.reg_branches,
        cls_branches=model.bbox_head.cls_branches)
    branches = nn.ModuleList(nn.Linear(256, 4) for _ in range(2))
    for branch in branches:
        nn.init.zeros_(branch.weight)
        nn.init.constant_(branch.bias, 0.5)
    start = queries.reference
    for attached in (True, False):
        outputs, references, last = run_refining_layers(
            transformer.decoder.layers,
            reference=start,
            branches=branches,
            attached=attached,
            **queries.sequence_first(),
            **memory_inputs(memory, levels))
        assert len(outputs) == len(references) == 2
        assert outputs[0].shape == (20, 2, 256)
        for index, reference in enumerate(references):
            moved = (inverse_sigmoid(start) + 0.5 * (index + 1)).sigmoid()
            assert torch.allclose(reference, moved, atol=1e-6)
            assert (reference.grad_fn is not None) == attached
        assert torch.equal(last, references[-1].detach())
        assert last.grad_fn is None
    with pytest.raises(TypeError, match='self_attn_mask='):
        transformer.decoder(
            reference_points=start,
            attn_masks=[None, None],
            **queries.sequence_first(),
            **memory_inputs(memory, levels))


def test_queries_from_boxes_match_the_two_stage_proposals(detection):
    model, (_, _, _, memory, levels) = detection
    head = model.bbox_head
    transformer = head.transformer
    assert transformer.query_embed_dims == 256  # mixed selection
    query_embed = head.query_embedding.weight[:20]
    queries, enc_cls, enc_coord = transformer.pre_decoder(
        memory, levels, query_embed, 20, reg_branches=head.reg_branches,
        cls_branches=head.cls_branches)
    assert queries.reference.shape == (2, 20, 4)
    assert enc_cls.shape[:2] == enc_coord.shape[:2] == memory.shape[:2]
    # The references are the top-scored encoder boxes, best first.
    top = enc_cls[..., 0].topk(20, dim=1)[1]
    assert torch.equal(
        queries.reference,
        enc_coord.gather(1, top[..., None].expand(-1, -1, 4)).sigmoid())
    assert torch.equal(queries.content[1], query_embed)
    again = transformer.queries_from_boxes(queries.reference,
                                           queries.content)
    assert torch.equal(again.reference, queries.reference)
    assert again.content is queries.content
    # The proposals' positions are made from their logits, these from the
    # boxes: the same up to sigmoid(logit(b)) rounding, also for the boxes
    # at 1 (invalid proposals, infinite logits, ranked high at init).
    assert (queries.reference == 1).any()
    assert torch.allclose(again.position, queries.position, rtol=0,
                          atol=1e-6)
    assert not torch.equal(again.position[:, 0], again.position[:, 1])


def test_pose_stages_make_and_decode_pose_queries(pose):
    model, (feats, masks, positions, memory, levels) = pose
    head = model.bbox_head
    transformer = head.transformer
    query_embed = head.query_embedding.weight[:10]
    queries, enc_cls, enc_poses = transformer.pre_decoder(
        memory, levels, query_embed, 10, kpt_branches=head.kpt_branches,
        cls_branches=head.cls_branches)
    # Position and content: the two halves of the query embedding.
    c = head.embed_dims
    assert torch.equal(queries.position[1], query_embed[:, :c])
    assert torch.equal(queries.content[0], query_embed[:, c:])
    assert queries.reference.shape == (2, 10, 2 * head.num_keypoints)
    assert enc_cls.shape[:2] == enc_poses.shape[:2] == memory.shape[:2]
    states, poses = transformer.forward_decoder(queries, memory, levels,
                                                head.kpt_branches)
    assert states.shape[:3] == poses.shape[:3] == (
        transformer.decoder.num_layers, 2, 10)
    boxes = DecoderQueries(queries.content, queries.position,
                           queries.reference[..., :4])
    with pytest.raises(ValueError, match='num_keypoints=17'):
        transformer.forward_decoder(boxes, memory, levels, head.kpt_branches)


@pytest.mark.parametrize('dense', [False, True])
def test_a_group_added_between_the_stages_is_decoded_apart(detection, dense):
    """Queries made from boxes join the matching queries after
    ``pre_decoder``; kept apart in self-attention, they leave the matching
    queries' outputs as they were, and are decoded themselves."""
    model, (_, _, _, memory, levels) = detection
    head = model.bbox_head
    transformer = head.transformer
    queries, _, _ = transformer.pre_decoder(
        memory, levels, head.query_embedding.weight[:20], 20,
        reg_branches=head.reg_branches, cls_branches=head.cls_branches)
    alone, alone_refs = transformer.forward_decoder(queries, memory, levels,
                                                    head.reg_branches)
    gen = torch.Generator().manual_seed(0)
    boxes = torch.rand(2, 5, 4, generator=gen) * 0.5 + 0.25
    content = torch.randn(2, 5, 256, generator=gen)
    mask = QueryGroupMask([20, 5])
    mask = mask.dense() if dense else mask

    def decode(extra_boxes):
        group = transformer.queries_from_boxes(extra_boxes, content)
        return transformer.forward_decoder(
            queries.cat(group), memory, levels, head.reg_branches,
            self_attn_mask=mask)

    states, references = decode(boxes)
    assert states.shape == (2, 2, 25, 256)
    assert references.shape == (2, 2, 25, 4)
    assert torch.allclose(states[:, :, :20], alone, atol=1e-5)
    assert torch.allclose(references[:, :, :20], alone_refs, atol=1e-6)
    moved, _ = decode(boxes.flip(1))
    assert torch.allclose(moved[:, :, :20], states[:, :, :20], atol=1e-5)
    assert not torch.allclose(moved[:, :, 20:], states[:, :, 20:])
