"""DINO's contrastive denoising group, checked by hand: the noise bands,
the label flips, the queries of a batch, the attention mask and the
losses, on the tiny DINO."""
import pytest
import torch
from mmdet.core import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh

from conftest import REPO_ROOT, detection_inputs, targets_of
from test_petr import build_tiny

import opera  # noqa: F401
from opera.models.query_groups.denoising import (ContrastiveDenoisingQueries,
                                                 noised_boxes, noised_labels)

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_DINO = f'{REPO_ROOT}/tests/configs/tiny_dino.py'
NUM_MATCHING = 30
L1_WEIGHT = 5.0  # loss_bbox of the recipe


class BoxQueries:
    """Records what a maker hands to ``queries_from_boxes``."""

    reference_kind = 'box'

    def queries_from_boxes(self, boxes, content):
        from opera.models.transformers import DecoderQueries
        return DecoderQueries(content, None, boxes)


def inputs(num_boxes=(3, 1), seed=0):
    data = detection_inputs([(128, 160), (96, 128)], num_boxes=num_boxes,
                            seed=seed)
    return data, targets_of(data)


def normalised(boxes, meta):
    h, w = meta['img_shape'][:2]
    return bbox_xyxy_to_cxcywh(boxes / boxes.new_tensor([w, h, w, h]))


def test_positives_in_the_inner_band_negatives_between_the_bands():
    torch.manual_seed(0)
    rows = 4000
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.3]]).repeat(rows, 1)
    negative = torch.arange(rows) % 2 == 1
    scale = 0.4
    moved = bbox_cxcywh_to_xyxy(noised_boxes(boxes, negative, scale)) - \
        bbox_cxcywh_to_xyxy(boxes)
    # In units of scale x half the box's width (x) / height (y).
    band = (moved / (torch.tensor([0.1, 0.15, 0.1, 0.15]) * scale)).abs()
    eps = 1e-4
    assert band[~negative].max() < 1 + eps
    assert band[negative].min() > 1 - eps and band[negative].max() < 2 + eps
    # Both bands are covered, on both sides.
    assert band[~negative].min() < 0.01 and band[negative].max() > 1.99
    assert (moved[~negative] > 0).float().mean().item() == pytest.approx(
        0.5, abs=0.03)
    # No noise: the boxes as they were.
    assert torch.equal(noised_boxes(boxes, negative, 0.0), boxes)


def test_label_flips_at_half_the_ratio():
    torch.manual_seed(0)
    labels = torch.full((20000, ), 3)
    flipped = noised_labels(labels, 80, 0.5) != labels
    # Drawn with probability 0.5 x 0.5, a drawn label keeps its class with
    # probability 1 / 80.
    assert flipped.float().mean().item() == pytest.approx(
        0.25 * 79 / 80, abs=0.01)
    assert torch.equal(noised_labels(labels, 80, 0.0), labels)


def test_queries_of_a_batch_by_hand():
    data, targets = inputs((3, 1))
    maker = ContrastiveDenoisingQueries(
        80, 8, dn_number=10, box_noise_scale=0., label_noise_ratio=0.)
    group = maker(BoxQueries(), None, None, targets, data['img_metas'])
    # 10 // 3 = 3 groups, each a positive and a negative block of 3.
    assert group.num_queries == 18 and group.num_blocks == 3
    assert group.sees_matching and group.name == 'dn'
    query_inds, target_inds = group.matches[0]
    assert query_inds.tolist() == [0, 1, 2, 6, 7, 8, 12, 13, 14]
    assert target_inds.tolist() == [0, 1, 2] * 3
    query_inds, target_inds = group.matches[1]
    assert query_inds.tolist() == [0, 6, 12] and target_inds.tolist() == [0] * 3
    reference, content = group.queries.reference, group.queries.content
    for img, count in enumerate((3, 1)):
        boxes = normalised(data['gt_bboxes'][img], data['img_metas'][img])
        embedded = maker.label_embedding(data['gt_labels'][img])
        for block in range(6):  # positive and negative copies alike
            rows = slice(3 * block, 3 * block + count)
            torch.testing.assert_close(reference[img, rows], boxes)
            torch.testing.assert_close(content[img, rows], embedded)
            padding = slice(3 * block + count, 3 * block + 3)
            assert (reference[img, padding] == 0.5).all()
            assert (content[img, padding] == 0).all()
    # Fewer groups for a batch with more objects; at least one.
    data, targets = inputs((12, 2))
    group = maker(BoxQueries(), None, None, targets, data['img_metas'])
    assert group.num_blocks == 1 and group.num_queries == 24


def test_batch_without_objects_gives_no_queries():
    data, targets = inputs((0, 0))
    maker = ContrastiveDenoisingQueries(80, 8, dn_number=10)
    group = maker(BoxQueries(), None, None, targets, data['img_metas'])
    assert group.num_queries == 0
    assert [q.numel() for q, _ in group.matches] == [0, 0]


@pytest.fixture(scope='module')
def dino():
    return build_tiny(TINY_DINO).train()


def head_outputs(model, data, targets=None):
    feats = model.extract_feat(data['img'])
    return model.bbox_head(feats, data['img_metas'], targets)


