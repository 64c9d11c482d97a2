"""Released DINO checkpoints convert, and give DINO's outputs and losses.

``tests/data/dino_r50_reference_layouts.json.gz`` lists every state-dict
entry (name and shape) of IDEA-Research/DINO's DINO-4scale R50 (commit
faa8520): the release (91 classes) and the same model with 80 classes; for
the decoder's shared branches, saved under one name per layer, which name's
values they hold. ``dino_r50_reference_outputs.npz`` holds what DINO's code
computed, in float64, from the weights of ``keyed_weights.py`` (80-class
layout): its test-time outputs on two random images, and its training
losses on them with two / one ground-truth boxes, ``torch.manual_seed(0)``
set right before the forward (its denoising draws then come from that
state; ours draw the same numbers in the same order). Float64 because the
keyed weights amplify float32 rounding to ~5e-5 over the six layers, on
either side.

detrex's DINO layout (``layout='detrex'``) is written from our detrex config's
model by ``detrex_dino_from_opera`` (the conversion rules read backwards)
rather than stored: detrex needs detectron2 to run, so a stored list would be
the same rules written down by hand. What anchors it to detrex's code is
checked by hand: the entry count of each part, counted from detrex's module
definitions, and names and shapes taken from them.
"""
import contextlib
import gzip
import json
import os.path as osp
import re
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, detection_inputs, run_in_repo
from keyed_weights import keyed_tensor
from test_hdetr_checkpoint import build as build_perturbed

import opera  # noqa: F401
from opera.models import build_detector
from opera.utils import load_config
from opera.converters.dino import detrex_dino_from_opera, dino_to_opera
from opera.converters.hdetr import COCO_CATEGORY_IDS, fill_untracked_bn

DATA = osp.join(REPO_ROOT, 'tests', 'data')
DINO_R50 = 'dino/dino_r50_4scale_12ep.py'
DETREX_R50 = 'dino/dino_r50_4scale_12ep_detrex.py'
TINY_DINO = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_dino.py')
IMAGE_SHAPES = [(320, 384), (256, 320)]
GT_BOXES = [[[20, 30, 200, 180], [150, 60, 370, 300], [40, 200, 120, 310]],
            [[10, 20, 300, 240]]]
GT_LABELS = [[3, 17, 0], [56]]
# DINO's loss names (unweighted) -> ours (weighted) and the weight.
LOSS_KINDS = {
    'ce': ('loss_cls', 1.0),
    'bbox': ('loss_bbox', 5.0),
    'giou': ('loss_iou', 2.0)
}


def layouts():
    path = osp.join(DATA, 'dino_r50_reference_layouts.json.gz')
    with gzip.open(path, 'rt') as f:
        return json.load(f)


def keyed_release(layout, dtype=torch.float32):
    """A DINO state dict of ``layout`` filled as the reference was: keyed
    by name, the shared branches by the name that holds their values."""
    values_from = layout['values_from']
    return {
        name: keyed_tensor(values_from.get(name, name),
                           tuple(shape)).to(dtype)
        for name, shape in layout['state_dict'].items()
    }


def build(config=DINO_R50):
    cfg = load_config(
        osp.join(REPO_ROOT, 'configs', config),
        {'model.backbone.init_cfg': None})
    return build_detector(cfg.model)


@pytest.mark.parametrize('layout', ['dino_release_91_classes',
                                    'dino_80_classes'])
def test_release_layout_converts_onto_the_dino_config(layout):
    released = keyed_release(layouts()[layout])
    converted, unknown = dino_to_opera(released)
    assert unknown == []
    model = build()
    fill_untracked_bn(converted, model.state_dict())
    model.load_state_dict(converted, strict=True)
    head = model.bbox_head
    # The decoder layers share one branch; the encoder keeps its own.
    assert head.cls_branches[0] is head.cls_branches[5]
    assert head.cls_branches[6] is not head.cls_branches[0]
    # Class rows: the COCO category ids of the 91-row release, in order.
    rows = list(COCO_CATEGORY_IDS) if '91' in layout else list(range(80))
    torch.testing.assert_close(
        head.cls_branches[6].weight,
        released['transformer.enc_out_class_embed.weight'][rows])
    torch.testing.assert_close(head.cls_branches[2].bias,
                               released['class_embed.5.bias'][rows])
    torch.testing.assert_close(head.group_makers[0].label_embedding.weight,
                               released['label_enc.weight'][rows])
    torch.testing.assert_close(head.query_embedding.weight,
                               released['transformer.tgt_embed.weight'])


