"""Co-DETR's checkpoints load into the Co-Deformable-DETR and Co-DINO
configs and give Co-DETR's outputs and training losses.

The fixtures were made once by running Sense-X/Co-DETR's own code
(``co_deformable_detr_r50_1x_coco.py`` and ``co_dino_5scale_r50_1x_coco.py``,
on mmcv-full 1.7.2 + mmdet 2.28.2, CPU, oneDNN pinned to AVX2, one thread,
float32) with every floating state-dict entry set by
``keyed_weights.keyed_tensor`` under Co-DETR's names:

- ``{codetr,codino}_r50_checkpoint_layout.json.gz``: every entry's name and
  shape and the parameter counts;
- ``{codetr,codino}_r50_reference_outputs.npz``: on two random images (320
  x 384 and 256 x 320, padded to 320 x 384, scale factor 0.5), the last
  decoder layer's class logits (first 50 queries) and boxes and the
  detections (Co-DINO's after its soft-NMS); the training losses of one
  forward with ``torch.manual_seed(0)`` just before it (Co-DINO's denoising
  draws, then the samplers' and the padding's ``randperm`` draws follow),
  with the auxiliary queries' boxes, labels and targets, once with objects
  in both images, once with none in image 1 and (Co-DINO) once with none
  at all.
"""
import copy
import gzip
import json
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmcv.runner import load_checkpoint
from mmdet.core import bbox_xyxy_to_cxcywh

from conftest import REPO_ROOT, run_with_avx2_onednn
from keyed_weights import keyed_tensor

import opera  # noqa: F401
from opera.models import build_detector
from opera.utils import load_config
from opera.converters.codetr import to_opera

DATA = osp.join(REPO_ROOT, 'tests', 'data')
CO_R50 = 'configs/co_detr/co_deformable_detr_r50_12ep.py'
TOOL = f'{REPO_ROOT}/tools/model_converters/codetr_to_opera.py'
SIZES = [(320, 384), (256, 320)]
PAD = (320, 384)
GT_BOXES = [[[20., 30., 200., 180.], [150., 60., 370., 300.],
             [40., 200., 120., 310.]], [[10., 20., 300., 240.]]]
GT_LABELS = [[3, 17, 0], [56]]
#: Per model: its config, fixtures, the group makers of the auxiliary
#: heads and of the denoising queries (None: none), the ground-truth
#: variants of its reference run, opera's extra logs.
MODELS = {
    'co_deformable_detr':
    dict(
        config=CO_R50,
        fixture='codetr_r50',
        aux_maker=0,
        denoising_maker=None,
        variants=('', 'nogt_img1/'),
        logged={'num_matched', 'num_matched_aux0', 'num_matched_aux1'}),
    'co_dino':
    dict(
        config='configs/co_detr/co_dino_r50_5scale_12ep.py',
        fixture='codino_r50',
        aux_maker=1,
        denoising_maker=0,
        variants=('', 'nogt_img1/', 'nogt_all/'),
        logged={
            'num_matched', 'num_matched_dn', 'num_matched_aux0',
            'num_matched_aux1'
        }),
}
GROUND_TRUTH = {
    '': (GT_BOXES, GT_LABELS),
    'nogt_img1/': ([GT_BOXES[0], []], [GT_LABELS[0], []]),
    'nogt_all/': ([[], []], [[], []]),
}


def reference_layout(kind='co_deformable_detr'):
    name = f'{MODELS[kind]["fixture"]}_checkpoint_layout.json.gz'
    with gzip.open(osp.join(DATA, name), 'rt') as f:
        return json.load(f)


def released_state(kind='co_deformable_detr'):
    """Co-DETR's state dict as the reference run filled it (its integer
    buffers, BN's num_batches_tracked, left at 0)."""
    layout = reference_layout(kind)
    return {
        name: (torch.zeros(shape, dtype=torch.long) if name in
               layout['dtypes'] else keyed_tensor(name, tuple(shape)).float())
        for name, shape in layout['state_dict'].items()
    }


