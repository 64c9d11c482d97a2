"""Convert a released Co-DETR (Sense-X/Co-DETR) checkpoint into opera's.

    python tools/model_converters/codetr_to_opera.py SRC DST \
        --config configs/co_detr/co_deformable_detr_r50_12ep.py
    python tools/model_converters/codetr_to_opera.py SRC DST \
        --config configs/co_detr/co_dino_r50_5scale_12ep.py

Co-DETR's checkpoints (Co-Deformable-DETR and Co-DINO, told apart by their
keys) are mmdet checkpoints (``state_dict``); the names change as
``opera.converters.codetr`` lists. With ``--config`` the
result is loaded into that config's model and every missing, unexpected or
misshapen key is reported by name (and the conversion fails).
"""
import argparse

from opera.converters.conversion import finish_conversion, load_released
from opera.converters.codetr import to_opera


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='released Co-DETR checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the opera checkpoint')
    parser.add_argument(
        '--config', help='opera config the checkpoint is for (to check keys)')
    return parser.parse_args()


def main():
    args = parse_args()
    state_dict, unknown = to_opera(load_released(args.src, 'state_dict'))
    finish_conversion(args.src, args.dst, state_dict, unknown, args.config,
                      dict(layout='co-detr'))


if __name__ == '__main__':
    main()
