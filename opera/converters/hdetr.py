"""Key layouts of released H-Deformable-DETR checkpoints, and their conversion.

Two published layouts map onto this codebase's ``DETRDetectionHead``
models:

- ``official``: the H-Deformable-DETR repository (DETR-style code):
  torchvision ResNet names under ``backbone.0.body``, ``input_proj.*``,
  decoder norms named in a different order, 91-row class heads indexed by
  COCO category id.
- ``detrex``: detrex's ``projects/h_deformable_detr``: detectron2 ResNet
  names, a ChannelMapper neck, mmcv-style transformer names, 80-row heads.

Both are described by rename tables of key *templates* (``{i}`` matches a
layer index), read in either direction: ``to_opera`` converts a released
checkpoint, ``from_opera`` writes ours in a released layout (used by the
round-trip tests and to compare with the reference code).
"""
import re
from collections import OrderedDict

import torch
from mmdet.models.utils.ckpt_convert import swin_converter

# COCO category ids of the 80 classes, in mmdet's (sorted) class order.
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18,
                     19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35,
                     36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50,
                     51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
                     65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82,
                     84, 85, 86, 87, 88, 89, 90)
OFFICIAL_NUM_CLASSES = 91

_HEAD = 'bbox_head.'
_ENC = 'bbox_head.transformer.encoder.layers.{i}.'
_DEC = 'bbox_head.transformer.decoder.layers.{i}.'

# (released key prefix, opera key prefix). The first matching rule wins.
_SHARED_HEAD_RULES = [
    ('bbox_embed.{i}.layers.0.', _HEAD + 'reg_branches.{i}.0.'),
    ('bbox_embed.{i}.layers.1.', _HEAD + 'reg_branches.{i}.2.'),
    ('bbox_embed.{i}.layers.2.', _HEAD + 'reg_branches.{i}.4.'),
    ('class_embed.{i}.', _HEAD + 'cls_branches.{i}.'),
]

OFFICIAL_RULES = [
    ('backbone.0.body.', 'backbone.'),
    ('input_proj.{i}.0.', 'neck.convs.{i}.conv.'),
    ('input_proj.{i}.1.', 'neck.convs.{i}.gn.'),
    ('transformer.level_embed', _HEAD + 'transformer.level_embeds'),
    ('transformer.encoder.layers.{i}.self_attn.', _ENC + 'attentions.0.'),
    ('transformer.encoder.layers.{i}.linear1.', _ENC + 'ffns.0.layers.0.0.'),
    ('transformer.encoder.layers.{i}.linear2.', _ENC + 'ffns.0.layers.1.'),
    ('transformer.encoder.layers.{i}.norm1.', _ENC + 'norms.0.'),
    ('transformer.encoder.layers.{i}.norm2.', _ENC + 'norms.1.'),
    ('transformer.decoder.layers.{i}.self_attn.', _DEC + 'attentions.0.attn.'),
    ('transformer.decoder.layers.{i}.cross_attn.', _DEC + 'attentions.1.'),
    # The official decoder calls the post-self-attention norm "norm2" and
    # the post-cross-attention norm "norm1".
    ('transformer.decoder.layers.{i}.norm2.', _DEC + 'norms.0.'),
    ('transformer.decoder.layers.{i}.norm1.', _DEC + 'norms.1.'),
    ('transformer.decoder.layers.{i}.norm3.', _DEC + 'norms.2.'),
    ('transformer.decoder.layers.{i}.linear1.', _DEC + 'ffns.0.layers.0.0.'),
    ('transformer.decoder.layers.{i}.linear2.', _DEC + 'ffns.0.layers.1.'),
    ('transformer.', _HEAD + 'transformer.'),
    ('query_embed.', _HEAD + 'query_embedding.'),
] + _SHARED_HEAD_RULES

DETREX_RULES = [
    ('backbone.stem.conv1.norm.', 'backbone.bn1.'),
    ('backbone.stem.conv1.', 'backbone.conv1.'),
] + [
    rule for stage in range(2, 6) for rule in (
        (f'backbone.res{stage}.{{i}}.conv{{j}}.norm.',
         f'backbone.layer{stage - 1}.{{i}}.bn{{j}}.'),
        (f'backbone.res{stage}.{{i}}.conv{{j}}.',
         f'backbone.layer{stage - 1}.{{i}}.conv{{j}}.'),
        (f'backbone.res{stage}.{{i}}.shortcut.norm.',
         f'backbone.layer{stage - 1}.{{i}}.downsample.1.'),
        (f'backbone.res{stage}.{{i}}.shortcut.',
         f'backbone.layer{stage - 1}.{{i}}.downsample.0.'),
    )
] + [
    ('neck.convs.{i}.norm.', 'neck.convs.{i}.gn.'),
    ('neck.extra_convs.{i}.norm.', 'neck.extra_convs.{i}.gn.'),
    ('neck.', 'neck.'),
    ('transformer.', _HEAD + 'transformer.'),
    ('query_embedding.', _HEAD + 'query_embedding.'),
] + _SHARED_HEAD_RULES

LAYOUTS = dict(official=OFFICIAL_RULES, detrex=DETREX_RULES)

# Released keys that are aliases of others (the two-stage "hack" that hands
# the head's branches to the decoder).
_ALIAS_PREFIXES = ('transformer.decoder.class_embed.',
                   'transformer.decoder.bbox_embed.')


def _compile(template):
    pattern = re.escape(template)
    for name in ('i', 'j'):
        pattern = pattern.replace(
            re.escape(f'{{{name}}}'), f'(?P<{name}>\\d+)')
    return re.compile(pattern)


