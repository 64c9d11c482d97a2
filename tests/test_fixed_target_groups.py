"""Query groups that come with their targets, added between the
transformer's stages: one made from the ground truth (no noise) and one
given by a stand-in auxiliary head, on the tiny H-Deformable-DETR."""
import pytest
import torch
import torch.nn as nn
from mmdet.core import bbox_xyxy_to_cxcywh

from conftest import REPO_ROOT, detection_inputs, targets_of
from test_petr import build_tiny

import opera  # noqa: F401
from opera.models.query_groups import FixedTargetGroup

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'
NUM_MATCHING = 60  # 20 one-to-one + 40 one-to-many queries
GT_GROUP = [dict(type='opera.GroundTruthQueries')]
L1_WEIGHT = 5.0  # loss_bbox of the recipe


def inputs(num_boxes=(3, 1)):
    data = detection_inputs([(128, 160), (96, 128)], num_boxes=num_boxes)
    return data, targets_of(data)


def head_outputs(model, data, targets=None):
    feats = model.extract_feat(data['img'])
    return model.bbox_head(feats, data['img_metas'], targets)


def normalised_cxcywh(boxes, meta):
    h, w = meta['img_shape'][:2]
    return bbox_xyxy_to_cxcywh(boxes / boxes.new_tensor([w, h, w, h]))


def expected_l1(bbox_preds, boxes, metas, first_query):
    """The recipe's L1 of query ``first_query + i`` of each image against
    that image's box i, over all boxes (mmdet's avg_factor)."""
    total, count = 0., 0
    for img, (img_boxes, meta) in enumerate(zip(boxes, metas)):
        n = img_boxes.size(0)
        pred = bbox_preds[img, first_query:first_query + n]
        total += (pred - normalised_cxcywh(img_boxes, meta)).abs().sum()
        count += n
    return L1_WEIGHT * total / max(count, 1)


@pytest.fixture(scope='module')
def gt_model():
    return build_tiny(TINY_HYBRID, fixed_target_groups=GT_GROUP).train()


def test_ground_truth_group_is_supervised_by_its_own_objects(gt_model):
    data, targets = inputs()
    with torch.no_grad():
        outputs = head_outputs(gt_model, data, targets)
        losses = gt_model.bbox_head.loss(outputs, targets, data['img_metas'])
    (group, ) = outputs['fixed_groups']
    assert group.num_queries == 3 and group.sees_matching
    assert outputs['bbox_preds'].shape[2] == NUM_MATCHING + 3
    # The queries' references are the objects' boxes (padding: the centre).
    reference = group.queries.reference
    torch.testing.assert_close(
        reference[0], normalised_cxcywh(data['gt_bboxes'][0],
                                        data['img_metas'][0]))
    assert torch.equal(reference[1, 1:], torch.full((2, 4), 0.5))

    last = outputs['bbox_preds'][-1]
    torch.testing.assert_close(
        losses['loss_bbox_gt'],
        expected_l1(last, data['gt_bboxes'], data['img_metas'],
                    NUM_MATCHING))
    torch.testing.assert_close(
        losses['d0.loss_bbox_gt'],
        expected_l1(outputs['bbox_preds'][0], data['gt_bboxes'],
                    data['img_metas'], NUM_MATCHING))
    assert losses['num_matched_gt'].item() == 4
    # Query i has object i's label; the padding queries are background.
    head = gt_model.bbox_head
    labels = torch.full((2, 3), head.num_classes)
    labels[0] = data['gt_labels'][0]
    labels[1, 0] = data['gt_labels'][1][0]
    cls_scores = outputs['cls_scores'][-1, :, NUM_MATCHING:]
    torch.testing.assert_close(
        losses['loss_cls_gt'].reshape(()),
        head.criterion.loss_cls(
            cls_scores.reshape(6, -1), labels.flatten(), avg_factor=4.0))
    # The matching groups keep their losses and names.
    assert {'loss_cls', 'loss_cls_one2many', 'enc_loss_cls'} <= set(losses)


def test_ground_truth_group_sees_the_matching_queries_one_way(gt_model):
    data, targets = inputs()
    head = gt_model.bbox_head
    with torch.no_grad():
        plain = head_outputs(gt_model, data)  # no group without targets
        with_group = head_outputs(gt_model, data, targets)
        moved = dict(targets, gt_bboxes=[b + 4 for b in targets['gt_bboxes']])
        with_moved_group = head_outputs(gt_model, data, moved)
        original = head.query_embedding.weight.clone()
        head.query_embedding.weight[0] += 1.0  # one one-to-one query
        with_moved_query = head_outputs(gt_model, data, targets)
        head.query_embedding.weight.copy_(original)
    for name in ('cls_scores', 'bbox_preds'):
        matching = plain[name]
        assert matching.shape[2] == NUM_MATCHING
        # The group changes nothing of the matching queries' outputs ...
        assert torch.equal(with_group[name][:, :, :NUM_MATCHING], matching)
        assert torch.equal(
            with_moved_group[name][:, :, :NUM_MATCHING], matching)
        # ... while it is moved by its objects.
        group = with_group[name][:, :, NUM_MATCHING:]
        assert not torch.equal(with_moved_group[name][:, :, NUM_MATCHING:],
                               group)
    # And by a matching query (the scores: a freshly initialised box branch
    # predicts no offset, so the group's boxes stay its references).
    assert not torch.allclose(
        with_moved_query['cls_scores'][:, :, NUM_MATCHING:],
        with_group['cls_scores'][:, :, NUM_MATCHING:])


