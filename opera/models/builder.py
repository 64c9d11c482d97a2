"""The registries of opera's models.

``MODELS`` is a child of mmcv's root model registry, so a config built here can
name ``opera.X`` (ours), ``mmdet.X`` and ``mmcv.X`` side by side. Unscoped
names resolve in opera's own registry. Every module of opera is registered in
one of these registries and named ``opera.X`` in configs.
"""
from mmcv.cnn import MODELS as MMCV_MODELS
from mmcv.cnn.bricks.registry import ATTENTION as MMCV_ATTENTION
from mmcv.cnn.bricks.registry import \
    TRANSFORMER_LAYER_SEQUENCE as MMCV_TRANSFORMER_LAYER_SEQUENCE
from mmcv.utils import Registry
from mmdet.models.utils.builder import TRANSFORMER as MMDET_TRANSFORMER

MODELS = Registry('models', parent=MMCV_MODELS, scope='opera')
# mmdet heads build their transformer through mmdet's TRANSFORMER registry and
# mmcv layers their attentions and layer sequences through mmcv's; as their
# children, ours are reachable from both as ``opera.X``.
TRANSFORMER = Registry('Transformer', parent=MMDET_TRANSFORMER, scope='opera')
TRANSFORMER_LAYER_SEQUENCE = Registry(
    'transformer-layers sequence',
    parent=MMCV_TRANSFORMER_LAYER_SEQUENCE,
    scope='opera')
ATTENTION = Registry('attention', parent=MMCV_ATTENTION, scope='opera')

BACKBONES = MODELS
NECKS = MODELS
HEADS = MODELS
LOSSES = MODELS
DETECTORS = MODELS


def build_model(cfg, train_cfg=None, test_cfg=None):
    """Build a detector (or any model) from its config dict."""
    if train_cfg is not None or test_cfg is not None:
        raise ValueError('Put train_cfg and test_cfg inside the model config.')
    return MODELS.build(cfg)


build_detector = build_model
