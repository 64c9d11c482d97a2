"""Hybrid-matching schemes beyond the hybrid branch: hybrid layer, hybrid
epoch and Group-DETR groups, through ``HybridQueryGroups`` in both heads."""
import json
import os
import os.path as osp
import sys
from unittest import mock

import pytest
import torch
from mmcv import Config

from conftest import (REPO_ROOT, data_path, detection_inputs, pose_inputs,
                      run_in_repo, subset_annotations, targets_of,
                      train_iterations)
from test_hybrid_matching import xyxy_to_normalized_cxcywh

import opera  # noqa: F401
from opera.models import build_detector
from opera.models.query_groups import HybridQueryGroups

pytestmark = pytest.mark.usefixtures('single_thread')
TINY_HYBRID = osp.join(REPO_ROOT, 'tests', 'configs',
                       'tiny_h_deformable_detr.py')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')
TINY_PETR_SAMPLE = osp.join(REPO_ROOT, 'tests', 'configs',
                            'tiny_petr_sample.py')
SAMPLE = osp.join(REPO_ROOT, 'demo', 'data', 'coco_sample')


def build(path, query_groups, num_query, seed=0):
    cfg = Config.fromfile(path)
    cfg.model.bbox_head.update(
        num_query=num_query, num_query_one2many=0, query_groups=query_groups)
    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    model.init_weights()
    return model


def record_num_repeats(head):
    """Patch ``head.criterion.assigner.assign``; returns the list of
    (queries, K) of each call."""
    calls, assign = [], head.criterion.assigner.assign

    def recorded(*args, num_repeats=1, **kwargs):
        calls.append((args[0].size(0), num_repeats))
        return assign(*args, num_repeats=num_repeats, **kwargs)

    return calls, mock.patch.object(head.criterion.assigner, 'assign',
                                    recorded)


def test_scheme_validation_names_the_problem():
    with pytest.raises(ValueError, match='at_test'):
        HybridQueryGroups([dict(num_queries=3), dict(num_queries=2,
                                                     at_test=True)], 2)
    with pytest.raises(ValueError, match='one int >= 1 per'):
        HybridQueryGroups([dict(num_queries=3, num_repeats=[2, 1, 1],
                                at_test=True)], 2)
    with pytest.raises(TypeError, match="unknown keys \\['num_repeat'\\]"):
        HybridQueryGroups([dict(num_queries=3, num_repeat=2, at_test=True)],
                          2)
    with pytest.raises(ValueError, match='ascending'):
        HybridQueryGroups([
            dict(num_queries=3, at_test=True, repeats_schedule=[
                dict(epoch=4, num_repeats=1), dict(epoch=2, num_repeats=3)])
        ], 2)
    with pytest.raises(ValueError, match='num_query=5'):
        build(TINY_HYBRID, [dict(num_queries=20, at_test=True)], 5)
    cfg = Config.fromfile(TINY_HYBRID)
    cfg.model.bbox_head.query_groups = [dict(num_queries=20, at_test=True)]
    with pytest.raises(ValueError, match='num_query_one2many=40'):
        build_detector(cfg.model)


def test_derived_structure_of_group_detr_groups():
    groups = HybridQueryGroups(
        [dict(num_queries=2, at_test=True),
         dict(num_queries=2, proposals='top'),
         dict(num_queries=3)], num_layers=1)
    assert [g.name for g in groups.groups] == ['', 'group1', 'group2']
    assert groups.num_query_total == 7 and groups.num_test_queries == 2
    assert groups.num_active_queries(True) == 7
    assert groups.num_active_queries(False) == 2
    mask = groups.self_attn_mask(7, torch.device('cpu'))
    assert mask.sizes == (2, 2, 3)
    assert groups.self_attn_mask(2, torch.device('cpu')) is None
    # 'top' shares the first group's proposals; 'next' continues the ranks.
    assert groups.proposal_ranks(7, 'cpu').tolist() == [0, 1, 0, 1, 2, 3, 4]
    assert groups.proposal_ranks(2, 'cpu') is None