def _rename(key, rules, reverse):
    """Map one key through the first matching rule; None if none matches."""
    for released, ours in rules:
        source, target = (ours, released) if reverse else (released, ours)
        match = _compile(source).match(key)
        if match:
            return target.format(**match.groupdict()) + key[match.end():]
    return None


def _class_branch_index(opera_key):
    """Index i of ``bbox_head.cls_branches.i.*``, or None."""
    match = re.match(re.escape(_HEAD) + r'cls_branches\.(\d+)\.', opera_key)
    return int(match.group(1)) if match else None


def _official_class_rows(branch, num_branches):
    """Rows of a 91-row official class head that give our 80 columns.

    Decoder branches: row = COCO category id. The last branch scores the
    two-stage encoder proposals; it is trained class-agnostic on label 0 and
    proposals are ranked by its column 0, so our column 0 must be its row 0
    (the other columns only ever see negatives).
    """
    if branch == num_branches - 1:
        return [0] + list(COCO_CATEGORY_IDS[1:])
    return list(COCO_CATEGORY_IDS)


def _num_class_branches(keys):
    indices = {_class_branch_index(k) for k in keys} - {None}
    return max(indices) + 1 if indices else 0


def _num_backbone_levels(opera_keys):
    return len(
        {k.split('.')[2]
         for k in opera_keys if k.startswith('neck.convs.')})


def _official_extra_convs(key, num_levels, reverse):
    """input_proj.{num_levels + j} <-> neck.extra_convs.{j} (official only)."""
    if reverse:
        match = re.match(r'neck\.extra_convs\.(\d+)\.(conv|gn)\.', key)
        if match:
            index = num_levels + int(match.group(1))
            part = '0' if match.group(2) == 'conv' else '1'
            return f'input_proj.{index}.{part}.' + key[match.end():]
        return None
    match = re.match(r'input_proj\.(\d+)\.([01])\.', key)
    if match and int(match.group(1)) >= num_levels:
        index = int(match.group(1)) - num_levels
        part = 'conv' if match.group(2) == '0' else 'gn'
        return f'neck.extra_convs.{index}.{part}.' + key[match.end():]
    return None


def to_opera(state_dict, layout, num_backbone_levels=3):
    """Convert a released H-Deformable-DETR state dict to opera keys.

    Args:
        state_dict (dict[str, Tensor]): The released ``checkpoint['model']``.
        layout (str): 'official' or 'detrex'.
        num_backbone_levels (int): Backbone levels fed to the input
            projection (the rest of ``input_proj`` are extra levels).

    Returns:
        tuple[OrderedDict, list[str]]: The converted state dict and the
        released keys no rule knows (not converted).
    """
    rules = LAYOUTS[layout]
    converted, unknown = OrderedDict(), []
    num_branches = _num_class_branches(
        _rename(k, rules, reverse=False) or '' for k in state_dict)
    for key, value in state_dict.items():
        if key.startswith(_ALIAS_PREFIXES):
            continue
        new_key = None
        if layout == 'official':
            new_key = _official_extra_convs(key, num_backbone_levels, False)
        new_key = new_key or _rename(key, rules, reverse=False)
        if new_key is None:
            unknown.append(key)
            continue
        branch = _class_branch_index(new_key)
        if layout == 'official' and branch is not None:
            value = value[_official_class_rows(branch, num_branches)]
        converted[new_key] = value
    return _convert_swin_backbone(converted), unknown


def _convert_swin_backbone(state_dict):
    """Official Swin names under ``backbone.`` -> mmdet SwinTransformer's."""
    backbone = OrderedDict((k[len('backbone.'):], v)
                           for k, v in state_dict.items()
                           if k.startswith('backbone.'))
    if not any(k.startswith('patch_embed.proj') for k in backbone):
        return state_dict
    # swin_converter returns its keys with the 'backbone.' prefix.
    converted = swin_converter(backbone)
    converted.update((k, v) for k, v in state_dict.items()
                     if not k.startswith('backbone.'))
    return converted


def from_opera(state_dict, layout):
    """Write an opera H-Deformable-DETR state dict in a released layout.

    The inverse of :func:`to_opera` (official class heads get 91 rows, the
    rows no column maps to being zero weights with the lowest bias). BatchNorm ``num_batches_tracked`` buffers, which the released
    frozen BatchNorms do not have, are left out.
    """
    rules = LAYOUTS[layout]
    num_levels = _num_backbone_levels(state_dict)
    num_branches = _num_class_branches(state_dict)
    released = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        new_key = None
        if layout == 'official':
            new_key = _official_extra_convs(key, num_levels, True)
        new_key = new_key or _rename(key, rules, reverse=True)
        if new_key is None:
            raise KeyError(f'no {layout} name for opera key {key!r}')
        branch = _class_branch_index(key)
        if layout == 'official' and branch is not None:
            value = _expand_to_official_rows(
                value, _official_class_rows(branch, num_branches))
        released[new_key] = value
    return released


def _expand_to_official_rows(value, rows):
    if value.dim() == 1:  # bias: unused ids get the lowest prior
        full = value.new_full((OFFICIAL_NUM_CLASSES, ), value.min().item())
    else:
        full = value.new_zeros((OFFICIAL_NUM_CLASSES, ) + value.shape[1:])
    full[rows] = value
    return full


def fill_untracked_bn(state_dict, model_state):
    """Add ``num_batches_tracked`` buffers the released frozen BNs lack."""
    for key, value in model_state.items():
        if key.endswith('num_batches_tracked') and key not in state_dict:
            state_dict[key] = torch.zeros_like(value)
    return state_dict
