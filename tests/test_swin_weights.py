"""Official Swin weights load into our Swin configs, by path or converter."""
from collections import OrderedDict

import torch
from mmcv import Config

from conftest import REPO_ROOT

import opera  # noqa: F401
from opera.models import build_detector
from opera.converters.hdetr import to_opera

TINY_HYBRID = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'
TINY_SWIN = dict(
    _delete_=True,
    type='SwinTransformer',
    embed_dims=32,
    depths=[1, 1, 1, 1],
    num_heads=[1, 2, 4, 8],
    window_size=7,
    out_indices=(1, 2, 3),
    convert_weights=True)


def tiny_swin_detector(init_cfg=None):
    cfg = Config.fromfile(TINY_HYBRID)
    cfg.merge_from_dict(
        dict(model=dict(backbone=dict(TINY_SWIN, init_cfg=init_cfg))))
    cfg.model.neck.in_channels = [64, 128, 256]
    torch.manual_seed(0)
    return build_detector(cfg.model)


def merging_order_to_official(x):
    """Undo mmdet's reordering of a patch-merging weight's 4 input groups."""
    if x.dim() == 1:
        return x.reshape(-1, 4).t()[[0, 2, 1, 3]].reshape(-1)
    out_channels = x.size(0)
    return x.reshape(out_channels, -1, 4).transpose(1, 2)[:, [0, 2, 1, 3]] \
        .reshape(out_channels, -1)


def to_official_swin(mmdet_backbone_state):
    """Our (mmdet) Swin keys -> the official Swin repository's keys."""
    official = OrderedDict()
    for key, value in mmdet_backbone_state.items():
        if 'relative_position_index' in key:
            continue  # a buffer the official checkpoints also carry; rebuilt
        new = key.replace('stages', 'layers', 1)
        new = new.replace('attn.w_msa.', 'attn.')
        new = new.replace('ffn.layers.0.0.', 'mlp.fc1.')
        new = new.replace('ffn.layers.1.', 'mlp.fc2.')
        new = new.replace('patch_embed.projection', 'patch_embed.proj')
        if 'downsample' in key:
            value = merging_order_to_official(value)
        official[new] = value
    return official


def backbone_state(model):
    return {
        k[len('backbone.'):]: v
        for k, v in model.state_dict().items() if k.startswith('backbone.')
    }


def test_official_swin_checkpoint_loads_through_init_cfg(tmp_path):
    source = tiny_swin_detector()
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.normal_()
    path = tmp_path / 'swin_official.pth'
    torch.save({'model': to_official_swin(backbone_state(source))}, path)

    model = tiny_swin_detector(
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    loaded = backbone_state(model)
    for key, value in backbone_state(source).items():
        assert torch.equal(loaded[key], value), key


def test_released_swin_detector_converts():
    model = tiny_swin_detector()
    state = model.state_dict()
    released = {
        'backbone.0.body.' + k: v
        for k, v in to_official_swin(backbone_state(model)).items()
    }
    converted, unknown = to_opera(released, 'official')
    assert unknown == []
    for key, value in converted.items():
        assert torch.equal(state[key], value), key
    missing = {
        k for k in state if k.startswith('backbone.')
        and 'relative_position_index' not in k
    } - set(converted)
    assert missing == set()