def build(kind='co_deformable_detr'):
    cfg = load_config(
        osp.join(REPO_ROOT, MODELS[kind]['config']),
        {'model.backbone.init_cfg': None})
    return build_detector(cfg.model)


@pytest.mark.parametrize('kind', sorted(MODELS))
def test_layout_converts_to_the_config_exactly(kind):
    layout = reference_layout(kind)
    model = build(kind)
    assert sum(p.numel() for p in model.parameters()) == layout['num_params']
    converted, unknown = to_opera(released_state(kind))
    assert unknown == []
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) - set(converted)) == []
    assert sorted(set(converted) - set(ours)) == []
    assert {k for k in ours if ours[k] != tuple(converted[k].shape)} == set()


def test_co_deformable_detr_head_offsets_become_one_number_per_head():
    converted, _ = to_opera(released_state())
    # The [2, 1] per-head offset table becomes one number per head.
    offsets = released_state()['query_head.transformer.head_pos_embed.weight']
    for index in range(2):
        assert converted[f'bbox_head.group_makers.0.heads.{index}.'
                         f'embedding.head_offset'] == offsets[index]


def test_co_dino_entries_move_to_the_denoising_and_auxiliary_makers():
    state = released_state('co_dino')
    converted, _ = to_opera(state)
    moved = {
        'query_head.label_embedding.weight':
        'bbox_head.group_makers.0.label_embedding.weight',
        'query_head.transformer.query_embed.weight':
        'bbox_head.query_embedding.weight',
        'query_head.transformer.aux_pos_trans.1.weight':
        'bbox_head.group_makers.1.heads.1.embedding.content.weight',
        'query_head.transformer.aux_pos_trans_norm.0.bias':
        'bbox_head.group_makers.1.heads.0.embedding.content_norm.bias',
        'query_head.downsample.0.weight':
        'bbox_head.group_makers.1.pyramid.downsample.0.weight',
        'bbox_head.0.atss_cls.weight':
        'bbox_head.group_makers.1.heads.1.head.atss_cls.weight',
        'query_head.transformer.decoder.ref_point_head.2.bias':
        'bbox_head.transformer.decoder.ref_point_head.2.bias',
    }
    for theirs, ours in moved.items():
        assert torch.equal(converted[ours], state[theirs]), theirs


def test_mask_entries_and_a_second_rpn_are_reported_unknown():
    state = {
        'query_head.cls_branches.0.bias': torch.zeros(80),
        'mask_head.convs.0.weight': torch.zeros(1),
        'rpn_head.rpn_conv.bias': torch.zeros(1),
        'roi_head.0.bbox_head.fc_cls.bias': torch.zeros(1),
        'roi_head.1.bbox_head.fc_cls.bias': torch.zeros(1),
        'bbox_head.0.atss_cls.bias': torch.zeros(1),
    }
    converted, unknown = to_opera(state)
    assert unknown == ['mask_head.convs.0.weight', 'rpn_head.rpn_conv.bias']
    assert set(converted) == {
        'bbox_head.cls_branches.0.bias',
        'bbox_head.group_makers.0.heads.0.roi_head.bbox_head.fc_cls.bias',
        'bbox_head.group_makers.0.heads.1.roi_head.bbox_head.fc_cls.bias',
        'bbox_head.group_makers.0.heads.2.head.atss_cls.bias',
    }


@pytest.mark.parametrize('kind', sorted(MODELS))
def test_codetr_checkpoint_gives_reference_outputs_and_losses(
        tmp_path, kind):
    """The check below, in a child process whose oneDNN is pinned to AVX2
    (the fixture's kernels; see ``conftest.run_with_avx2_onednn``)."""
    result = run_with_avx2_onednn('test_codetr_checkpoint',
                                  'check_reference_outputs_and_losses',
                                  str(tmp_path), kind)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def reference_inputs():
    gen = torch.Generator().manual_seed(0)
    images = [torch.randn(1, 3, h, w, generator=gen) for h, w in SIZES]
    batch = torch.zeros(len(SIZES), 3, *PAD)
    metas = []
    for index, (h, w) in enumerate(SIZES):
        batch[index, :, :h, :w] = images[index][0]
        metas.append(
            dict(
                img_shape=(h, w, 3),
                pad_shape=(*PAD, 3),
                batch_input_shape=PAD,
                ori_shape=(2 * h, 2 * w, 3),
                scale_factor=np.full(4, 0.5, np.float32),
                flip=False))
    return batch, metas


