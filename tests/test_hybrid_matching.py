"""Hybrid matching: the mechanism itself and its use by the detection head."""
import pytest
import torch

from conftest import REPO_ROOT, detection_inputs
from test_petr import build_tiny

import opera  # noqa: F401
from opera.models.query_groups import HybridQueryGroups
from opera.models.attention import QueryGroupMask
from opera.models.criteria import SetCriterion

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'


def test_self_attn_mask_blocks_groups_only():
    expected = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1],
                             [1, 1, 0, 0, 0], [1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0]]).bool()
    groups = HybridQueryGroups.hybrid_branch(2, 3, k_one2many=2)
    mask = groups.self_attn_mask(5, torch.device('cpu'))
    assert isinstance(mask, QueryGroupMask) and mask.sizes == (2, 3)
    assert torch.equal(mask.dense(), expected)
    masked_form = HybridQueryGroups.hybrid_branch(2, 3, k_one2many=2,
                                                  split_self_attn=False)
    assert torch.equal(masked_form.self_attn_mask(5, torch.device('cpu')),
                       expected)
    # Only the one-to-one group runs at test time: nothing to block.
    assert groups.self_attn_mask(2, torch.device('cpu')) is None
    assert groups.num_active_queries(training=True) == 5
    assert groups.num_active_queries(training=False) == 2


def test_split_into_groups():
    groups = HybridQueryGroups.hybrid_branch(2, 4, k_one2many=3)
    x = torch.arange(12).view(2, 6)
    one2one, one2many = groups.split(x, dim=1)
    assert one2one.tolist() == [[0, 1], [6, 7]]
    assert one2many.tolist() == [[2, 3, 4, 5], [8, 9, 10, 11]]
    assert len(groups.split(x[:, :2], dim=1)) == 1
    assert torch.equal(groups.test_part(x, dim=1), one2one)


def test_group_losses_scale_one2many_by_lambda():
    """Each group's layer losses, named by layer and group, the one-to-many
    ones times lambda; the one-to-many group is matched with K = 3."""
    groups = HybridQueryGroups.hybrid_branch(
        2, 4, k_one2many=3, lambda_one2many=0.5, num_layers=2)
    calls = []

    class Criterion(SetCriterion):

        def match(self, scores, targets, img_metas, num_repeats):
            calls.append((scores.shape[1], num_repeats))
            return 'matches'

        def layer_losses(self, scores, targets, img_metas, matches):
            assert matches == 'matches'
            # Layer 0 -> 2, layer 1 -> 1 for the one-to-one group; x4 for
            # the one-to-many group (its scores are 4x larger below).
            return dict(loss_cls=scores.sum() / scores.numel()), 3, None

    scores = torch.ones(2, 1, 6)
    scores[0] *= 2
    scores[:, :, 2:] *= 4
    losses, extras = Criterion().query_group_losses((scores, ), None, None,
                                                    groups)
    assert calls == [(2, 1), (2, 1), (4, 3), (4, 3)]
    assert extras == [None, None]
    assert {k: v.item() for k, v in losses.items()} == {
        'd0.loss_cls': 2.0,
        'loss_cls': 1.0,
        'num_matched': 3.0,
        'd0.loss_cls_one2many': 4.0,
        'loss_cls_one2many': 2.0,
        'num_matched_one2many': 3.0
    }


@pytest.mark.parametrize('bad', [
    dict(num_query_one2one=0),
    dict(num_query_one2one=3, num_query_one2many=-1),
    dict(num_query_one2one=3, num_query_one2many=5, k_one2many=0),
])
def test_invalid_groups_are_rejected(bad):
    with pytest.raises(ValueError):
        HybridQueryGroups.hybrid_branch(**bad)


@pytest.fixture(scope='module')
def hybrid_model():
    return build_tiny(TINY_HYBRID)


def head_outputs(model, inputs):
    feats = model.extract_feat(inputs['img'])
    outs = model.bbox_head(feats, inputs['img_metas'])
    return (outs['cls_scores'], outs['bbox_preds'], outs['enc_cls'],
            outs['enc_bbox_preds'])


def head_feats(head, inputs):
    """Random neck-like features for ``inputs`` (stride 8 to 64)."""
    gen = torch.Generator().manual_seed(0)
    h, w = inputs['img'].shape[-2:]
    return [
        torch.randn(2, head.embed_dims, -(-h // stride), -(-w // stride),
                    generator=gen) for stride in (8, 16, 32, 64)
    ]


def record_self_attn_masks(head, module_of):
    """Run the head in training; return the ``attn_mask`` every decoder
    layer's ``module_of(layer)`` was called with."""
    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs.get('attn_mask'))

    handles = [
        module_of(layer).register_forward_pre_hook(record, with_kwargs=True)
        for layer in head.transformer.decoder.layers
    ]
    inputs = detection_inputs([(96, 128), (64, 96)])
    with torch.no_grad():
        head(head_feats(head, inputs), inputs['img_metas'])
    for handle in handles:
        handle.remove()
    return seen


