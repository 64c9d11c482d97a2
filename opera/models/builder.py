"""Model registry of opera.

``MODELS`` is a child of mmcv's root model registry, so a config built here can
name ``opera.X`` (ours), ``mmdet.X`` and ``mmcv.X`` side by side. Unscoped names
resolve in opera's own registry.
"""
from mmcv.cnn import MODELS as MMCV_MODELS
from mmcv.utils import Registry

MODELS = Registry('models', parent=MMCV_MODELS, scope='opera')

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