def reference_batch(dtype):
    # Drawn in float32 whatever the default dtype, as the reference's were.
    gen = torch.Generator().manual_seed(0)
    img = torch.zeros(2, 3, *IMAGE_SHAPES[0], dtype=torch.float32)
    metas = []
    for i, (h, w) in enumerate(IMAGE_SHAPES):
        img[i, :, :h, :w] = torch.randn(
            3, h, w, generator=gen, dtype=torch.float32)
        metas.append(
            dict(
                img_shape=(h, w, 3),
                ori_shape=(2 * h, 2 * w, 3),
                pad_shape=IMAGE_SHAPES[0] + (3, ),
                batch_input_shape=IMAGE_SHAPES[0],
                scale_factor=np.full(4, 0.5, np.float32),
                flip=False))
    return img.to(dtype), metas


def our_loss_name(reference_name):
    """DINO's ``loss_{kind}[_dn][_{layer}]`` / ``loss_{kind}_interm`` ->
    ours and the weight ours carries; None for its logging entries."""
    parts = reference_name.split('_')[1:]
    if parts[0] not in LOSS_KINDS:
        return None
    name, weight = LOSS_KINDS[parts[0]]
    rest = parts[1:]
    if rest == ['interm']:
        return 'enc_' + name, weight
    if rest[:1] == ['dn']:
        name, rest = name + '_dn', rest[1:]
    return (f'd{rest[0]}.' if rest else '') + name, weight


@contextlib.contextmanager
def default_dtype(dtype):
    """The default dtype set to ``dtype`` for a block: the reference ran
    with float64 as its default (a model built and run with float32 as the
    default gives outputs 4e-10 apart)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope='module')
def dino_f64():
    """Our DINO R50 in float64 with DINO's keyed 80-class weights, built
    and loaded with float64 as the default dtype (as the reference was)."""
    with default_dtype(torch.float64):
        converted, _ = dino_to_opera(
            keyed_release(layouts()['dino_80_classes'], torch.float64))
        model = build()
        fill_untracked_bn(converted, model.state_dict())
        model.load_state_dict(converted, strict=True)
        return model.double()


def test_outputs_equal_dino_code(dino_f64):
    reference = np.load(osp.join(DATA, 'dino_r50_reference_outputs.npz'))
    img, metas = reference_batch(torch.float64)
    with torch.no_grad(), default_dtype(torch.float64):
        outputs = dino_f64.eval().bbox_head(dino_f64.extract_feat(img), metas)
    boxes = outputs['bbox_preds'][-1].numpy()
    logits = outputs['cls_scores'][-1].numpy()
    # All 900 queries, in DINO's order. Measured 3e-15 apart on the CPU
    # that made the fixture and 5e-8 on an AMD EPYC (AVX-512): float64
    # convolutions still take CPU-specific kernels. 1e-6 is far below any
    # difference in the model (a wrong layer moves these by > 1e-2).
    np.testing.assert_allclose(boxes, reference['pred_boxes'], rtol=0,
                               atol=1e-6)
    np.testing.assert_allclose(logits.max(-1), reference['pred_logits_max'],
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits[:, :20],
                               reference['pred_logits_first20'], rtol=0,
                               atol=1e-6)


def test_training_losses_equal_dino_code(dino_f64):
    reference = np.load(osp.join(DATA, 'dino_r50_reference_outputs.npz'))
    img, metas = reference_batch(torch.float64)
    boxes = [torch.tensor(b, dtype=torch.float64) for b in GT_BOXES]
    labels = [torch.tensor(label) for label in GT_LABELS]
    dino_f64.train()
    torch.manual_seed(0)
    with torch.no_grad(), default_dtype(torch.float64):
        losses = dino_f64.forward_train(img, metas, boxes, labels)
    compared = 0
    for name, value in zip(reference['loss_names'], reference['loss_values']):
        ours = our_loss_name(str(name))
        if ours is None:
            continue
        # Measured: class and L1 losses within 3e-8 (mmdet adds float32
        # eps to the normaliser), GIoU within 2e-6 (DINO's eps 1e-6 on
        # normalised areas).
        assert losses[ours[0]].item() / ours[1] == pytest.approx(
            value, rel=1e-5), (str(name), ours[0])
        compared += 1
    # ce / bbox / giou for 6 layers x (matching, denoising) + encoder.
    assert compared == 39


def test_converter_cli_converts_a_release_and_names_what_is_missing(
        tmp_path):
    released = keyed_release(layouts()['dino_release_91_classes'])
    good, bad = tmp_path / 'checkpoint0011_4scale.pth', tmp_path / 'bad.pth'
    torch.save({'model': released}, good)
    torch.save({'model': {k: v for k, v in released.items()
                          if k != 'transformer.tgt_embed.weight'}}, bad)
    tool = osp.join(REPO_ROOT, 'tools', 'model_converters',
                    'dino_to_opera.py')

    def convert(src, dst):
        return run_in_repo([
            sys.executable, tool, str(src), str(dst), '--config',
            osp.join(REPO_ROOT, 'configs', DINO_R50)
        ])

    ok = convert(good, tmp_path / 'opera.pth')
    assert ok.returncode == 0, ok.stderr
    converted = torch.load(tmp_path / 'opera.pth', weights_only=False)
    assert converted['meta'] == dict(
        layout='dino', converted_from='checkpoint0011_4scale.pth')
    model = build()
    model.load_state_dict(converted['state_dict'], strict=True)
    failed = convert(bad, tmp_path / 'never.pth')
    assert failed.returncode != 0
    assert ('missing in checkpoint: bbox_head.query_embedding.weight'
            in failed.stderr)
    assert not (tmp_path / 'never.pth').exists()


def keyed_detrex_release():
    """detrex's DINO-R50-4scale state dict, keyed by name; the decoder's
    aliases of the branches hold the branches' values, as in detrex."""
    layout = detrex_dino_from_opera(build(DETREX_R50).state_dict())
    return {
        name: keyed_tensor(
            re.sub(r'^transformer\.decoder\.(?=(class|bbox)_embed\.)', '',
                   name), tuple(value.shape)).float()
        for name, value in layout.items()
    }