def test_hybrid_layer_losses_hand_checked():
    """K = 2 at decoder layer 0, K = 1 at layer 1 (tiny model, 2 layers).

    At layer 0 each of the 3 boxes has 2 predictions off by d in every
    coordinate, at layer 1 one prediction off by e. Normalised by each
    layer's own matched count (K x N, then N): d0.loss_bbox = 5 * 4d,
    loss_bbox = 5 * 4e. Normalising layer 0 by N would double it."""
    model = build(TINY_HYBRID,
                  [dict(num_queries=30, num_repeats=[2, 1], at_test=True)],
                  num_query=30)
    head = model.bbox_head
    w, h = 128, 96
    gt = torch.tensor([[10., 10., 50., 40.], [60., 20., 100., 80.],
                       [30., 50., 70., 90.]])
    target = xyxy_to_normalized_cxcywh(gt, w, h)
    e, d = 0.01, 0.02
    boxes = torch.full((2, 1, 30, 4), 0.5)
    boxes[..., 2:] = 0.01  # unmatched queries: tiny boxes far from targets
    boxes[0, 0, :6] = target.repeat(2, 1) + d
    boxes[1, 0, :3] = target + e
    logits = torch.full((2, 1, 30, 80), -5.0)
    metas = [dict(img_shape=(h, w, 3), batch_input_shape=(h, w))]
    calls, patch = record_num_repeats(head)
    with patch:
        losses = head.loss(
            dict(cls_scores=logits, bbox_preds=boxes, enc_cls=None,
                 enc_bbox_preds=None),
            dict(gt_bboxes=[gt], gt_labels=[torch.tensor([1, 2, 3])]), metas)
    assert calls == [(30, 2), (30, 1)]
    torch.testing.assert_close(losses['d0.loss_bbox'],
                               torch.tensor(5 * 4 * d))
    torch.testing.assert_close(losses['loss_bbox'], torch.tensor(5 * 4 * e))
    assert losses['num_matched'].item() == (6 + 3) / 2
    assert not any(name.endswith('one2many') for name in losses)


def test_pose_hybrid_layer_matches_per_layer_and_refines_last_layer():
    model = build(TINY_H_PETR,
                  [dict(num_queries=30, num_repeats=[3, 1], at_test=True)],
                  num_query=30).train()
    head = model.bbox_head
    inputs = pose_inputs([(128, 128), (128, 128)], num_persons=(2, 1))
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = (128, 128)
    outputs = head(model.extract_feat(inputs['img']), inputs['img_metas'])
    calls, patch = record_num_repeats(head)
    refined = []
    refine = head.refine

    def recorded_refine(outputs, poses, img_inds):
        refined.append(poses.size(0))
        return refine(outputs, poses, img_inds)

    with patch, mock.patch.object(head, 'refine', recorded_refine):
        losses = head.loss(outputs, targets_of(inputs), inputs['img_metas'])
    # Encoder proposals (K = 1, 2 images), then layer 0 (K = 3) and layer 1.
    decoder_calls = [c for c in calls if c[0] == 30]
    assert decoder_calls == [(30, 3)] * 2 + [(30, 1)] * 2
    assert losses['num_matched'].item() == (3 * 3 + 3) / 2
    # The refine decoder trains on the last layer's (one-to-one) persons
    # with a visible keypoint: 1 (pose_inputs' first person of each image
    # has none); layer 0's would be its 3 copies.
    assert refined == [1]
    assert torch.isfinite(sum(v for k, v in losses.items() if 'loss' in k))


def test_groups_are_independent_and_test_keeps_the_first():
    groups = [dict(num_queries=20, at_test=True), dict(num_queries=20),
              dict(num_queries=20)]
    model = build(TINY_HYBRID, groups, num_query=20)
    head = model.bbox_head
    inputs = detection_inputs([(96, 128), (64, 96)])

    def run():
        outs = model.bbox_head(model.extract_feat(inputs['img']),
                               inputs['img_metas'])
        return outs['cls_scores'], outs['bbox_preds']

    model.train()  # all 60 queries; the tiny config has no dropout
    with torch.no_grad():
        cls_a, box_a = run()
        original = head.query_embedding.weight.clone()
        head.query_embedding.weight[20:40] += 5 * torch.randn(20, 256)
        cls_b, box_b = run()
        head.query_embedding.weight.copy_(original)
        model.eval()
        cls_test, box_test = run()
    for keep in (slice(0, 20), slice(40, 60)):
        torch.testing.assert_close(cls_b[:, :, keep], cls_a[:, :, keep])
        torch.testing.assert_close(box_b[:, :, keep], box_a[:, :, keep])
    assert not torch.allclose(cls_b[:, :, 20:40], cls_a[:, :, 20:40])
    assert cls_test.shape[2] == 20
    torch.testing.assert_close(cls_test, cls_a[:, :, :20])
    torch.testing.assert_close(box_test, box_a[:, :, :20])

    # Each group is matched one-to-one on its own and named apart.
    losses = model.train().forward_train(**inputs)
    for suffix in ('', '_group1', '_group2'):
        assert losses['num_matched' + suffix].item() == 3
        assert 'd0.loss_cls' + suffix in losses


