"""Convert a released H-Deformable-DETR checkpoint into an opera checkpoint.

    python tools/model_converters/hdetr_to_opera.py SRC DST \
        --layout official --config configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py

``--layout official``: the H-Deformable-DETR repository's ``.pth`` files;
``--layout detrex``: detrex's ``projects/h_deformable_detr`` checkpoints.
With ``--config`` the result is loaded into that config's model and every
missing or unexpected key is reported by name (and the conversion fails).
"""
import argparse

from opera.converters.conversion import finish_conversion, load_released
from opera.converters.hdetr import to_opera


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='released checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the opera checkpoint')
    parser.add_argument(
        '--layout', choices=['official', 'detrex'], default='official')
    parser.add_argument(
        '--config', help='opera config the checkpoint is for (to check keys)')
    return parser.parse_args()


def main():
    args = parse_args()
    state_dict, unknown = to_opera(load_released(args.src), args.layout)
    finish_conversion(args.src, args.dst, state_dict, unknown, args.config,
                      dict(layout=args.layout))

if __name__ == '__main__':
    main()