def test_detrex_layout_has_detrex_names_and_counts():
    released = keyed_detrex_release()
    parts = {}
    for name in released:
        part = name.split('.')[0]
        if name.startswith(('transformer.decoder.class_embed.',
                            'transformer.decoder.bbox_embed.')):
            part = 'aliases'
        parts[part] = parts.get(part, 0) + 1
    # Counted from detrex's modules: R50 stem conv + FrozenBN (5), 16
    # bottlenecks x 3 convs x 5, 4 shortcuts x 5; ChannelMapper 4 x (conv
    # w, b, GN w, b); transformer: level_embeds, tgt_embed, enc_output (2),
    # enc_output_norm (2), 6 encoder layers x 16, 6 decoder layers x 22,
    # ref_point_head (4), norm (2); 7 class (2) and box (6) branches,
    # label_enc; the decoder's aliases of the 7 + 7 branches.
    assert parts == dict(backbone=5 + 16 * 15 + 4 * 5, neck=4 * 4,
                         transformer=6 + 6 * 16 + 6 * 22 + 4 + 2,
                         class_embed=7 * 2, bbox_embed=7 * 6, label_enc=1,
                         aliases=7 * 2 + 7 * 6)
    # Names and shapes from detrex's dino.py, dino_transformer.py,
    # ChannelMapper and detectron2's ResNet.
    expected = {
        'backbone.stem.conv1.norm.running_var': (64, ),
        'backbone.res2.0.shortcut.weight': (256, 64, 1, 1),
        'backbone.res5.2.conv3.norm.weight': (2048, ),
        'neck.convs.2.conv.weight': (256, 2048, 1, 1),
        'neck.extra_convs.0.conv.weight': (256, 2048, 3, 3),
        'neck.extra_convs.0.norm.bias': (256, ),
        'transformer.level_embeds': (4, 256),
        'transformer.encoder.layers.5.attentions.0.sampling_offsets.weight':
        (256, 256),
        'transformer.encoder.layers.0.ffns.0.layers.0.0.weight': (2048, 256),
        'transformer.decoder.layers.0.attentions.0.attn.in_proj_weight':
        (768, 256),
        'transformer.decoder.layers.5.attentions.1.value_proj.bias': (256, ),
        'transformer.decoder.layers.3.norms.2.weight': (256, ),
        'transformer.decoder.ref_point_head.layers.0.weight': (256, 512),
        'transformer.decoder.norm.weight': (256, ),
        'transformer.tgt_embed.weight': (900, 256),
        'transformer.enc_output_norm.bias': (256, ),
        'class_embed.6.weight': (80, 256),
        'bbox_embed.6.layers.2.weight': (4, 256),
        'transformer.decoder.class_embed.6.bias': (80, ),
        'label_enc.weight': (80, 256),
    }
    assert {k: tuple(released[k].shape) for k in expected} == expected


