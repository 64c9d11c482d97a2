"""Build a model from a config and a checkpoint for inference on images.

Run it on images or video frames with mmdet's ``inference_detector``, which
applies ``cfg.data.test.pipeline`` and works with opera's detectors too.
"""
import copy

import mmcv
from mmdet.datasets import DATASETS

from mmcv_custom.checkpoint import load_checkpoint_checked
from opera.models import build_detector
from opera.utils import load_config


def _class_names(cfg, checkpoint_meta):
    """Class names from the checkpoint, else from the test dataset config.

    mmdet falls back to the 80 COCO names, which would mislabel a pose
    model; the config's test dataset knows its own classes.
    """
    if 'CLASSES' in checkpoint_meta:
        return checkpoint_meta['CLASSES']
    test_cfg = cfg.data.test
    if isinstance(test_cfg, (list, tuple)):
        test_cfg = test_cfg[0]
    if test_cfg.get('classes') is not None:
        return test_cfg.classes
    return DATASETS.get(test_cfg.type).CLASSES


def init_model(config,
               checkpoint=None,
               device='cpu',
               cfg_options=None,
               strict=True):
    """Build a detector in eval mode, load its weights and class names.

    Args:
        config (str | mmcv.Config): Config file or config.
        checkpoint (str, optional): Weights to load; without them the
            model gets its random initialisation (``init_weights``, with no
            pretrained backbone).
        device (str): 'cpu', 'cuda' or 'cuda:N'.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        strict (bool): Checkpoint keys missing from the model or unexpected
            by it are errors (False: listed in a warning, and the missing
            weights keep their initial values). A weight of another shape
            is always an error. A checkpoint with EMA weights
            (``opera.EMAHook``) loads those, printing so.

    Returns:
        nn.Module: The model, with ``CLASSES`` and its config as ``cfg``
        (which mmdet's ``inference_detector`` reads).
    """
    if isinstance(config, mmcv.Config):
        cfg = copy.deepcopy(config)
        cfg.merge_from_dict(cfg_options or {})
    else:
        cfg = load_config(config, cfg_options)
    # No ImageNet download: a checkpoint replaces every weight, and random
    # weights need none.
    cfg.model.backbone.init_cfg = None
    cfg.model.train_cfg = None
    model = build_detector(cfg.model)
    meta = {}
    if checkpoint is None:
        # Some parameters are only allocated until init_weights fills them.
        model.init_weights()
    else:
        meta = load_checkpoint_checked(
            model, checkpoint, map_location='cpu', strict=strict,
            use_ema=True).get('meta', {})
    model.CLASSES = _class_names(cfg, meta)
    model.cfg = cfg
    return model.to(device).eval()