@pytest.mark.parametrize('proposals', ['top', 'next'])
def test_which_proposals_feed_a_group(proposals):
    """With the same content queries, a group fed the first group's
    proposals ('top') computes exactly what the first group does; fed the
    next-ranked ones ('next'), it does not."""
    groups = [dict(num_queries=20, at_test=True),
              dict(num_queries=20, proposals=proposals)]
    model = build(TINY_HYBRID, groups, num_query=20).train()
    with torch.no_grad():
        weight = model.bbox_head.query_embedding.weight
        weight[20:] = weight[:20]
        inputs = detection_inputs([(96, 128), (64, 96)])
        boxes = model.bbox_head(model.extract_feat(inputs['img']),
                                inputs['img_metas'])['bbox_preds']
    same = torch.allclose(boxes[:, :, 20:], boxes[:, :, :20])
    assert same == (proposals == 'top')


EPOCH_CONFIG = """
_base_ = ['{base}']
model = dict(bbox_head=dict(
    num_query=60, num_query_one2many=0,
    query_groups=[dict(num_queries=60, num_repeats=10, at_test=True,
                       repeats_schedule=[dict(epoch=2, num_repeats=1)])]))
data = dict(
    samples_per_gpu=2,
    train=dict(ann_file='{ann_file}', img_prefix='{images}'))
runner = dict(max_epochs={max_epochs})
checkpoint_config = dict(interval=1)
log_config = dict(interval=1)
"""


def write_epoch_config(folder, ann_file, max_epochs):
    path = osp.join(folder, f'hybrid_epoch_{max_epochs}.py')
    with open(path, 'w') as f:
        f.write(
            EPOCH_CONFIG.format(
                base=TINY_HYBRID,
                ann_file=ann_file,
                images=osp.join(SAMPLE, 'images'),
                max_epochs=max_epochs))
    return path


def matched_per_epoch(work_dir):
    """{epoch: num_matched} from the JSON log of a run."""
    logs = sorted(f for f in os.listdir(work_dir) if f.endswith('.log.json'))
    matched = {}
    for name in logs:
        with open(osp.join(work_dir, name)) as f:
            for line in f:
                entry = json.loads(line)
                if entry.get('mode') == 'train':
                    matched[entry['epoch']] = entry['num_matched']
    return matched


def test_hybrid_epoch_switches_and_stays_switched_after_resume(tmp_path):
    """K = 10 in epochs 1-2, K = 1 from epoch 3 (0-based epoch 2); resumed
    from the epoch-3 checkpoint, epoch 4 stays at K = 1."""
    full = osp.join(SAMPLE, 'annotations', 'instances_sample.json')
    with open(full) as f:
        sample = json.load(f)
    boxes = {}
    for ann in sample['annotations']:
        if not ann.get('iscrowd'):
            boxes[ann['image_id']] = boxes.get(ann['image_id'], 0) + 1
    # Two images with few boxes: K = 10 copies of them fit in 60 queries.
    ids = sorted(boxes, key=lambda i: boxes[i])[:2]
    num_boxes = boxes[ids[0]] + boxes[ids[1]]
    assert 10 * max(boxes[i] for i in ids) <= 60
    ann_file = subset_annotations(full, set(ids), tmp_path / 'ann.json')
    work_dir = str(tmp_path / 'work')

    def train(max_epochs, *extra):
        result = run_in_repo([
            sys.executable, 'tools/train.py',
            write_epoch_config(str(tmp_path), ann_file, max_epochs),
            '--work-dir', work_dir, '--no-validate', '--seed', '0', *extra
        ])
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    train(3)
    assert matched_per_epoch(work_dir) == {
        1: 10 * num_boxes, 2: 10 * num_boxes, 3: num_boxes}
    resumed = train(4, '--auto-resume')
    assert 'query groups at epoch 4' in resumed.stderr + resumed.stdout
    assert 'K per layer [1, 1]' in resumed.stderr + resumed.stdout
    assert matched_per_epoch(work_dir)[4] == num_boxes