def test_mask_reaches_decoder_self_attention(hybrid_model):
    head = hybrid_model.train().bbox_head
    num_layers = len(head.transformer.decoder.layers)
    # Split form: the groups reach the decoder's self-attention module,
    # which runs torch's attention once per group, unmasked.
    groups = record_self_attn_masks(head, lambda layer: layer.attentions[0])
    assert [mask.sizes for mask in groups] == [(20, 40)] * num_layers
    inner = record_self_attn_masks(head,
                                   lambda layer: layer.attentions[0].attn)
    assert inner == [None] * (2 * num_layers)
    # Masked form: one attention over all 60 queries, with the dense mask.
    head.query_groups.split_self_attn = False
    try:
        dense = record_self_attn_masks(head,
                                       lambda layer: layer.attentions[0].attn)
    finally:
        head.query_groups.split_self_attn = True
    expected = QueryGroupMask((20, 40)).dense()
    assert len(dense) == num_layers
    for mask in dense:
        assert mask is not None, 'self-attention ran without the hybrid mask'
        assert torch.equal(mask, expected)


def test_one2many_queries_do_not_leak_into_one2one(hybrid_model):
    head = hybrid_model.bbox_head
    inputs = detection_inputs([(96, 128), (64, 96)])
    hybrid_model.train()  # all 60 queries; the config has no dropout
    with torch.no_grad():
        cls_a, box_a, _, _ = head_outputs(hybrid_model, inputs)
        original = head.query_embedding.weight.clone()
        head.query_embedding.weight[20:] += 5 * torch.randn(40, 256)
        cls_b, box_b, _, _ = head_outputs(hybrid_model, inputs)
        head.query_embedding.weight.copy_(original)
    torch.testing.assert_close(cls_a[:, :, :20], cls_b[:, :, :20])
    torch.testing.assert_close(box_a[:, :, :20], box_b[:, :, :20])
    assert not torch.allclose(cls_a[:, :, 20:], cls_b[:, :, 20:])


def test_test_time_runs_one2one_only_and_matches_full_run(hybrid_model):
    inputs = detection_inputs([(96, 128), (64, 96)])
    hybrid_model.train()
    with torch.no_grad():
        cls_all, box_all, _, _ = head_outputs(hybrid_model, inputs)
    hybrid_model.eval()
    with torch.no_grad():
        cls_o2o, box_o2o, _, _ = head_outputs(hybrid_model, inputs)
    assert cls_all.shape[2] == 60 and cls_o2o.shape[2] == 20
    torch.testing.assert_close(cls_o2o, cls_all[:, :, :20])
    torch.testing.assert_close(box_o2o, box_all[:, :, :20])


def xyxy_to_normalized_cxcywh(boxes, w, h):
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h,
                        (x2 - x1) / w, (y2 - y1) / h], -1)


def test_branch_losses_are_tiled_and_normalised_per_branch(hybrid_model):
    """Hand-checked L1 losses of both branches.

    Every one-to-one prediction matched to a ground-truth box is off by e in
    each coordinate and every one-to-many prediction by d, so with each
    branch normalised by its own number of targets (N and K*N):
    loss_bbox = 5 * 4e and loss_bbox_one2many = lambda * 5 * 4d, whatever
    N and K. Normalising the tiled branch by N would multiply it by K.
    """
    head = hybrid_model.bbox_head
    head.query_groups.groups[1].loss_weight = 0.5
    k, o2o, o2m, num_layers = 2, 20, 40, 2
    w, h = 128, 96
    gt = torch.tensor([[10., 10., 50., 40.], [60., 20., 100., 80.],
                       [30., 50., 70., 90.]])
    labels = torch.tensor([1, 2, 3])
    target = xyxy_to_normalized_cxcywh(gt, w, h)
    e, d = 0.01, 0.02
    boxes = torch.full((num_layers, 1, o2o + o2m, 4), 0.5)
    boxes[..., 2:] = 0.01  # unmatched queries: tiny boxes far from targets
    boxes[:, 0, :3] = target + e
    boxes[:, 0, o2o:o2o + 3 * k] = target.repeat(k, 1) + d
    logits = torch.full((num_layers, 1, o2o + o2m, 80), -5.0)
    metas = [dict(img_shape=(h, w, 3), batch_input_shape=(h, w))]
    try:
        losses = head.loss(
            dict(cls_scores=logits, bbox_preds=boxes, enc_cls=None,
                 enc_bbox_preds=None),
            dict(gt_bboxes=[gt], gt_labels=[labels]), metas)
    finally:
        head.query_groups.groups[1].loss_weight = 1.0
    torch.testing.assert_close(losses['loss_bbox'], torch.tensor(5 * 4 * e))
    torch.testing.assert_close(losses['loss_bbox_one2many'],
                               torch.tensor(0.5 * 5 * 4 * d))
    torch.testing.assert_close(losses['d0.loss_bbox_one2many'],
                               torch.tensor(0.5 * 5 * 4 * d))
    assert 'enc_loss_cls' not in losses  # no encoder outputs given here


def test_empty_images_train_without_nan(hybrid_model):
    inputs = detection_inputs([(96, 128), (64, 96)], num_boxes=(0, 2))
    hybrid_model.train()
    hybrid_model.zero_grad()
    losses = hybrid_model.forward_train(**inputs)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert torch.isfinite(total)
    assert 'enc_loss_cls' in losses and 'enc_loss_cls_one2many' not in losses
    assert 'loss_cls_one2many' in losses
    for p in hybrid_model.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()
