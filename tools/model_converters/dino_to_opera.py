"""Convert a released DINO checkpoint into an opera checkpoint.

    python tools/model_converters/dino_to_opera.py SRC DST \
        --config configs/dino/dino_r50_4scale_12ep.py
    python tools/model_converters/dino_to_opera.py SRC DST --layout detrex \
        --config configs/dino/dino_r50_4scale_12ep_detrex.py

SRC: an IDEA-Research/DINO ``checkpoint{epochs}_{scales}scale.pth``
(``--layout official``, the default) or a detrex ``projects/dino`` checkpoint
(``--layout detrex``; its recipe is the ``_detrex`` config's). The
config gives the decoder's layer count and the backbone levels; the result
is loaded into its model and every missing or unexpected key is reported by
name (and the conversion fails).
"""
import argparse
import sys

from mmcv import Config

from opera.converters.conversion import finish_conversion, load_released
from opera.converters.dino import dino_to_opera


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='released DINO checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the opera checkpoint')
    parser.add_argument(
        '--config', required=True, help='opera DINO config the checkpoint '
        'is for (layer counts; keys checked against its model)')
    parser.add_argument(
        '--layout', choices=['official', 'detrex'], default='official',
        help='whose release: IDEA-Research/DINO (official) or detrex')
    return parser.parse_args()


def check_branches(layout, config, model):
    """A shared-branch model keeps one of detrex's per-layer branches."""
    if layout == 'detrex' and model.bbox_head.get('share_decoder_branches'):
        sys.exit(f'{config}: model.bbox_head.share_decoder_branches is True, '
                 f'but detrex\'s DINO has one class / box branch per decoder '
                 f'layer; use a config with share_decoder_branches=False '
                 f'(configs/dino/dino_r50_4scale_12ep_detrex.py)')


def main():
    args = parse_args()
    model = Config.fromfile(args.config).model
    check_branches(args.layout, args.config, model)
    state_dict, unknown = dino_to_opera(
        load_released(args.src),
        num_decoder_layers=model.bbox_head.transformer.decoder.num_layers,
        num_backbone_levels=len(model.neck.in_channels),
        layout=args.layout)
    meta_layout = 'dino' if args.layout == 'official' else 'dino_detrex'
    finish_conversion(args.src, args.dst, state_dict, unknown, args.config,
                      dict(layout=meta_layout))


if __name__ == '__main__':
    main()
