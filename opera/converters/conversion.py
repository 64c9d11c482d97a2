"""What the checkpoint converters share: reading a released checkpoint,
checking the converted one against a config's model, writing it."""
import os
import os.path as osp
import sys

import torch
from mmcv import Config

from mmcv_custom import write_atomic
from opera.models import build_detector
from .hdetr import fill_untracked_bn


def load_released(path, entry='model'):
    """The state dict of a release: its ``model`` entry for DETR-style code
    (H-Deformable-DETR, DINO, detrex), ``state_dict`` for mmdet's
    (Co-DETR)."""
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if isinstance(checkpoint, dict) and entry in checkpoint:
        return checkpoint[entry]
    kind = ('H-Deformable-DETR / DINO / detrex' if entry == 'model' else
            'mmdet (Co-DETR)')
    raise KeyError(f'{path} has no "{entry}" entry: not a released {kind} '
                   f'checkpoint')


def check_against_config(state_dict, config_path):
    """Load into the config's model; return (missing, unexpected) keys."""
    cfg = Config.fromfile(config_path)
    cfg.model.backbone.init_cfg = None
    model = build_detector(cfg.model)
    model_state = model.state_dict()
    fill_untracked_bn(state_dict, model_state)
    missing = sorted(set(model_state) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(model_state))
    wrong_shape = sorted(
        f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
        f'{tuple(model_state[k].shape)}' for k in set(model_state)
        & set(state_dict) if state_dict[k].shape != model_state[k].shape)
    return missing, unexpected + wrong_shape


def write_converted(dst, state_dict, meta):
    """Write ``dict(state_dict, meta)`` to ``dst`` atomically."""
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    write_atomic(dst, lambda path: torch.save(
        dict(state_dict=state_dict, meta=meta), path))


def finish_conversion(src, dst, state_dict, unknown, config, meta):
    """Check a converted state dict and write it, or exit naming every
    problem: released keys no rule knows, and with ``config`` the keys
    its model misses or does not have (or whose shapes differ)."""
    problems = [f'unknown released key (not converted): {k}' for k in unknown]
    if config:
        missing, unexpected = check_against_config(state_dict, config)
        problems += [f'missing in checkpoint: {k}' for k in missing]
        problems += [f'not in model: {k}' for k in unexpected]
    if problems:
        print('\n'.join(problems), file=sys.stderr)
        sys.exit(f'conversion of {src} failed: {len(problems)} problem(s)')
    write_converted(dst, state_dict,
                    dict(meta, converted_from=osp.basename(src)))
    print(f'wrote {dst} ({len(state_dict)} tensors)')
