"""Convert a released Co-DETR (Sense-X/Co-DETR) checkpoint into opera's.

    python tools/model_converters/codetr_to_opera.py SRC DST \
        --config configs/co_detr/co_deformable_detr_r50_12ep.py

Co-DETR's checkpoints are mmdet checkpoints (``state_dict``); the names
change as ``opera.utils.codetr_checkpoint`` lists. With ``--config`` the
result is loaded into that config's model and every missing, unexpected or
misshapen key is reported by name (and the conversion fails).
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmcv import Config

from mmcv_custom import write_atomic
from opera.utils.codetr_checkpoint import to_opera


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='released Co-DETR checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the opera checkpoint')
    parser.add_argument(
        '--config', help='opera config the checkpoint is for (to check keys)')
    return parser.parse_args()


def load_released(path):
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        return checkpoint['state_dict']
    raise KeyError(f'{path} has no "state_dict" entry: not an mmdet '
                   f'checkpoint as Co-DETR releases them')


def key_problems(state_dict, config_path):
    """Keys of the config's model missing from ``state_dict``, keys it does
    not have, and entries whose shapes differ, each in words."""
    import opera  # noqa: F401  (registers modules)
    from opera.models import build_detector
    cfg = Config.fromfile(config_path)
    cfg.model.backbone.init_cfg = None
    model_state = build_detector(cfg.model).state_dict()
    problems = [f'missing in checkpoint: {k}'
                for k in sorted(set(model_state) - set(state_dict))]
    problems += [f'not in model: {k}'
                 for k in sorted(set(state_dict) - set(model_state))]
    problems += [
        f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
        f'{tuple(model_state[k].shape)}'
        for k in sorted(set(model_state) & set(state_dict))
        if state_dict[k].shape != model_state[k].shape
    ]
    return problems


def main():
    args = parse_args()
    state_dict, unknown = to_opera(load_released(args.src))
    problems = [f'unknown Co-DETR key (not converted): {k}' for k in unknown]
    if args.config:
        problems += key_problems(state_dict, args.config)
    if problems:
        print('\n'.join(problems), file=sys.stderr)
        sys.exit(f'conversion of {args.src} failed: {len(problems)} problem(s)')
    meta = dict(converted_from=osp.basename(args.src), layout='co-detr')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    write_atomic(args.dst, lambda path: torch.save(
        dict(state_dict=state_dict, meta=meta), path))
    print(f'wrote {args.dst} ({len(state_dict)} tensors)')


if __name__ == '__main__':
    main()