def test_ground_truth_group_is_absent_at_test(gt_model):
    data, targets = inputs()
    plain = build_tiny(TINY_HYBRID)
    state = {
        name: value
        for name, value in gt_model.state_dict().items()
        if not name.startswith('bbox_head.group_makers.')
    }
    plain.load_state_dict(state)
    gt_model.eval()
    plain.eval()
    try:
        with torch.no_grad():
            outputs = head_outputs(gt_model, data, targets)
            assert outputs['fixed_groups'] == []
            assert outputs['cls_scores'].shape[2] == 20
            ours = gt_model.simple_test(data['img'], data['img_metas'])
            theirs = plain.simple_test(data['img'], data['img_metas'])
    finally:
        gt_model.train()
    for image_ours, image_theirs in zip(ours, theirs):
        for a, b in zip(image_ours, image_theirs):
            assert (a == b).all()


def test_batch_without_objects_adds_no_ground_truth_group(gt_model):
    data, targets = inputs(num_boxes=(0, ))
    losses = gt_model.forward_train(data['img'], data['img_metas'],
                                    data['gt_bboxes'], data['gt_labels'])
    assert not any(name.endswith('_gt') for name in losses)
    assert all(torch.isfinite(v).all() for v in losses.values())


class StandInAuxiliaryHead(nn.Module):
    """Fixed positive boxes of image 0 as queries, each supervised by a
    target box of its own (as an auxiliary head's assignment would be);
    image 1 has no positives."""

    def __init__(self, boxes, targets, labels):
        super().__init__()
        self.boxes, self.targets, self.labels = boxes, targets, labels
        self.content = nn.Parameter(torch.zeros(1, 1, 256))

    def forward(self, transformer, memory, levels, targets, img_metas):
        num = self.boxes.size(0)
        reference = torch.stack([self.boxes, torch.full_like(self.boxes,
                                                             0.5)])
        queries = transformer.queries_from_boxes(
            reference, self.content.expand(2, num, -1))
        matches = [(torch.arange(num), torch.arange(num)),
                   (torch.zeros(0, dtype=torch.long), ) * 2]
        aux_targets = dict(
            gt_bboxes=[self.targets, self.targets.new_zeros(0, 4)],
            gt_labels=[self.labels, self.labels.new_zeros(0)])
        return FixedTargetGroup(
            queries, matches, 'aux', loss_weight=2.0, targets=aux_targets)


def test_auxiliary_group_is_supervised_with_its_own_targets():
    model = build_tiny(TINY_HYBRID).train()
    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4]])
    aux_targets = torch.tensor([[10., 20., 60., 70.], [50., 30., 120., 90.]])
    aux_labels = torch.tensor([7, 3])
    model.bbox_head.group_makers.append(
        StandInAuxiliaryHead(boxes, aux_targets, aux_labels))
    data, targets = inputs()
    outputs = head_outputs(model, data, targets)
    losses = model.bbox_head.loss(outputs, targets, data['img_metas'])
    (group, ) = outputs['fixed_groups']
    assert group.num_queries == 2 and not group.sees_matching
    last = outputs['bbox_preds'][-1].detach()
    expected = expected_l1(last, [aux_targets, aux_targets[:0]],
                           data['img_metas'], NUM_MATCHING)
    torch.testing.assert_close(losses['loss_bbox_aux'], 2.0 * expected)
    assert losses['num_matched_aux'].item() == 2
    assert all(torch.isfinite(v).all() for v in losses.values())
    # Its queries see only each other: a matching query does not move them.
    with torch.no_grad():
        model.bbox_head.query_embedding.weight[0] += 1.0
        moved = head_outputs(model, data, targets)
    assert not torch.allclose(moved['cls_scores'][:, :, :NUM_MATCHING],
                              outputs['cls_scores'][:, :, :NUM_MATCHING])
    assert torch.equal(moved['cls_scores'][:, :, NUM_MATCHING:],
                       outputs['cls_scores'][:, :, NUM_MATCHING:].detach())
    # Its losses train the stand-in's content query.
    sum(v for k, v in losses.items() if k.endswith('_aux')).backward()
    assert model.bbox_head.group_makers[0].content.grad.abs().sum() > 0
