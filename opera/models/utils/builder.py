"""Transformer registries of opera, children of mmdet's and mmcv's.

mmdet heads build their transformer through mmdet's ``TRANSFORMER`` registry
and mmcv layers build their attentions and layer sequences through mmcv's;
as children, ours are reachable from both as ``opera.X``.
"""
from mmcv.cnn.bricks.registry import ATTENTION as MMCV_ATTENTION
from mmcv.cnn.bricks.registry import \
    TRANSFORMER_LAYER_SEQUENCE as MMCV_TRANSFORMER_LAYER_SEQUENCE
from mmcv.utils import Registry
from mmdet.models.utils.builder import TRANSFORMER as MMDET_TRANSFORMER

TRANSFORMER = Registry('Transformer', parent=MMDET_TRANSFORMER, scope='opera')
TRANSFORMER_LAYER_SEQUENCE = Registry(
    'transformer-layers sequence',
    parent=MMCV_TRANSFORMER_LAYER_SEQUENCE,
    scope='opera')
ATTENTION = Registry('attention', parent=MMCV_ATTENTION, scope='opera')
