"""Released H-Deformable-DETR checkpoint layouts convert without loss."""
import subprocess
import sys

import pytest
import torch
from mmcv import Config

from conftest import REPO_ROOT, detection_inputs

import opera  # noqa: F401
from opera.models import build_detector
from opera.converters.hdetr import (COCO_CATEGORY_IDS, fill_untracked_bn,
                                    from_opera, to_opera)

TINY_HYBRID = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'


def build(seed, config=TINY_HYBRID, cfg_options=None):
    """A tiny detector with seeded weights; its heads' branches and norms
    perturbed (also used for DINO's round trip)."""
    torch.manual_seed(seed)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(cfg_options or {})
    model = build_detector(cfg.model)
    model.init_weights()
    # Non-trivial heads and norms, so a swapped key would change outputs.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name or 'branches' in name or 'gn' in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def outputs(model):
    inputs = detection_inputs([(96, 128), (64, 96)])
    with torch.no_grad():
        feats = model.extract_feat(inputs['img'])
        outs = model.bbox_head(feats, inputs['img_metas'])
    return (outs['cls_scores'], outs['bbox_preds'], outs['enc_cls'],
            outs['enc_bbox_preds'])


@pytest.mark.parametrize('layout', ['official', 'detrex'])
def test_round_trip_gives_identical_outputs(layout):
    source = build(seed=0)
    released = from_opera(source.state_dict(), layout)
    converted, unknown = to_opera(released, layout)
    assert unknown == []
    target = build(seed=1)
    target.load_state_dict(
        fill_untracked_bn(converted, target.state_dict()), strict=True)
    for a, b in zip(outputs(source), outputs(target)):
        assert torch.equal(a, b)


def test_official_layout_names_and_class_rows():
    state = build(seed=0).state_dict()
    released = from_opera(state, 'official')
    # Decoder norm order is swapped in the official code.
    torch.testing.assert_close(
        released['transformer.decoder.layers.0.norm2.weight'],
        state['bbox_head.transformer.decoder.layers.0.norms.0.weight'])
    torch.testing.assert_close(
        released['transformer.decoder.layers.0.norm1.weight'],
        state['bbox_head.transformer.decoder.layers.0.norms.1.weight'])
    assert 'input_proj.3.0.bias' in released  # extra level, conv with bias
    assert 'backbone.0.body.layer1.0.conv1.weight' in released
    assert released['query_embed.weight'].shape == (60, 256)
    # 91 rows indexed by COCO category id; our row i is category id[i].
    cls_weight = released['class_embed.0.weight']
    assert cls_weight.shape[0] == 91
    torch.testing.assert_close(cls_weight[90],
                               state['bbox_head.cls_branches.0.weight'][79])
    torch.testing.assert_close(cls_weight[COCO_CATEGORY_IDS[11]],
                               state['bbox_head.cls_branches.0.weight'][11])
    # The encoder branch (last, index 2 with 2 decoder layers) ranks
    # proposals by column 0, which is row 0 (category id 0) officially.
    torch.testing.assert_close(released['class_embed.2.weight'][0],
                               state['bbox_head.cls_branches.2.weight'][0])


def test_aliases_dropped_and_unknown_keys_reported():
    released = from_opera(build(seed=0).state_dict(), 'official')
    released['transformer.decoder.class_embed.0.weight'] = torch.zeros(1)
    released['some_new_module.weight'] = torch.zeros(1)
    converted, unknown = to_opera(released, 'official')
    assert unknown == ['some_new_module.weight']
    assert not any('decoder.class_embed' in k for k in converted)


def test_converter_cli_reports_missing_keys_by_name(tmp_path):
    released = from_opera(build(seed=0).state_dict(), 'official')
    good, bad = tmp_path / 'released.pth', tmp_path / 'broken.pth'
    torch.save({'model': released}, good)
    broken = dict(released)
    del broken['transformer.level_embed']
    torch.save({'model': broken}, bad)
    tool = f'{REPO_ROOT}/tools/model_converters/hdetr_to_opera.py'

    def convert(src, dst):
        return subprocess.run([
            sys.executable, tool, str(src), str(dst), '--layout', 'official',
            '--config', TINY_HYBRID
        ], capture_output=True, text=True, cwd=REPO_ROOT)

    ok = convert(good, tmp_path / 'opera.pth')
    assert ok.returncode == 0, ok.stderr
    converted = torch.load(tmp_path / 'opera.pth', weights_only=False)
    model = build(seed=1)
    model.load_state_dict(converted['state_dict'], strict=True)

    failed = convert(bad, tmp_path / 'never.pth')
    assert failed.returncode != 0
    assert 'bbox_head.transformer.level_embeds' in failed.stderr
    assert not (tmp_path / 'never.pth').exists()
