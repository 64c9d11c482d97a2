"""Co-DETR (Sense-X/Co-DETR) checkpoint layout -> opera's.

Co-DETR's detector holds the DETR head as ``query_head`` and the auxiliary
heads beside it (``rpn_head``, ``roi_head.{j}``, ``bbox_head.{j}``, the
ATSS heads), with the per-head query layers and the pyramid's extra level
inside the query head. Opera holds all auxiliary parts in the detection
head's group maker ``bbox_head.group_makers.0`` (:class:`.
CoDETRAuxiliaryHeads`), one entry of ``heads`` per auxiliary head, RoI
heads first (Co-DETR's order, which is also the order of its per-head
layers):

=============================================  ==============================
Co-DETR                                        opera
=============================================  ==============================
``query_head.X``                               ``bbox_head.X``
``query_head.downsample.X``                    ``...pyramid.downsample.X``
``query_head.transformer.aux_pos_trans.i.X``   ``...heads.i.embedding.position.X``
``...aux_pos_trans_norm.i.X``                  ``...heads.i.embedding.position_norm.X``
``...pos_feats_trans.i.X``                     ``...heads.i.embedding.feature.X``
``...pos_feats_norm.i.X``                      ``...heads.i.embedding.feature_norm.X``
``...head_pos_embed.weight`` [n, 1]            ``...heads.i.embedding.head_offset`` (row i)
``rpn_head.X``                                 ``...heads.0.rpn_head.X``
``roi_head.j.X``                               ``...heads.j.roi_head.X``
``bbox_head.j.X``                              ``...heads.{R + j}.head.X`` (R RoI heads)
``backbone.X``, ``neck.X``                     the same
=============================================  ==============================

(``...`` is ``bbox_head.group_makers.0``.) Mask-head entries (Co-DETR's
instance segmentation models) have no place here and are returned as
unknown.
"""
import re

AUX = 'bbox_head.group_makers.0.'
_QUERY_LAYERS = dict(
    aux_pos_trans='position',
    aux_pos_trans_norm='position_norm',
    pos_feats_trans='feature',
    pos_feats_norm='feature_norm')
_QUERY_LAYER = re.compile(r'query_head\.transformer\.(' +
                          '|'.join(_QUERY_LAYERS) + r')\.(\d+)\.(.+)')
_INDEXED_HEAD = re.compile(r'(roi_head|bbox_head)\.(\d+)\.(.+)')
_HEAD_OFFSETS = 'query_head.transformer.head_pos_embed.weight'


def num_roi_heads(keys):
    """The RoI heads of a Co-DETR state dict (``roi_head.{j}.*``)."""
    indices = {
        int(match.group(2))
        for match in map(_INDEXED_HEAD.fullmatch, keys)
        if match and match.group(1) == 'roi_head'
    }
    return max(indices) + 1 if indices else 0


def rename(key, num_roi):
    """Opera's name of one Co-DETR entry, or None if it has none."""
    if key.startswith(('backbone.', 'neck.')):
        return key
    match = _QUERY_LAYER.fullmatch(key)
    if match:
        layer, index, rest = match.groups()
        return (f'{AUX}heads.{index}.embedding.'
                f'{_QUERY_LAYERS[layer]}.{rest}')
    if key.startswith('query_head.downsample.'):
        return AUX + 'pyramid.' + key[len('query_head.'):]
    if key.startswith('query_head.'):
        return 'bbox_head.' + key[len('query_head.'):]
    if key.startswith('rpn_head.'):
        if num_roi != 1:
            return None  # one RPN per RoI head here
        return f'{AUX}heads.0.{key}'
    match = _INDEXED_HEAD.fullmatch(key)
    if match:
        kind, index, rest = match.groups()
        if kind == 'roi_head':
            return f'{AUX}heads.{index}.roi_head.{rest}'
        return f'{AUX}heads.{num_roi + int(index)}.head.{rest}'
    return None


def to_opera(state_dict):
    """Rename a Co-DETR state dict into opera's layout.

    Args:
        state_dict (dict[str, Tensor]): Co-DETR's (a checkpoint's
            ``state_dict``).

    Returns:
        tuple[dict, list[str]]: The converted entries, and the Co-DETR keys
        that have no opera name (sorted).
    """
    num_roi = num_roi_heads(state_dict)
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if key == _HEAD_OFFSETS:
            # One number per auxiliary head (Co-DETR's [heads, 1] table).
            for index, row in enumerate(value):
                converted[f'{AUX}heads.{index}.embedding.head_offset'] = (
                    row.clone())
            continue
        new_key = rename(key, num_roi)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    return converted, sorted(unknown)
