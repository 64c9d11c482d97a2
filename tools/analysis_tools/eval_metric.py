"""Evaluate a results file of ``tools/test.py --out`` without the model.

    python tools/analysis_tools/eval_metric.py CONFIG RESULTS.pkl \
        --eval keypoints [--eval-options ...] [--cfg-options ...]

The config's test dataset and ``evaluation`` settings are used as
``tools/test.py --eval`` uses them, so the numbers are the same.
"""
import argparse
import inspect
import os.path as osp

import mmcv
from mmcv import DictAction
from mmdet.datasets import build_dataset

import opera  # noqa: F401  (fills the registries)
from opera.utils import check_data_paths, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Evaluate a saved results file (tools/test.py --out)')
    parser.add_argument('config', help='the config the results came from')
    parser.add_argument('results', help='results .pkl of tools/test.py --out')
    parser.add_argument(
        '--eval',
        nargs='+',
        required=True,
        help='metrics for dataset.evaluate, e.g. bbox or keypoints')
    parser.add_argument(
        '--eval-options',
        nargs='+',
        action=DictAction,
        help='keyword arguments for dataset.evaluate')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. data_root=../data/coco/')
    return parser.parse_args(argv)


def evaluation_kwargs(dataset, cfg, metrics, eval_options=None):
    """``dataset.evaluate``'s arguments: the config's ``evaluation`` entries
    that it accepts, then ``eval_options``, then ``metric``."""
    accepted = inspect.signature(dataset.evaluate).parameters
    kwargs = {
        key: value
        for key, value in cfg.get('evaluation', {}).items() if key in accepted
    }
    kwargs.update(eval_options or {})
    kwargs['metric'] = metrics
    return kwargs


def load_results(path, dataset):
    """The results list, checked to have one entry per test image."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'results file {path} does not exist')
    results = mmcv.load(path)
    if not isinstance(results, list) or len(results) != len(dataset):
        found = (f'{len(results)} entries'
                 if isinstance(results, list) else type(results).__name__)
        raise ValueError(
            f'{path} holds {found}, but the test set of the config has '
            f'{len(dataset)} images: was it written by tools/test.py --out '
            'with this config?')
    return results


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    check_data_paths(cfg, ['test'])
    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test)
    results = load_results(args.results, dataset)
    metrics = dataset.evaluate(
        results,
        **evaluation_kwargs(dataset, cfg, args.eval, args.eval_options))
    for name, value in metrics.items():
        print(f'{name}: {value}')
    return metrics


if __name__ == '__main__':
    main()
