"""Draw the ground truth of a dataset as the training pipeline outputs it.

    python tools/misc/browse_dataset.py CONFIG [--output-dir DIR]
        [--num-images N] [--cfg-options k=v ...]

Each image goes through the pipeline of ``data.train`` (augmentations
included, but not the normalisation and formatting steps, which only prepare
tensors) and is written as ``<output-dir>/<index>_<name>.png`` with its boxes,
class names and, for pose datasets, keypoints and limbs (one colour per
person). Run it twice to see other random augmentations.
"""
import argparse
import os.path as osp

import mmcv
from mmcv import DictAction
from mmdet.datasets import build_dataset

import opera  # noqa: F401  (fills the registries)
from opera.core.visualization import imshow_det_keypoints
from opera.datasets import inner_datasets
from opera.utils import load_config

# Pipeline steps that turn images and annotations into normalised tensors:
# nothing to see there, and drawing needs the arrays before them.
FORMATTING_STEPS = ('Normalize', 'DefaultFormatBundle', 'Collect',
                    'ImageToTensor', 'ToTensor', 'Transpose',
                    'ToDataContainer')
WRAPPER_KEYS = ('dataset', 'datasets')
DEFAULT_OUT_ROOT = 'work_dirs/browse'


def parse_args(argv=None):
    """Parse the command line (``argv``, or ``sys.argv`` when None)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--output-dir',
        help=f'where to write (default: {DEFAULT_OUT_ROOT}/<config name>)')
    parser.add_argument(
        '--num-images',
        type=int,
        help='stop after this many images (default: all)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. data_root=../data/coco/')
    return parser.parse_args(argv)


def is_formatting(step):
    """Whether a pipeline step (a config dict) only formats tensors."""
    return step['type'].split('.')[-1] in FORMATTING_STEPS


def without_formatting(dataset_cfg):
    """Drop the formatting steps from a dataset config's pipeline(s), in
    place, through dataset wrappers (``dataset`` / ``datasets`` keys)."""
    if isinstance(dataset_cfg, (list, tuple)):
        for sub_cfg in dataset_cfg:
            without_formatting(sub_cfg)
        return dataset_cfg
    if 'pipeline' in dataset_cfg:
        dataset_cfg.pipeline = [
            step for step in dataset_cfg.pipeline if not is_formatting(step)
        ]
    for key in WRAPPER_KEYS:
        if key in dataset_cfg:
            without_formatting(dataset_cfg[key])
    return dataset_cfg


def skeleton_of_dataset(dataset):
    """The ``skeleton`` of a pose dataset, or of the first pose dataset in
    dataset wrappers; None for a detection dataset (or no skeleton)."""
    for inner in inner_datasets(dataset):
        if hasattr(inner, 'skeleton'):
            return inner.skeleton
    return None


def draw_item(item, class_names, skeleton, out_file):
    """Draw one pipeline output (its ``img``, ``gt_bboxes``, ``gt_labels``
    and, if present, ``gt_keypoints``) into ``out_file``."""
    return imshow_det_keypoints(
        item['img'],
        item['gt_bboxes'],
        item['gt_labels'],
        item.get('gt_keypoints'),
        class_names=class_names,
        # Ground-truth visibility: 0 is unlabelled, 1 and 2 are drawn.
        kpt_score_thr=0,
        skeleton=skeleton,
        out_file=out_file)


def main(argv=None):
    """Write the drawn images; return the list of files written."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    dataset = build_dataset(without_formatting(cfg.data.train))
    out_dir = args.output_dir or osp.join(
        DEFAULT_OUT_ROOT,
        osp.splitext(osp.basename(args.config))[0])
    num_images = len(dataset) if args.num_images is None else min(
        args.num_images, len(dataset))
    skeleton = skeleton_of_dataset(dataset)
    written = []
    for index in mmcv.track_iter_progress(range(num_images)):
        item = dataset[index]
        name = osp.splitext(osp.basename(item['ori_filename']))[0]
        out_file = osp.join(out_dir, f'{index:05d}_{name}.png')
        draw_item(item, dataset.CLASSES, skeleton, out_file)
        written.append(out_file)
    print(f'\nwrote {len(written)} images to {out_dir}')
    return written


if __name__ == '__main__':
    main()
