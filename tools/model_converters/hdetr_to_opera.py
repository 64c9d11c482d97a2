"""Convert a released H-Deformable-DETR checkpoint into an opera checkpoint.

    python tools/model_converters/hdetr_to_opera.py SRC DST \
        --layout official --config configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py

``--layout official``: the H-Deformable-DETR repository's ``.pth`` files;
``--layout detrex``: detrex's ``projects/h_deformable_detr`` checkpoints.
With ``--config`` the result is loaded into that config's model and every
missing or unexpected key is reported by name (and the conversion fails).
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmcv import Config

from mmcv_custom import write_atomic
from opera.utils.hdetr_checkpoint import fill_untracked_bn, to_opera


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='released checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the opera checkpoint')
    parser.add_argument(
        '--layout', choices=['official', 'detrex'], default='official')
    parser.add_argument(
        '--config', help='opera config the checkpoint is for (to check keys)')
    return parser.parse_args()


def load_released(path):
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    if isinstance(checkpoint, dict) and 'model' in checkpoint:
        return checkpoint['model']
    raise KeyError(f'{path} has no "model" entry: not a released '
                   'H-Deformable-DETR / detrex checkpoint')


def check_against_config(state_dict, config_path):
    """Load into the config's model; return (missing, unexpected) keys."""
    import opera  # noqa: F401  (registers modules)
    from opera.models import build_detector
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


def main():
    args = parse_args()
    state_dict, unknown = to_opera(load_released(args.src), args.layout)
    problems = [f'unknown released key (not converted): {k}' for k in unknown]
    if args.config:
        missing, unexpected = check_against_config(state_dict, args.config)
        problems += [f'missing in checkpoint: {k}' for k in missing]
        problems += [f'not in model: {k}' for k in unexpected]
    if problems:
        print('\n'.join(problems), file=sys.stderr)
        sys.exit(f'conversion of {args.src} failed: {len(problems)} problem(s)')
    meta = dict(converted_from=osp.basename(args.src), layout=args.layout)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    write_atomic(args.dst, lambda path: torch.save(
        dict(state_dict=state_dict, meta=meta), path))
    print(f'wrote {args.dst} ({len(state_dict)} tensors)')


if __name__ == '__main__':
    main()
