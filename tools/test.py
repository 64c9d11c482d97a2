"""Test (and evaluate) a checkpoint.

    python tools/test.py CONFIG CHECKPOINT --eval bbox [options]
    python tools/test.py CONFIG MODEL.onnx --backend onnxruntime --eval bbox
    bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES --eval bbox

With ``--backend onnxruntime`` the network runs in ONNX Runtime from a file
of ``tools/deployment/pytorch2onnx.py``; the test pipeline then resizes
every image to the file's input size, and pre- and post-processing are the
PyTorch path's (see docs/deployment.md).

``--cfg-options data_root=PATH`` moves every dataset path of the config to
PATH (see ``opera.utils.replace_data_root``).
"""
import argparse
import inspect
import os
import os.path as osp
import time

import mmcv
from mmcv import DictAction
from mmcv.runner import get_dist_info, wrap_fp16_model
from mmdet.datasets import (build_dataloader, build_dataset,
                            replace_ImageToTensor)
from mmdet.utils import setup_multi_processes

import opera  # noqa: F401  (fills the registries)
from mmcv_custom import load_checkpoint_checked
from opera.apis import multi_gpu_test, single_gpu_test, wrap_model
from opera.apis.train import check_keypoint_layout
from opera.models import build_detector
from opera.utils import check_data_paths, init_dist, load_config
from opera.apis.config_checks import check_test_config

OUTPUT_FLAGS = '--out, --eval, --format-only, --show or --show-dir'


def parse_args():
    """Parse and sanity-check the command line."""
    parser = argparse.ArgumentParser(description='Test a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or the .onnx file with --backend onnxruntime')
    parser.add_argument(
        '--backend',
        choices=['pytorch', 'onnxruntime'],
        default='pytorch',
        help='what runs the network (onnxruntime: one process, CPU)')
    parser.add_argument('--work-dir', help='folder for the metrics json')
    parser.add_argument('--out', help='save the raw results to this .pkl')
    parser.add_argument(
        '--eval',
        nargs='+',
        help='metrics for dataset.evaluate, e.g. bbox or keypoints')
    parser.add_argument(
        '--format-only',
        action='store_true',
        help='only convert the results to the dataset format (e.g. for '
        'a test server)')
    parser.add_argument(
        '--eval-options',
        nargs='+',
        action=DictAction,
        help='keyword arguments for dataset.evaluate / format_results')
    parser.add_argument('--show', action='store_true', help='show results')
    parser.add_argument('--show-dir', help='save drawn results here')
    parser.add_argument(
        '--show-score-thr',
        type=float,
        default=0.3,
        help='score threshold for drawing boxes')
    parser.add_argument(
        '--gpu-collect',
        action='store_true',
        help='accepted for compatibility; results are always gathered '
        'through the process group')
    parser.add_argument('--tmpdir', help='accepted for compatibility')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help='load a checkpoint that lacks some of the model keys (they '
        'keep their initial values) or has extra ones; by default missing '
        'or unexpected keys stop the run')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. data_root=../data/coco/')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='how the processes were started')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    _check_args(parser, args)
    return args


def _check_args(parser, args):
    """Stop with a usage error for option combinations that do nothing."""
    if not (args.out or args.eval or args.format_only or args.show
            or args.show_dir):
        parser.error(f'Nothing to do: give at least one of {OUTPUT_FLAGS}.')
    if args.eval and args.format_only:
        parser.error('--eval and --format-only cannot be used together.')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must name a .pkl or .pickle file.')
    if args.launcher != 'none' and (args.show or args.show_dir):
        parser.error('--show and --show-dir work in a single process only.')
    if args.backend == 'onnxruntime' and args.launcher != 'none':
        parser.error('--backend onnxruntime runs in a single process only.')
    if args.backend == 'onnxruntime' and args.non_strict:
        parser.error('--non-strict loads checkpoints: --backend onnxruntime '
                     'takes every weight from the .onnx file.')


def loader_args(cfg, distributed):
    """Return build_dataloader's arguments for the test split."""
    test_loader_cfg = cfg.data.get('test_dataloader', {})
    default_batch = cfg.data.get('samples_per_gpu', 1)
    default_workers = cfg.data.get('workers_per_gpu', 2)
    return dict(
        samples_per_gpu=test_loader_cfg.get('samples_per_gpu', default_batch),
        workers_per_gpu=test_loader_cfg.get('workers_per_gpu',
                                            default_workers),
        dist=distributed,
        shuffle=False)


