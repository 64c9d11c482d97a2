"""Time a config's training data pipeline per image, with and without the
image-file check, side by side.

    python tools/analysis_tools/pipeline_speed.py CONFIG [--rounds 5]
        [--cfg-options data_root=...]

Three variants of ``data.train`` are built in one process; each image goes
through all three in turn (the first one rotating), with the same seeds, so
that all see the same machine load and the same random steps:

* ``mmdet loader + check``: mmdet's ``LoadImageFromFile`` (OpenCV decode),
  the dataset checking each file first (a strict libjpeg-turbo decode at
  1/8 size: the check before opera.LoadImageFromFile);
* ``unchecked``: mmdet's loader, ``check_images=False``;
* ``opera loader``: ``opera.LoadImageFromFile``, one strict full-size
  decode that serves as check and image.

It prints, per variant, the median over rounds of the mean milliseconds per
image and of the per-round ratio to the unchecked one. One intra-op thread
(OpenCV and torch) unless ``--threads`` says otherwise.
"""
import argparse
import copy
import random
import statistics
import time

import cv2
import numpy as np
import torch
from mmcv import DictAction
from mmdet.datasets import build_dataset

import opera  # noqa: F401  (fills the registries)
from opera.utils import load_config

VARIANTS = ('mmdet loader + check', 'unchecked', 'opera loader')


def parse_args(argv=None):
    """Parse the command line (``argv``, or ``sys.argv`` when None)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def with_loader(train_cfg, loader_type, check_images):
    """A copy of ``data.train`` whose image loader is ``loader_type``."""
    cfg = copy.deepcopy(train_cfg)
    for step in cfg.pipeline:
        if step['type'].split('.')[-1] == 'LoadImageFromFile':
            step['type'] = loader_type
    cfg.check_images = check_images
    return cfg


def build_variants(train_cfg):
    """The three datasets of ``VARIANTS``, in that order."""
    return [
        build_dataset(with_loader(train_cfg, 'LoadImageFromFile', True)),
        build_dataset(with_loader(train_cfg, 'LoadImageFromFile', False)),
        build_dataset(with_loader(train_cfg, 'opera.LoadImageFromFile',
                                  True)),
    ]


def time_image(dataset, index, seed):
    """Seconds to prepare training image ``index`` (random steps seeded
    alike for every variant)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    dataset.prepare_train_img(index)
    return time.perf_counter() - start


def time_round(datasets, seed):
    """Mean seconds per image of each dataset over one pass. Each image
    goes through every variant in turn, the first one rotating, so that
    load changes on a shared machine hit all alike."""
    totals = [0.] * len(datasets)
    for index in range(len(datasets[0])):
        for turn in range(len(datasets)):
            which = (index + turn) % len(datasets)
            totals[which] += time_image(datasets[which], index,
                                        seed * 100003 + index)
    return [total / len(datasets[0]) for total in totals]


def main(argv=None):
    """Measure and print the per-image times."""
    args = parse_args(argv)
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    datasets = build_variants(cfg.data.train)
    time_round(datasets, args.seed)  # warm-up: file cache, lazy imports
    rounds = [
        time_round(datasets, args.seed + 1 + index)
        for index in range(args.rounds)
    ]
    base = VARIANTS.index('unchecked')
    print(f'{len(datasets[0])} images, {args.rounds} rounds, '
          f'{args.threads} thread(s); median over rounds')
    for which, name in enumerate(VARIANTS):
        times = [per_round[which] for per_round in rounds]
        ratios = [per_round[which] / per_round[base] for per_round in rounds]
        print(f'{name:>22}: {1000 * statistics.median(times):7.2f} '
              f'ms/image, {statistics.median(ratios):.3f}x unchecked '
              f'(rounds: {", ".join(f"{r:.3f}" for r in ratios)})')


if __name__ == '__main__':
    main()
