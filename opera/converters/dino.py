"""Key layout of released DINO checkpoints, and their conversion.

IDEA-Research/DINO's ``checkpoint{epochs}_{scales}scale.pth`` files keep the
Deformable-DETR names of the H-Deformable-DETR release (torchvision ResNet
under ``backbone.0.body``, ``input_proj.*``, DETR-style transformer layers,
91-row class heads indexed by COCO category id; see
:mod:`.hdetr`) and add DINO's parts:

- ``transformer.tgt_embed`` (the content queries) -> the head's
  ``query_embedding``;
- ``transformer.enc_out_class_embed`` / ``enc_out_bbox_embed`` (the encoder
  proposals' branches) -> the last class / box branch;
- ``class_embed.{i}`` / ``bbox_embed.{i}``: one module shared by the decoder
  layers, saved once per layer -> ``cls_branches.{i}`` / ``reg_branches.{i}``
  (shared here too);
- ``transformer.decoder.ref_point_head`` (an MLP) and
  ``transformer.decoder.norm``;
- ``label_enc`` (the denoising label embedding, ``dn_labelbook_size + 1``
  rows, the last unused) -> the denoising maker's ``label_embedding``.

A checkpoint with 80-class heads (a DINO trained with ``num_classes=80``)
keeps its rows in order.

detrex's ``projects/dino`` (``layout='detrex'``) saves the same model under
the names of its H-Deformable-DETR (:data:`.hdetr.DETREX_RULES`:
detectron2 ResNet, ChannelMapper neck, mmcv-style transformer layers) plus
the DINO parts above, with three differences: its decoder layers' branches
are independent copies, the encoder's branches are the last ones
(``class_embed.{n}`` / ``bbox_embed.{n}``), and its class heads and
``label_enc`` have one row per class in our order (``num_classes`` rows),
kept as they are. :func:`detrex_dino_from_opera` writes ours in that layout.
"""
import re
from collections import OrderedDict

from .hdetr import (_ALIAS_PREFIXES, _HEAD, COCO_CATEGORY_IDS, DETREX_RULES,
                    OFFICIAL_RULES, _convert_swin_backbone,
                    _official_extra_convs, _rename)

NUM_COCO_CLASSES = len(COCO_CATEGORY_IDS)

# The denoising maker of DINO's configs is the head's first group maker.
LABEL_EMBEDDING = _HEAD + 'group_makers.0.label_embedding.'

# DINO's parts, named alike in both layouts; they come first so that the
# layouts' generic ``transformer.`` rule does not take them.
_DINO_PARTS = [
    ('transformer.tgt_embed.', _HEAD + 'query_embedding.'),
    ('transformer.decoder.ref_point_head.layers.0.',
     _HEAD + 'transformer.decoder.ref_point_head.0.'),
    ('transformer.decoder.ref_point_head.layers.1.',
     _HEAD + 'transformer.decoder.ref_point_head.2.'),
    ('label_enc.', LABEL_EMBEDDING),
]
DINO_RULES = _DINO_PARTS + OFFICIAL_RULES
DETREX_DINO_RULES = _DINO_PARTS + DETREX_RULES
DINO_LAYOUTS = dict(official=DINO_RULES, detrex=DETREX_DINO_RULES)


def _encoder_branches_last(key, num_decoder_layers):
    """``transformer.enc_out_{class,bbox}_embed.*`` -> the names of the
    branch after the decoder layers' (``{class,bbox}_embed.{n}.*``)."""
    match = re.match(r'transformer\.enc_out_(class|bbox)_embed\.', key)
    if match:
        return (f'{match.group(1)}_embed.{num_decoder_layers}.' +
                key[match.end():])
    return key


def _is_class_rows(opera_key):
    return (re.match(re.escape(_HEAD) + r'cls_branches\.\d+\.', opera_key)
            or opera_key.startswith(LABEL_EMBEDDING))


def _our_class_rows(value):
    """The 80 classes' rows of a released class branch or label embedding:
    by COCO category id (91 classes, +1 unused row for the label
    embedding), or the first 80 (an 80-class DINO)."""
    if value.size(0) in (91, 92):
        return value[list(COCO_CATEGORY_IDS)]
    if value.size(0) in (NUM_COCO_CLASSES, NUM_COCO_CLASSES + 1):
        return value[:NUM_COCO_CLASSES]
    raise ValueError(f'a DINO class head has 91 (COCO ids) or 80 rows, '
                     f'this one {value.size(0)}')


def dino_to_opera(state_dict,
                  num_decoder_layers=6,
                  num_backbone_levels=3,
                  layout='official'):
    """Convert a released DINO state dict to this codebase's keys.

    Args:
        state_dict (dict[str, Tensor]): The released ``checkpoint['model']``.
        num_decoder_layers (int): Decoder layers (the encoder branches come
            after theirs; official layout).
        num_backbone_levels (int): Backbone levels fed to the input
            projection (3 for 4-scale, 4 for 5-scale; the rest of
            ``input_proj`` are extra levels; official layout).
        layout (str): 'official' (IDEA-Research/DINO) or 'detrex'.

    Returns:
        tuple[OrderedDict, list[str]]: The converted state dict and the
        released keys no rule knows (not converted).
    """
    if layout not in DINO_LAYOUTS:
        raise ValueError(f'DINO checkpoint layouts are '
                         f'{sorted(DINO_LAYOUTS)}, not {layout!r}')
    converted, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        if key.startswith(_ALIAS_PREFIXES):
            continue
        if layout == 'official':
            key = _encoder_branches_last(key, num_decoder_layers)
            new_key = (_official_extra_convs(key, num_backbone_levels, False)
                       or _rename(key, DINO_RULES, reverse=False))
        else:
            new_key = _rename(key, DETREX_DINO_RULES, reverse=False)
        if new_key is None:
            unknown.append(key)
            continue
        if layout == 'official' and _is_class_rows(new_key):
            value = _our_class_rows(value)
        converted[new_key] = value
    return _convert_swin_backbone(converted), unknown


def detrex_dino_from_opera(state_dict):
    """Write an opera DINO state dict as detrex's DINO saves it.

    The inverse of ``dino_to_opera(..., layout='detrex')``, with the
    decoder's aliases of the branches
    (``transformer.decoder.{class,bbox}_embed.*``) that detrex's checkpoints
    carry. BatchNorm ``num_batches_tracked`` buffers, which detectron2's
    frozen BatchNorms do not have, are left out.

    Raises:
        KeyError: An opera key no detrex rule names.
    """
    released = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        new_key = _rename(key, DETREX_DINO_RULES, reverse=True)
        if new_key is None:
            raise KeyError(f'no detrex DINO name for opera key {key!r}')
        released[new_key] = value
    aliases = [('transformer.decoder.' + key, value)
               for key, value in released.items()
               if key.startswith(('class_embed.', 'bbox_embed.'))]
    released.update(aliases)
    return released