def converted_checkpoint(tmp_dir, kind):
    """Co-DETR's keyed checkpoint, converted by the command-line tool."""
    released = osp.join(tmp_dir, 'codetr.pth')
    torch.save(dict(state_dict=released_state(kind)), released)
    converted = osp.join(tmp_dir, 'opera.pth')
    result = subprocess.run([
        sys.executable, TOOL, released, converted, '--config',
        osp.join(REPO_ROOT, MODELS[kind]['config'])
    ], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return converted


def training_losses(model, aux_maker, batch, metas, boxes, labels):
    """The losses of one training forward, and the groups it made (by
    maker: the auxiliary heads' are ``aux_maker``'s)."""
    made = {}
    hooks = [
        maker.register_forward_hook(
            lambda module, args, groups, index=index: made.update(
                {index: groups}))
        for index, maker in enumerate(model.bbox_head.group_makers)
    ]
    model.train()
    torch.manual_seed(0)
    # Without the graph: the same values, a fraction of the memory (the
    # R50 training forward's activations are several GiB).
    with torch.no_grad():
        losses = model(
            batch,
            copy.deepcopy(metas),
            gt_bboxes=[torch.tensor(b).reshape(-1, 4) for b in boxes],
            gt_labels=[torch.tensor(l, dtype=torch.long) for l in labels],
            return_loss=True)
    for hook in hooks:
        hook.remove()
    return {k: v.item() for k, v in losses.items()}, made


def check_groups(groups, metas, reference, prefix=''):
    """Co-DETR's auxiliary queries of each head: the same boxes, the same
    positives with the same targets, the rest background."""
    for group, head in zip(groups, ('aux0', 'aux1')):
        coords = reference[f'{prefix}{head}/coords']
        # The auxiliary heads' boxes come out of R50 + pyramid convolutions
        # whose oneDNN AVX2 kernels still round differently from one CPU to
        # the next: 2e-6 (0.0015 px at 768 px) on an AMD EPYC with AVX-512
        # on the fixture's weights, for the same code that gave it.
        np.testing.assert_allclose(group.queries.reference.numpy(), coords,
                                   rtol=0, atol=1e-5)
        num_pos = reference[f'{prefix}{head}/num_pos'].tolist()
        assert [q.numel() for q, _ in group.matches] == num_pos
        for image, (count, meta) in enumerate(zip(num_pos, metas)):
            h, w = meta['img_shape'][:2]
            targets = bbox_xyxy_to_cxcywh(group.targets['gt_bboxes'][image] /
                                          torch.tensor([w, h, w, h]))
            np.testing.assert_allclose(
                targets.numpy(),
                reference[f'{prefix}{head}/targets'][image, :count],
                rtol=0, atol=1e-6)
            labels = reference[f'{prefix}{head}/labels'][image]
            assert group.targets['gt_labels'][image].tolist() == labels[
                :count].tolist()
            assert (labels[count:] == 80).all()  # padding: background


def our_loss_name(name):
    """Co-DINO's denoising losses are ``[d{l}.]dn_loss_*``, ours
    ``[d{l}.]loss_*_dn``; the other names are the same."""
    match = re.fullmatch(r'(d\d+\.)?dn_(loss_\w+)', name)
    return f'{match.group(1) or ""}{match.group(2)}_dn' if match else name


def assert_mostly_close(ours, reference, atol, share=0.01):
    """Rows (the last axis) of ``ours`` within ``atol`` of the reference's,
    all but at most ``share`` of them (near-tied choices may swap)."""
    assert ours.shape == reference.shape
    far = np.abs(ours - reference).max(-1) > atol
    assert far.mean() <= share, (
        f'{int(far.sum())} of {far.size} rows differ by more than {atol} '
        f'(at most {share:.0%} may)')


def assert_same_detections(boxes, labels, expected, expected_labels,
                           score_atol=2e-4, pixel_atol=0.5, share=0.01):
    """Each reference detection [5] (box, score) has one of ours with its
    label, its score within ``score_atol`` and its box within
    ``pixel_atol``, all but at most ``share`` of them; the scores, sorted,
    agree within ``score_atol``."""
    assert boxes.shape == expected.shape
    np.testing.assert_allclose(np.sort(boxes[:, 4]), np.sort(expected[:, 4]),
                               rtol=0, atol=score_atol)
    unmatched = 0
    for row, label in zip(expected, expected_labels):
        same = (labels == label) & (np.abs(boxes[:, 4] - row[4]) <=
                                    score_atol)
        distances = np.abs(boxes[same, :4] - row[:4]).max(-1)
        unmatched += not (distances <= pixel_atol).any()
    assert unmatched <= share * len(expected), (
        f'{unmatched} of {len(expected)} detections have no match')


def check_losses(ours, reference, logged, prefix=''):
    """Every reference loss, same name, within 1e-4 relative (measured:
    1e-5 on the fixture's CPU, 6.3e-5 on an AMD EPYC with AVX-512)."""
    names = [our_loss_name(n) for n in reference[prefix + 'loss_keys']]
    values = reference[prefix + 'loss_values']
    assert set(names) <= set(ours)
    # Opera logs the supervised queries per group besides.
    assert set(ours) - set(names) == logged
    np.testing.assert_allclose([ours[name] for name in names], values,
                               rtol=1e-4, atol=0)


def check_reference_outputs_and_losses(tmp_dir, kind):
    torch.set_num_threads(1)
    spec = MODELS[kind]
    reference = np.load(
        osp.join(DATA, f'{spec["fixture"]}_reference_outputs.npz'))
    model = build(kind)
    load_checkpoint(model, converted_checkpoint(tmp_dir, kind), strict=True)
    batch, metas = reference_inputs()

    model.eval()
    with torch.no_grad():
        outputs = model.bbox_head(model.extract_feat(batch), metas)
        detections = model.bbox_head.get_bboxes(outputs, metas, rescale=True)
    # On the CPU that made the fixture the logits agree to 2e-5, the boxes
    # to 2e-6. On an AMD EPYC (AVX-512; oneDNN pinned to AVX2 all the same)
    # the convolutions round otherwise, which the keyed weights amplify:
    # logits 3.3e-4, boxes 1e-4, and for Co-DINO two encoder proposals
    # whose scores are near-tied swap ranks (6 of its 1800 query boxes,
    # and the order of detections of near-equal scores). Hence: logits to
    # 1e-3, every box but at most 1% of them to 1e-4, and the same
    # detections as a set (detections of near-equal scores change order).
    np.testing.assert_allclose(
        outputs['cls_scores'][-1, :, :50].numpy(),
        reference['last_cls_logits_first50'], rtol=0, atol=1e-3)
    assert_mostly_close(outputs['bbox_preds'][-1].numpy(),
                        reference['last_bbox_cxcywh'], 1e-4)
    for index, (boxes, labels) in enumerate(detections):
        assert_same_detections(boxes.numpy(), labels.numpy(),
                               reference[f'img{index}_det_bboxes'],
                               reference[f'img{index}_det_labels'])

    for prefix in spec['variants']:
        losses, made = training_losses(model, spec['aux_maker'], batch,
                                       metas, *GROUND_TRUTH[prefix])
        check_losses(losses, reference, spec['logged'], prefix)
        check_groups(made[spec['aux_maker']], metas, reference, prefix)
        if spec['denoising_maker'] is not None:
            # The denoising queries: groups x 2 x the most objects.
            denoising = made[spec['denoising_maker']]
            assert denoising.num_queries == reference[prefix + 'dn/pad_size']
            if denoising.num_queries:
                assert denoising.num_blocks == reference[prefix +
                                                         'dn/num_dn_group']
