"""Co-DETR (Sense-X/Co-DETR) checkpoint layouts -> opera's.

Co-DETR's detector holds the DETR head as ``query_head`` and the auxiliary
heads beside it (``rpn_head``, ``roi_head.{j}``, ``bbox_head.{j}``, the
ATSS heads), with the per-head query layers and the pyramid's extra level
inside the query head. Opera holds all auxiliary parts in one group maker
of the detection head, :class:`.CoDETRAuxiliaryQueries` (``AUX`` below), one
entry of ``heads`` per auxiliary head, RoI heads first (Co-DETR's order,
which is also the order of its per-head layers). Two layouts:

- Co-Deformable-DETR: ``AUX`` is ``bbox_head.group_makers.0``;
- Co-DINO (a ``query_head.label_embedding``: the denoising labels): the
  denoising maker is ``bbox_head.group_makers.0`` and ``AUX``
  ``bbox_head.group_makers.1``; the content queries move to the head.

=============================================  ==============================
Co-DETR                                        opera
=============================================  ==============================
``query_head.X``                               ``bbox_head.X``
``query_head.downsample.X``                    ``AUX.pyramid.downsample.X``
``rpn_head.X``                                 ``AUX.heads.0.rpn_head.X``
``roi_head.j.X``                               ``AUX.heads.j.roi_head.X``
``bbox_head.j.X``                              ``AUX.heads.{R + j}.head.X`` (R RoI heads)
``backbone.X``, ``neck.X``                     the same
Co-Deformable-DETR's query layers (``query_head.transformer.`` omitted):
``aux_pos_trans.i.X``                          ``AUX.heads.i.embedding.position.X``
``aux_pos_trans_norm.i.X``                     ``AUX.heads.i.embedding.position_norm.X``
``pos_feats_trans.i.X``                        ``AUX.heads.i.embedding.feature.X``
``pos_feats_norm.i.X``                         ``AUX.heads.i.embedding.feature_norm.X``
``head_pos_embed.weight`` [n, 1]               ``AUX.heads.i.embedding.head_offset`` (row i)
Co-DINO's:
``aux_pos_trans.i.X``                          ``AUX.heads.i.embedding.content.X``
``aux_pos_trans_norm.i.X``                     ``AUX.heads.i.embedding.content_norm.X``
``query_embed.weight``                         ``bbox_head.query_embedding.weight``
``query_head.label_embedding.weight``          ``bbox_head.group_makers.0.label_embedding.weight``
=============================================  ==============================

Mask-head entries (Co-DETR's instance segmentation models) have no place
here and are returned as unknown.
"""
import re

from .dino import LABEL_EMBEDDING

CO_DEFORMABLE_DETR = dict(
    aux='bbox_head.group_makers.0.',
    query_layers=dict(
        aux_pos_trans='position',
        aux_pos_trans_norm='position_norm',
        pos_feats_trans='feature',
        pos_feats_norm='feature_norm'),
    # Its [heads, 1] per-head offset table becomes one number per head.
    head_offsets=True,
    moved={})
CO_DINO = dict(
    aux='bbox_head.group_makers.1.',
    query_layers=dict(
        aux_pos_trans='content', aux_pos_trans_norm='content_norm'),
    head_offsets=False,
    moved={
        'query_head.transformer.query_embed.weight':
        'bbox_head.query_embedding.weight',
        'query_head.label_embedding.weight': LABEL_EMBEDDING + 'weight',
    })
# Any layout's query layers (Co-Deformable-DETR has them all); a layout
# without one reports its entries as unknown.
_QUERY_LAYER = re.compile(r'query_head\.transformer\.(' +
                          '|'.join(CO_DEFORMABLE_DETR['query_layers']) +
                          r')\.(\d+)\.(.+)')
_INDEXED_HEAD = re.compile(r'(roi_head|bbox_head)\.(\d+)\.(.+)')
_HEAD_OFFSETS = 'query_head.transformer.head_pos_embed.weight'


def layout_of(keys):
    """The layout of a Co-DETR state dict: Co-DINO's has the denoising
    label embedding."""
    return (CO_DINO if 'query_head.label_embedding.weight' in keys else
            CO_DEFORMABLE_DETR)


def num_roi_heads(keys):
    """The RoI heads of a Co-DETR state dict (``roi_head.{j}.*``)."""
    indices = {
        int(match.group(2))
        for match in map(_INDEXED_HEAD.fullmatch, keys)
        if match and match.group(1) == 'roi_head'
    }
    return max(indices) + 1 if indices else 0


def rename(key, num_roi, layout=CO_DEFORMABLE_DETR):
    """Opera's name of one Co-DETR entry, or None if it has none."""
    aux = layout['aux']
    if key.startswith(('backbone.', 'neck.')):
        return key
    if key in layout['moved']:
        return layout['moved'][key]
    match = _QUERY_LAYER.fullmatch(key)
    if match:
        layer, index, rest = match.groups()
        if layer not in layout['query_layers']:
            return None
        return (f'{aux}heads.{index}.embedding.'
                f'{layout["query_layers"][layer]}.{rest}')
    if key.startswith('query_head.downsample.'):
        return aux + 'pyramid.' + key[len('query_head.'):]
    if key.startswith('query_head.'):
        return 'bbox_head.' + key[len('query_head.'):]
    if key.startswith('rpn_head.'):
        if num_roi != 1:
            return None  # one RPN per RoI head here
        return f'{aux}heads.0.{key}'
    match = _INDEXED_HEAD.fullmatch(key)
    if match:
        kind, index, rest = match.groups()
        if kind == 'roi_head':
            return f'{aux}heads.{index}.roi_head.{rest}'
        return f'{aux}heads.{num_roi + int(index)}.head.{rest}'
    return None


def to_opera(state_dict):
    """Rename a Co-DETR state dict (Co-Deformable-DETR's or Co-DINO's) into
    opera's layout.

    Args:
        state_dict (dict[str, Tensor]): Co-DETR's (a checkpoint's
            ``state_dict``).

    Returns:
        tuple[dict, list[str]]: The converted entries, and the Co-DETR keys
        that have no opera name (sorted).
    """
    num_roi = num_roi_heads(state_dict)
    layout = layout_of(state_dict)
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if key == _HEAD_OFFSETS and layout['head_offsets']:
            for index, row in enumerate(value):
                converted[f'{layout["aux"]}heads.{index}.embedding.'
                          f'head_offset'] = row.clone()
            continue
        new_key = rename(key, num_roi, layout)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    return converted, sorted(unknown)
