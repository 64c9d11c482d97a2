"""Co-DETR's auxiliary heads (opera.CoDETRAuxiliaryQueries) on the tiny
Co-Deformable-DETR: their positives become decoder queries supervised with
what each head assigned them, and nothing of them runs at test."""
import pytest
import torch
from mmcv import Config

from conftest import (REPO_ROOT, detection_inputs, targets_of,
                      train_iterations)
from test_fixed_target_groups import expected_l1
from test_fixed_target_groups import normalised_cxcywh as normalised
from test_overfit_detection import mean, setup

import opera  # noqa: F401
from opera.models import build_detector
from opera.models.query_groups.co_detr import MemoryPyramid
from opera.models.query_groups.co_detr.auxiliary_queries import (
    AuxiliaryCandidates, select_positives)

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_CO = f'{REPO_ROOT}/tests/configs/tiny_co_deformable_detr.py'
NUM_MATCHING = 20
NUM_CLASSES = 80
# Image 0's first box is exactly an ATSS anchor (64 x 64 at stride 8,
# centred on (64, 64)), so ATSS must take that anchor as a positive.
GT_BOXES = [[[32., 32., 96., 96.], [70., 10., 150., 70.]],
            [[20., 24., 60., 90.]]]
GT_LABELS = [[7, 3], [5]]
SHAPES = [(128, 160), (96, 128)]


def build(path=TINY_CO, seed=0, **model_options):
    cfg = Config.fromfile(path)
    cfg.model.update(model_options)
    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def model():
    return build().train()


def hand_made_inputs(boxes=GT_BOXES, labels=GT_LABELS):
    data = detection_inputs(SHAPES, num_boxes=(0, ))
    data['gt_bboxes'] = [torch.tensor(b).reshape(-1, 4) for b in boxes]
    data['gt_labels'] = [torch.tensor(l, dtype=torch.long) for l in labels]
    return data, targets_of(data)


class Recorder:
    """What a training forward of the model made: the pyramid, the RoI
    head's sampling results, the head outputs and losses."""

    def __init__(self, model, data, targets):
        makers = model.bbox_head.group_makers[0]
        self.samples = []
        roi_maker = makers.heads[0]
        sample = roi_maker.sample

        def recorded(*args):
            self.samples.append(sample(*args))
            return self.samples[-1]

        roi_maker.sample = recorded
        hook = makers.pyramid.register_forward_hook(
            lambda module, args, out: setattr(self, 'pyramid', out))
        try:
            feats = model.extract_feat(data['img'])
            self.outputs = model.bbox_head(feats, data['img_metas'], targets)
            self.losses = model.bbox_head.loss(self.outputs, targets,
                                               data['img_metas'])
        finally:
            hook.remove()
            del roi_maker.sample
        self.groups = self.outputs['fixed_groups']


def atss_positives(model, pyramid, targets, metas):
    """Per image, ATSS's positive anchors and their objects, assigned here
    by mmdet's ATSS assigner directly."""
    head = model.bbox_head.group_makers[0].heads[1].head
    anchors, _ = head.get_anchors([p.shape[-2:] for p in pyramid], metas,
                                  device='cpu')
    positives = []
    for img_id, levels in enumerate(anchors):
        result = head.assigner.assign(
            torch.cat(levels), [len(a) for a in levels],
            targets['gt_bboxes'][img_id], None, targets['gt_labels'][img_id])
        pos = (result.gt_inds > 0).nonzero().squeeze(1)
        positives.append((torch.cat(levels)[pos], result.gt_inds[pos] - 1))
    return positives


def test_atss_queries_are_its_positive_anchors_with_their_objects(model):
    data, targets = hand_made_inputs()
    run = Recorder(model, data, targets)
    metas = data['img_metas']
    roi_group, atss_group = run.groups
    assert (roi_group.name, atss_group.name) == ('aux0', 'aux1')
    assert not atss_group.sees_matching
    positives = atss_positives(model, run.pyramid, targets, metas)
    counts = [len(anchors) for anchors, _ in positives]
    assert counts[0] >= 1 and counts[1] >= 1
    assert atss_group.num_queries == max(9, max(counts))
    for img_id, (anchors, gt_inds) in enumerate(positives):
        n = counts[img_id]
        query_inds, target_inds = atss_group.matches[img_id]
        assert torch.equal(query_inds, torch.arange(n))
        assert torch.equal(target_inds, torch.arange(n))
        torch.testing.assert_close(
            atss_group.queries.reference[img_id, :n],
            normalised(anchors, metas[img_id]))
        assert torch.equal(atss_group.targets['gt_bboxes'][img_id],
                           targets['gt_bboxes'][img_id][gt_inds])
        assert torch.equal(atss_group.targets['gt_labels'][img_id],
                           targets['gt_labels'][img_id][gt_inds])
    # The anchor that is image 0's first box is among them, with that box.
    exact = (positives[0][0] == targets['gt_bboxes'][0][0]).all(1)
    assert exact.sum() == 1 and positives[0][1][exact].item() == 0
    # Decoded with the others, scored against those objects.
    start = NUM_MATCHING + roi_group.num_queries
    expected = expected_l1(run.outputs['bbox_preds'][-1].detach(),
                           atss_group.targets['gt_bboxes'], metas, start)
    torch.testing.assert_close(run.losses['loss_bbox_aux1'], expected)
    assert run.losses['num_matched_aux1'].item() == sum(counts)


