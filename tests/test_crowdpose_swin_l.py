"""CrowdPose Swin-L as Opera's: its checkpoint layout loads strictly.

Opera's CrowdPose checkpoint layout is derived here from the COCO Swin-L
layout of ``tests/data/opera_petr_checkpoint_layouts.json.gz`` (read off the
reference code) with the differences that Opera's
``petr_swin-l-p4-w7-224-22kto1k_16x1_100e_crowdpose.py`` has against its
COCO Swin-L config: 14 keypoints instead of 17, a 6-layer pose decoder
(7 class / keypoint branches: one per layer plus the proposals) and a
3-layer refine decoder. Drop path (0.3) has no weights.

The derivation was checked once against Opera's own code
(hikvision-research/opera at 91d0265, its CrowdPose Swin-L config built with
mmcv 1.7.2 / mmdet 2.28.2; ``transformers``, imported only by its DK-DETR,
stubbed): the same 774 entries and shapes, 220,444,755 trainable
parameters.
"""
import gzip
import json
import math
import os.path as osp
import re

import pytest
import torch
from mmcv.runner import load_checkpoint

from conftest import REPO_ROOT

import opera  # noqa: F401
from opera.models import build_detector
from opera.utils import load_config

CONFIG = 'petr/petr_swin-l-p4-w7-224-22kto1k_16x1_100e_crowdpose.py'
COCO_SWIN_L = 'petr/petr_swin-l-p4-w7-22kto1k_16x2_100e_coco.py'
K = 14
HEADS, LEVELS = 8, 4
# Entries repeated per layer / branch: pattern -> count in Opera's CrowdPose
# model (COCO: 3, 4, 4, 2, 2).
REPEATED = {
    r'bbox_head\.transformer\.decoder\.layers\.': 6,
    r'bbox_head\.cls_branches\.': 7,
    r'bbox_head\.kpt_branches\.': 7,
    r'bbox_head\.transformer\.refine_decoder\.layers\.': 3,
    r'bbox_head\.refine_kpt_branches\.': 3,
}
# Entries whose first dimension counts keypoints: pattern -> size.
PER_KEYPOINT = {
    r'^bbox_head\.fc_hm\.': K,
    r'^bbox_head\.transformer\.refine_query_embedding\.': K,
    r'^bbox_head\.kpt_branches\.\d+\.6\.': 2 * K,
    r'^bbox_head\.transformer\.decoder\.layers\.\d+\.attentions\.1\.'
    r'attention_weights\.': HEADS * LEVELS * K,
    r'^bbox_head\.transformer\.decoder\.layers\.\d+\.attentions\.1\.'
    r'sampling_offsets\.': HEADS * LEVELS * K * 2,
}


def coco_swin_l_layout():
    path = osp.join(REPO_ROOT, 'tests', 'data',
                    'opera_petr_checkpoint_layouts.json.gz')
    with gzip.open(path, 'rt') as f:
        return json.load(f)[COCO_SWIN_L]['state_dict']


def crowdpose_layout():
    """Opera's CrowdPose Swin-L state dict: name -> shape."""
    layout = {}
    for name, shape in coco_swin_l_layout().items():
        for prefix, count in REPEATED.items():
            found = re.match(f'({prefix})(\\d+)(\\..*)', name)
            if found:
                if found.group(2) == '0':  # layer / branch 0 as template
                    for i in range(count):
                        layout[f'{found.group(1)}{i}{found.group(3)}'] = shape
                break
        else:
            layout[name] = shape
    for name, shape in layout.items():
        for pattern, size in PER_KEYPOINT.items():
            if re.search(pattern, name):
                layout[name] = [size] + shape[1:]
    return layout


@pytest.fixture(scope='module')
def model():
    cfg = load_config(
        osp.join(REPO_ROOT, 'configs', CONFIG),
        {'model.backbone.init_cfg': None})
    return build_detector(cfg.model)


def test_derived_layout_counts_the_reference_parameters():
    layout = crowdpose_layout()
    trainable = sum(
        math.prod(shape) for name, shape in layout.items()
        if 'relative_position_index' not in name)  # Swin buffers
    # tests/test_param_counts.py holds the same number for the config.
    assert trainable == 220_444_755
    assert layout['bbox_head.kpt_branches.6.6.weight'] == [28, 512]
    assert 'bbox_head.transformer.decoder.layers.5.norms.2.weight' in layout


def test_state_dict_layout_equals_operas_crowdpose_model(model):
    expected = crowdpose_layout()
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == []  # missing here
    assert sorted(set(ours) - set(expected)) == []  # unknown to Opera
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}


def test_checkpoint_of_that_layout_loads_strictly(model, tmp_path):
    # Every entry filled with its own index, so that a value tells where it
    # came from.
    state = {
        name: torch.full(shape, float(i))
        for i, (name, shape) in enumerate(crowdpose_layout().items())
        if 'relative_position_index' not in name
    }
    for name, buffer in model.state_dict().items():
        if 'relative_position_index' in name:
            state[name] = buffer.clone()
    checkpoint = tmp_path / 'crowdpose_swin_l.pth'
    torch.save(dict(state_dict=state, meta=dict(CLASSES=('person', ))),
               checkpoint)
    load_checkpoint(model, str(checkpoint), map_location='cpu', strict=True)
    loaded = model.state_dict()
    for name in ('bbox_head.fc_hm.weight',
                 'bbox_head.transformer.decoder.layers.5.attentions.1.'
                 'sampling_offsets.weight'):
        assert torch.equal(loaded[name], state[name])