# Every new scheme config, at CPU size: R18, 1 encoder layer, narrow FFNs,
# 1/30 of the queries (the groups, their K per layer and schedules as in the
# config), two coco_mini images with one large object or person each.
SCHEME_CONFIGS = {
    'hdetr/deformable_detr_r50_two_stage_1800queries_12ep.py': 'box',
    'hdetr/hybrid_branch_deformable_detr_r50_two_stage_12ep.py': 'box',
    'hdetr/hybrid_epoch_deformable_detr_r50_two_stage_12ep.py': 'box',
    'hdetr/hybrid_layer_deformable_detr_r50_two_stage_12ep.py': 'box',
    'hdetr/group_detr_deformable_detr_r50_two_stage_12ep.py': 'box',
    'petr/h_petr_r50_hybrid_epoch_8x1_100e_coco.py': 'pose',
    'petr/h_petr_r50_hybrid_layer_8x1_100e_coco.py': 'pose',
}
BOX_IMAGES, PERSON_IMAGES = (194322, 249346), (463557, 535506)
QUERY_SCALE = 30
IMAGE_SCALE = (192, 160)  # enough encoder positions for 110 queries


def shrink_queries(head):
    head.num_query //= QUERY_SCALE
    head.num_query_one2many //= QUERY_SCALE
    for group in head.get('query_groups') or ():
        group['num_queries'] //= QUERY_SCALE


def tiny_version(config, kind, tmp_path):
    """The config at CPU size, trained on two coco_mini images."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    tiny = Config.fromfile(TINY_HYBRID if kind == 'box' else TINY_PETR_SAMPLE)
    cfg.model.backbone = tiny.model.backbone
    cfg.model.neck.in_channels = tiny.model.neck.in_channels
    head, tiny_head = cfg.model.bbox_head, tiny.model.bbox_head
    for key in ('in_channels', 'kpt_hidden_dims'):
        if key in tiny_head:
            head[key] = tiny_head[key]
    for name, layers in head.transformer.items():
        if isinstance(layers, dict) and 'transformerlayers' in layers:
            layers.transformerlayers.ffn_cfgs.feedforward_channels = 64
    head.transformer.encoder.num_layers = 1
    shrink_queries(head)
    root = data_path('coco_mini')
    ann = ('instances_train2017.json'
           if kind == 'box' else 'person_keypoints_train2017.json')
    pipeline = [dict(step) for step in tiny.data.train.pipeline]
    for step in pipeline:
        if 'Resize' in step['type']:
            step['img_scale'] = IMAGE_SCALE
    cfg.data.train = dict(
        tiny.data.train,
        pipeline=pipeline,
        ann_file=subset_annotations(
            f'{root}/annotations/{ann}',
            BOX_IMAGES if kind == 'box' else PERSON_IMAGES,
            tmp_path / 'subset.json'),
        img_prefix=f'{root}/train2017/')
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    return cfg, model


@pytest.mark.parametrize('config', sorted(SCHEME_CONFIGS))
def test_scheme_config_short_training_lowers_losses(config, tmp_path):
    kind = SCHEME_CONFIGS[config]
    cfg, model = tiny_version(config, kind, tmp_path)
    model.bbox_head.query_groups.set_epoch(0)
    parts = ('cls', 'bbox', 'iou') if kind == 'box' else ('cls', 'kpt', 'oks')
    history = train_iterations(model, cfg, 6, parts)
    for branch in history[0]:
        first = sum(h[branch] for h in history[:2]) / 2
        last = sum(h[branch] for h in history[-2:]) / 2
        assert last < first, (branch, [h[branch] for h in history])


def test_hybrid_epoch_36ep_switches_at_two_thirds():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'hdetr',
                 'hybrid_epoch_deformable_detr_r50_two_stage_36ep.py'))
    assert cfg.runner.max_epochs == 36
    cfg.model.backbone.init_cfg = None
    groups = build_detector(cfg.model).bbox_head.query_groups
    for epoch, k in ((0, 10), (23, 10), (24, 1), (35, 1)):
        groups.set_epoch(epoch)
        assert groups.num_repeats(groups.groups[0]) == (k, ) * 6


def test_documented_custom_scheme_builds(tmp_path):
    """The example of docs/hybrid_matching.md: two one-to-many groups with
    different K next to the one-to-one group, in a config alone."""
    path = tmp_path / 'two_one2many_groups.py'
    path.write_text(f"""
_base_ = '{REPO_ROOT}/configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py'
model = dict(
    bbox_head=dict(
        num_query_one2many=0,
        query_groups=[
            dict(num_queries=300, at_test=True),
            dict(num_queries=900, num_repeats=3, name='k3'),
            dict(num_queries=900, num_repeats=6, name='k6')
        ]))
""")
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.init_cfg = None
    head = build_detector(cfg.model).bbox_head
    assert head.query_embedding.num_embeddings == 2100
    groups = head.query_groups
    assert [g.suffix for g in groups.groups] == ['', '_k3', '_k6']
    assert [groups.num_repeats(g)[0] for g in groups.groups] == [1, 3, 6]
    assert groups.num_test_queries == 300