def test_roi_queries_are_its_positive_proposals_with_their_objects(model):
    data, targets = hand_made_inputs()
    run = Recorder(model, data, targets)
    metas = data['img_metas']
    roi_group = run.groups[0]
    counts = [sample.pos_inds.numel() for sample in run.samples]
    assert counts[0] >= 2 and counts[1] >= 1  # the objects, as proposals
    assert roi_group.num_queries == max(9, max(counts))
    start = NUM_MATCHING
    for img_id, sample in enumerate(run.samples):
        n = counts[img_id]
        assert roi_group.matches[img_id][0].tolist() == list(range(n))
        reference = roi_group.queries.reference[img_id]
        torch.testing.assert_close(reference[:n],
                                   normalised(sample.pos_bboxes,
                                              metas[img_id]))
        assert torch.equal(roi_group.targets['gt_bboxes'][img_id],
                           sample.pos_gt_bboxes)
        assert torch.equal(roi_group.targets['gt_labels'][img_id],
                           sample.pos_gt_labels)
        # The rest are the head's negatives (background).
        negatives = normalised(sample.neg_bboxes, metas[img_id])
        distance = torch.cdist(reference[n:], negatives).min(1).values
        assert distance.max() < 1e-6
    expected = expected_l1(run.outputs['bbox_preds'][-1].detach(),
                           roi_group.targets['gt_bboxes'], metas, start)
    torch.testing.assert_close(run.losses['loss_bbox_aux0'], expected)


