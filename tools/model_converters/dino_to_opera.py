"""Convert a released DINO checkpoint into an opera checkpoint.

    python tools/model_converters/dino_to_opera.py SRC DST \
        --config configs/dino/dino_r50_4scale_12ep.py

SRC: an IDEA-Research/DINO ``checkpoint{epochs}_{scales}scale.pth``. The
config gives the decoder's layer count and the backbone levels; the result
is loaded into its model and every missing or unexpected key is reported by
name (and the conversion fails).
"""
import argparse

from mmcv import Config

from opera.utils.checkpoint_conversion import finish_conversion, load_released
from opera.utils.dino_checkpoint import dino_to_opera


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='released DINO checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the opera checkpoint')
    parser.add_argument(
        '--config', required=True, help='opera DINO config the checkpoint '
        'is for (layer counts; keys checked against its model)')
    return parser.parse_args()


def main():
    args = parse_args()
    model = Config.fromfile(args.config).model
    state_dict, unknown = dino_to_opera(
        load_released(args.src),
        num_decoder_layers=model.bbox_head.transformer.decoder.num_layers,
        num_backbone_levels=len(model.neck.in_channels))
    finish_conversion(args.src, args.dst, state_dict, unknown, args.config,
                      dict(layout='dino'))


if __name__ == '__main__':
    main()