def test_detrex_release_converts_onto_the_detrex_config():
    released = keyed_detrex_release()
    converted, unknown = dino_to_opera(released, layout='detrex')
    assert unknown == []
    model = build(DETREX_R50)
    fill_untracked_bn(converted, model.state_dict())
    model.load_state_dict(converted, strict=True)
    head = model.bbox_head
    for i in range(7):
        # Every branch its own, with detrex's 80 rows in order.
        assert all(head.cls_branches[i] is not head.cls_branches[j]
                   for j in range(i))
        torch.testing.assert_close(head.cls_branches[i].weight,
                                   released[f'class_embed.{i}.weight'])
        torch.testing.assert_close(head.reg_branches[i][4].bias,
                                   released[f'bbox_embed.{i}.layers.2.bias'])
    assert not torch.equal(head.cls_branches[0].weight,
                           head.cls_branches[5].weight)
    torch.testing.assert_close(head.group_makers[0].label_embedding.weight,
                               released['label_enc.weight'])
    torch.testing.assert_close(head.query_embedding.weight,
                               released['transformer.tgt_embed.weight'])
    torch.testing.assert_close(
        model.backbone.layer1[0].downsample[1].running_var,
        released['backbone.res2.0.shortcut.norm.running_var'])
    torch.testing.assert_close(model.neck.extra_convs[0].gn.weight,
                               released['neck.extra_convs.0.norm.weight'])
    # Back to detrex's names: the same entries, the same values.
    written = detrex_dino_from_opera(model.state_dict())
    assert list(written) == list(released)
    assert all(torch.equal(written[k], released[k]) for k in released)


def head_outputs(model):
    inputs = detection_inputs([(96, 128), (64, 96)])
    with torch.no_grad():
        outputs = model.bbox_head(
            model.extract_feat(inputs['img']), inputs['img_metas'])
    return [(key, value) for key, value in sorted(outputs.items())
            if isinstance(value, torch.Tensor)]


def test_detrex_round_trip_gives_identical_outputs():
    unshared = {'model.bbox_head.share_decoder_branches': False}
    source = build_perturbed(0, TINY_DINO, unshared)
    target = build_perturbed(1, TINY_DINO, unshared)
    converted, unknown = dino_to_opera(
        detrex_dino_from_opera(source.state_dict()), layout='detrex')
    assert unknown == []
    target.load_state_dict(
        fill_untracked_bn(converted, target.state_dict()), strict=True)
    ours, theirs = head_outputs(source), head_outputs(target)
    assert [k for k, _ in theirs] == [
        'bbox_preds', 'cls_scores', 'enc_bbox_preds', 'enc_cls'
    ]
    for (key, a), (_, b) in zip(ours, theirs):
        assert torch.equal(a, b), key


def test_converter_cli_converts_a_detrex_release(tmp_path):
    src = tmp_path / 'dino_r50_4scale_12ep_49_2AP.pth'
    torch.save({'model': keyed_detrex_release()}, src)
    tool = osp.join(REPO_ROOT, 'tools', 'model_converters',
                    'dino_to_opera.py')

    def convert(config, dst):
        return run_in_repo([
            sys.executable, tool, str(src), str(dst), '--layout', 'detrex',
            '--config', osp.join(REPO_ROOT, 'configs', config)
        ])

    ok = convert(DETREX_R50, tmp_path / 'opera.pth')
    assert ok.returncode == 0, ok.stderr
    converted = torch.load(tmp_path / 'opera.pth', weights_only=False)
    assert converted['meta'] == dict(
        layout='dino_detrex', converted_from=src.name)
    build(DETREX_R50).load_state_dict(converted['state_dict'], strict=True)
    # A shared-branch config would keep one of the six decoder branches.
    shared = convert(DINO_R50, tmp_path / 'never.pth')
    assert shared.returncode != 0
    assert 'share_decoder_branches is True' in shared.stderr
    assert not (tmp_path / 'never.pth').exists()