def test_dino_denoising_group_in_the_decoder(dino):
    data, targets = inputs((3, 1))
    head = dino.bbox_head
    with torch.no_grad():
        plain = head_outputs(dino, data)
        torch.manual_seed(1)
        outputs = head_outputs(dino, data, targets)
        losses = head.loss(outputs, targets, data['img_metas'])
    (group, ) = outputs['fixed_groups']
    assert outputs['bbox_preds'].shape[2] == NUM_MATCHING + 18
    # Matching queries never see the denoising ones; blocks not each other.
    mask = head.query_groups.self_attn_mask(NUM_MATCHING, None, [group])
    assert mask.sizes == (NUM_MATCHING, 6, 6, 6)
    assert mask.sees == ((), (0, ), (0, ), (0, ))
    for name in ('cls_scores', 'bbox_preds'):
        torch.testing.assert_close(
            outputs[name][:, :, :NUM_MATCHING], plain[name], rtol=0,
            atol=1e-5)
    # The group's L1 loss: each object's positive queries against its box.
    last = outputs['bbox_preds'][-1, :, NUM_MATCHING:]
    total = 0.
    for img, (query_inds, target_inds) in enumerate(group.matches):
        boxes = normalised(data['gt_bboxes'][img], data['img_metas'][img])
        total += (last[img, query_inds] - boxes[target_inds]).abs().sum()
    torch.testing.assert_close(losses['loss_bbox_dn'],
                               L1_WEIGHT * total / 12)
    assert losses['num_matched_dn'].item() == 12
    # Negatives and padding are background: their class targets.
    labels = torch.full((2, 18), head.num_classes)
    for img, (query_inds, target_inds) in enumerate(group.matches):
        labels[img, query_inds] = data['gt_labels'][img][target_inds]
    scores = outputs['cls_scores'][-1, :, NUM_MATCHING:]
    torch.testing.assert_close(
        losses['loss_cls_dn'].reshape(()),
        head.criterion.loss_cls(
            scores.reshape(36, -1), labels.flatten(), avg_factor=12.0))
    assert {'enc_loss_cls', 'loss_cls', 'd0.loss_iou_dn'} <= set(losses)


def test_dino_batch_without_objects_keeps_its_losses(dino):
    data, targets = inputs((0, 0))
    head = dino.bbox_head
    with torch.no_grad():
        outputs = head_outputs(dino, data, targets)
        losses = head.loss(outputs, targets, data['img_metas'])
        makers = head.group_makers
        head.group_makers = torch.nn.ModuleList()
        try:
            without = head.loss(head_outputs(dino, data, targets), targets,
                                data['img_metas'])
        finally:
            head.group_makers = makers
    assert outputs['bbox_preds'].shape[2] == NUM_MATCHING
    for name, value in without.items():
        torch.testing.assert_close(losses[name], value)
    extra = set(losses) - set(without)
    assert extra == {f'{prefix}{name}_dn' for prefix in ('', 'd0.')
                     for name in ('loss_cls', 'loss_bbox', 'loss_iou')
                     } | {'num_matched_dn'}
    assert all(losses[name].item() == 0 for name in extra)


def test_dino_test_outputs_do_not_depend_on_denoising(dino):
    data, _ = inputs((3, 1))
    other = build_tiny(
        TINY_DINO,
        fixed_target_groups=[
            dict(
                type='opera.ContrastiveDenoisingQueries',
                dn_number=3,
                box_noise_scale=1.0,
                label_noise_ratio=1.0)
        ])
    other.load_state_dict(dino.state_dict())
    dino.eval()
    other.eval()
    try:
        with torch.no_grad():
            ours = dino.simple_test(data['img'], data['img_metas'])
            theirs = other.simple_test(data['img'], data['img_metas'])
    finally:
        dino.train()
    for image_ours, image_theirs in zip(ours, theirs):
        for a, b in zip(image_ours, image_theirs):
            assert (a == b).all()
    assert sum(len(a) for a in ours[0]) == 100


def test_denoising_group_on_h_deformable_detr():
    """The same maker on the H-Deformable-DETR head: its queries take
    their positions from the boxes as two-stage proposals do."""
    model = build_tiny(
        f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py',
        fixed_target_groups=[
            dict(type='opera.ContrastiveDenoisingQueries', dn_number=10)
        ]).train()
    data, targets = inputs((3, 1))
    with torch.no_grad():
        outputs = head_outputs(model, data, targets)
        losses = model.bbox_head.loss(outputs, targets, data['img_metas'])
    (group, ) = outputs['fixed_groups']
    assert group.queries.position.shape == (2, 18, 256)
    assert outputs['bbox_preds'].shape[2] == 60 + 18
    assert losses['num_matched_dn'].item() == 12
    assert {'loss_cls_one2many', 'loss_iou_dn'} <= set(losses)


def test_dino_transformer_refuses_a_decoder_without_box_positions():
    """DINO's queries have no positions; a Deformable-DETR decoder would
    run them without any (no error, a wrong model)."""
    with pytest.raises(TypeError, match='DinoTransformerDecoder'):
        build_tiny(
            TINY_DINO,
            transformer=dict(
                decoder=dict(type='opera.DeformableDetrTransformerDecoder')))