def test_heads_own_losses_and_group_losses_are_named_as_co_detr(model):
    data, targets = hand_made_inputs()
    losses = Recorder(model, data, targets).losses
    own = {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls0', 'acc0',
           'loss_bbox0', 'loss_cls1', 'loss_bbox1', 'loss_centerness1'}
    assert own <= set(losses)
    for group in ('aux0', 'aux1'):
        for layer in ('d0.', ''):
            for part in ('cls', 'bbox', 'iou'):
                assert f'{layer}loss_{part}_{group}' in losses
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    model.zero_grad()
    total.backward()
    makers = model.bbox_head.group_makers[0]
    for name in ('pyramid.downsample.0.weight',
                 'heads.0.embedding.position.weight',
                 'heads.1.embedding.head_offset',
                 'heads.1.head.atss_cls.weight',
                 'heads.0.roi_head.bbox_head.fc_cls.weight',
                 'heads.0.rpn_head.rpn_cls.weight'):
        grad = dict(makers.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_image_without_objects_gets_only_background_queries(model):
    data, targets = hand_made_inputs(
        boxes=[GT_BOXES[0], []], labels=[GT_LABELS[0], []])
    run = Recorder(model, data, targets)
    for group in run.groups:
        assert group.matches[1][0].numel() == 0
        assert group.targets['gt_bboxes'][1].shape == (0, 4)
        assert group.matches[0][0].numel() > 0
    assert all(torch.isfinite(v).all() for v in run.losses.values())


def test_batch_without_objects_trains_every_query_as_background(model):
    data, targets = hand_made_inputs(boxes=[[], []], labels=[[], []])
    run = Recorder(model, data, targets)
    for group in run.groups:
        assert group.num_queries == 9  # Co-DETR's least
        assert all(q.numel() == 0 for q, _ in group.matches)
    losses = run.losses
    for name in ('aux0', 'aux1'):
        assert losses[f'loss_bbox_{name}'].item() == 0
        assert losses[f'loss_cls_{name}'].item() > 0
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()


def test_test_outputs_equal_the_base_detector_with_the_same_weights():
    co_model = build().eval()
    base = build(
        f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py',
        seed=1,
        neck=dict(bias=False),
        bbox_head=dict(num_query_one2many=0))
    state = {
        k: v
        for k, v in co_model.state_dict().items()
        if not k.startswith('bbox_head.group_makers.')
    }
    assert len(state) < len(co_model.state_dict())
    base.load_state_dict(state, strict=True)
    base.eval()
    data = detection_inputs(SHAPES)
    with torch.no_grad():
        feats = co_model.extract_feat(data['img'])
        co_out = co_model.bbox_head(feats, data['img_metas'])
        base_out = base.bbox_head(base.extract_feat(data['img']),
                                  data['img_metas'])
        co_dets = co_model.simple_test(data['img'], data['img_metas'])
        base_dets = base.simple_test(data['img'], data['img_metas'])
    assert co_out['fixed_groups'] == []
    for key in ('cls_scores', 'bbox_preds', 'enc_cls', 'enc_bbox_preds'):
        assert torch.equal(co_out[key], base_out[key]), key
    for co_img, base_img in zip(co_dets, base_dets):
        for co_cls, base_cls in zip(co_img, base_img):
            assert (co_cls == base_cls).all()


def candidates(num_pos, num_neg, first_label):
    """Boxes i: (i, i, i + 10, i + 20); positives first, then negatives,
    then one box that is neither (label -1); features [n, 3] = i."""
    n = num_pos + num_neg + 1
    start = torch.arange(n, dtype=torch.float32)[:, None]
    boxes = torch.cat([start, start, start + 10, start + 20], 1)
    labels = torch.full((n, ), NUM_CLASSES)
    labels[:num_pos] = torch.arange(first_label, first_label + num_pos)
    labels[-1] = -1
    return AuxiliaryCandidates(boxes, labels, boxes + 1,
                               start.expand(-1, 3).clone())


def test_positives_padded_with_negatives_then_zeros():
    metas = [dict(img_shape=(100, 200, 3))] * 2
    batch = [candidates(2, 3, 4), candidates(0, 20, 0)]
    torch.manual_seed(0)
    reference, features, matches, targets = select_positives(
        batch, metas, NUM_CLASSES, max_per_image=300)
    assert reference.shape == (2, 9, 4) and features.shape == (2, 9, 3)
    # Image 0: its 2 positives, its 3 negatives (any order), 4 zero rows.
    torch.testing.assert_close(reference[0, :2],
                               normalised(batch[0].boxes[:2], metas[0]))
    assert sorted(features[0, 2:5, 0].tolist()) == [2., 3., 4.]
    assert (reference[0, 5:] == 0).all() and (features[0, 5:] == 0).all()
    assert targets['gt_labels'][0].tolist() == [4, 5]
    assert torch.equal(targets['gt_bboxes'][0], batch[0].boxes[:2] + 1)
    assert matches[0][0].tolist() == [0, 1]
    # Image 1: 9 of its 20 negatives, no positive.
    picked = features[1, :, 0].tolist()
    assert len(set(picked)) == 9 and all(0 <= i < 20 for i in picked)
    assert matches[1][0].numel() == 0
    assert targets['gt_bboxes'][1].shape == (0, 4)


def test_positives_beyond_the_maximum_are_a_random_subset():
    metas = [dict(img_shape=(100, 200, 3))]
    batch = [candidates(30, 5, 0)]
    torch.manual_seed(0)
    _, features, matches, targets = select_positives(
        batch, metas, NUM_CLASSES, max_per_image=12)
    assert features.shape[1] == 12 and matches[0][0].numel() == 12
    kept = features[0, :, 0].long()
    assert len(set(kept.tolist())) == 12 and kept.max() < 30
    assert torch.equal(targets['gt_labels'][0], kept)  # label i at row i


def test_memory_pyramid_folds_levels_and_adds_a_downsampled_one():
    pyramid = MemoryPyramid(embed_dims=32, num_groups=8)
    sizes = [(6, 5), (3, 3)]
    memory = torch.randn(2, 39, 32)
    maps = pyramid(memory, dict(level_sizes=sizes))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 6, 5), (2, 32, 3, 3),
                                              (2, 32, 2, 2)]
    # Position (row 4, column 2) of level 0 is memory index 4 * 5 + 2;
    # level 1 starts after level 0's 30.
    assert torch.equal(maps[0][1, :, 4, 2], memory[1, 22])
    assert torch.equal(maps[1][0, :, 2, 1], memory[0, 30 + 7])
    torch.testing.assert_close(maps[2], pyramid.downsample(maps[1]))
    # mmcv's RoIAlign reads its input as contiguous (a strided view gave
    # the RoI head wrong features; test_codetr_checkpoint.py caught it).
    assert all(m.is_contiguous() for m in maps)
    with pytest.raises(ValueError, match='40 positions'):
        pyramid(torch.randn(2, 40, 32), dict(level_sizes=sizes))


def test_short_coco_mini_training_lowers_every_auxiliary_loss(tmp_path):
    cfg, model = setup(TINY_CO, tmp_path, {'optimizer.lr': 1e-3})
    branches = (('decoder', ''), ('aux0', '_aux0'), ('aux1', '_aux1'),
                ('roi', '0'), ('atss', '1'))
    history = train_iterations(model, cfg, 16, ('cls', 'bbox'), branches)
    # Measured (seed 0, 2 shared CPU cores, ~40 s): the mean of the last 4
    # iterations is 0.18-0.77x that of the first 4 for every branch (aux0,
    # the RoI positives' queries, falls least).
    for branch, _ in branches:
        first = mean([h[branch] for h in history[:4]])
        last = mean([h[branch] for h in history[-4:]])
        assert last < 0.9 * first, (branch, first, last)