def build_test_loader(cfg, distributed):
    """Build the test dataset and its data loader."""
    args = loader_args(cfg, distributed)
    test_cfgs = cfg.data.test
    for test_cfg in test_cfgs if isinstance(test_cfgs, list) else [test_cfgs]:
        test_cfg.test_mode = True
        if args['samples_per_gpu'] > 1:
            # Batches of several images need padding and stacking.
            test_cfg.pipeline = replace_ImageToTensor(test_cfg.pipeline)
    dataset = build_dataset(test_cfgs)
    return build_dataloader(dataset, **args)


def load_model(cfg, checkpoint_path, dataset, strict=True):
    """Build the detector and load its weights and class names.

    A parameter of another shape always stops; missing or unexpected keys
    stop too unless ``strict`` is False (``--non-strict``); so does a pose
    model whose keypoint layout is not the test dataset's. A checkpoint with
    EMA weights is evaluated with those (and says so).
    """
    cfg.model.train_cfg = None
    model = build_detector(cfg.model)
    check_keypoint_layout(model, dataset, 'test')
    if cfg.get('fp16') is not None:
        wrap_fp16_model(model)
    checkpoint = load_checkpoint_checked(
        model,
        checkpoint_path,
        map_location='cpu',
        strict=strict,
        use_ema=True)
    meta = checkpoint.get('meta', {})
    model.CLASSES = meta.get('CLASSES', dataset.CLASSES)
    return model


def load_onnx_model(cfg, onnx_file):
    """ONNX Runtime behind the detector interface; fixes the test
    pipeline's resize to the file's input size."""
    from opera.apis.onnx_backend import (ONNXRuntimeDetector,
                                         fixed_size_pipeline, input_size_of)
    cfg.data.test.pipeline = fixed_size_pipeline(cfg.data.test.pipeline,
                                                 input_size_of(onnx_file))
    cfg.model.train_cfg = None
    detector = build_detector(cfg.model)  # post-processing and drawing only
    detector.cfg = cfg  # its file name, checked against the file's
    return ONNXRuntimeDetector(onnx_file, detector)


def check_metrics(dataset, metrics):
    """Raise KeyError naming a metric the dataset cannot evaluate."""
    datasets = getattr(dataset, 'datasets', [dataset])  # ConcatDataset
    for inner in datasets:
        if hasattr(inner, 'check_metrics'):
            inner.check_metrics(metrics)


def evaluate(dataset, results, cfg, args):
    """Run dataset.evaluate with the config's evaluation settings."""
    accepted = inspect.signature(dataset.evaluate).parameters
    eval_kwargs = {
        key: value
        for key, value in cfg.get('evaluation', {}).items() if key in accepted
    }
    eval_kwargs.update(args.eval_options or {})
    eval_kwargs['metric'] = args.eval
    metrics = dataset.evaluate(results, **eval_kwargs)
    for name, value in metrics.items():
        print(f'{name}: {value}')
    if args.work_dir is not None:
        mmcv.mkdir_or_exist(osp.abspath(args.work_dir))
        timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
        mmcv.dump(
            dict(
                config=args.config, checkpoint=args.checkpoint,
                metric=metrics),
            osp.join(args.work_dir, f'eval_{timestamp}.json'))


def report(dataset, results, cfg, args):
    """Save, format and/or evaluate the results (rank 0 only)."""
    if args.out:
        print(f'\nwriting results to {args.out}')
        mmcv.dump(results, args.out)
    if args.format_only:
        dataset.format_results(results, **(args.eval_options or {}))
    if args.eval:
        evaluate(dataset, results, cfg, args)


def main():
    """Test a checkpoint as the config and command line describe."""
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    check_test_config(cfg, args.config)
    check_data_paths(cfg, ['test'])
    setup_multi_processes(cfg)
    distributed = args.launcher != 'none'
    if distributed:
        init_dist(args.launcher, **cfg.get('dist_params', {}))

    if args.backend == 'onnxruntime':
        onnx_model = load_onnx_model(cfg, args.checkpoint)
    data_loader = build_test_loader(cfg, distributed)
    dataset = data_loader.dataset
    if args.eval:
        # Before inference, which may take hours.
        check_metrics(dataset, args.eval)
    if args.backend == 'onnxruntime':
        check_keypoint_layout(onnx_model.detector, dataset, 'test')
        onnx_model.CLASSES = dataset.CLASSES
        model = wrap_model(onnx_model, distributed)
    else:
        model = wrap_model(
            load_model(cfg, args.checkpoint, dataset, not args.non_strict),
            distributed)
    if distributed:
        results = multi_gpu_test(model, data_loader, args.tmpdir,
                                 args.gpu_collect)
    else:
        results = single_gpu_test(model, data_loader, args.show, args.show_dir,
                                  args.show_score_thr)
    rank, _ = get_dist_info()
    if rank == 0:
        report(dataset, results, cfg, args)


if __name__ == '__main__':
    main()
