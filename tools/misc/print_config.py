"""Print a config after ``_base_`` inheritance and ``--cfg-options``.

    python tools/misc/print_config.py CONFIG [--cfg-options k=v ...]
        [--save-path NEW_CONFIG.py]

Shows exactly what tools/train.py and tools/test.py would use; with
``--save-path`` the merged config is also written as a stand-alone file.
"""
import argparse

from mmcv import DictAction

from opera.utils import load_config


def parse_args(argv=None):
    """Parse the command line (``argv``, or ``sys.argv`` when None)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.bbox_head.k_one2many=4')
    parser.add_argument('--save-path', help='also write the merged config')
    return parser.parse_args(argv)


def main(argv=None):
    """Print (and optionally save) the merged config; return it."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    print(cfg.pretty_text)
    if args.save_path is not None:
        cfg.dump(args.save_path)
        print(f'\nsaved {args.save_path}')
    return cfg


if __name__ == '__main__':
    main()
