"""Train a detector.

    python tools/train.py CONFIG [--work-dir DIR] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG NUM_PROCESSES [options]

``--cfg-options data_root=PATH`` moves every dataset path of the config to
PATH (see ``opera.utils.replace_data_root``).
"""
import argparse
import copy
import os
import os.path as osp
import time

import mmcv
import torch
from mmcv import DictAction
from mmcv.runner import get_dist_info
from mmdet.apis import init_random_seed, set_random_seed
from mmdet.datasets import build_dataset
from mmdet.utils import collect_env, setup_multi_processes

import opera
from opera.apis import train_model
from opera.models import build_detector
from opera.utils import (check_data_paths, get_device, get_root_logger,
                         init_dist, load_config)
from opera.apis.config_checks import ConfigError, check_config

CUBLAS_WORKSPACE = ':4096:8'


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints')
    parser.add_argument('--resume-from', help='checkpoint to resume from')
    parser.add_argument(
        '--auto-resume',
        action='store_true',
        help='resume from the latest checkpoint in the work dir')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument(
        '--diff-seed',
        action='store_true',
        help='use a different seed in each process')
    parser.add_argument(
        '--deterministic',
        action='store_true',
        help='deterministic algorithms (cuDNN and torch); with --seed, '
        'a rerun or a resumed run reaches the same weights')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. data_root=../data/coco/ '
        'runner.max_epochs=2')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='how the processes were started')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the total batch size (see auto_scale_lr)')
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def apply_args(cfg, args):
    """Write the command-line choices into ``cfg``."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        config_name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('./work_dirs', config_name)
    if args.resume_from is not None:
        cfg.resume_from = args.resume_from
    cfg.auto_resume = args.auto_resume
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr', {}).get('base_batch_size'):
            raise ConfigError(
                f'{args.config}: --auto-scale-lr needs auto_scale_lr.'
                'base_batch_size, the total batch (GPUs x samples_per_gpu) '
                'the config\'s lr was set for')
        cfg.auto_scale_lr.enable = True
    cfg.device = get_device()


def splits_to_check(cfg, validate):
    """Return the data splits this training run will read."""
    reads_val = validate or len(cfg.workflow) == 2
    return ['train', 'val'] if reads_val else ['train']


def start_processes(launcher, cfg):
    """Join the process group if launched distributed; return whether so."""
    if launcher == 'none':
        cfg.gpu_ids = [0]
        return False
    init_dist(launcher, **cfg.get('dist_params', {}))
    _, world_size = get_dist_info()
    cfg.gpu_ids = list(range(world_size))
    return True


def prepare_work_dir(cfg, config_path, timestamp):
    """Create the work dir, save the config there and start the log file."""
    mmcv.mkdir_or_exist(osp.abspath(cfg.work_dir))
    rank, _ = get_dist_info()
    if rank == 0:
        cfg.dump(osp.join(cfg.work_dir, osp.basename(config_path)))
    log_file = osp.join(cfg.work_dir, f'{timestamp}.log')
    return get_root_logger(log_file=log_file, log_level=cfg.log_level)


def log_environment(logger, cfg, distributed):
    """Log the software environment and the config; return env text."""
    env_info = collect_env()
    env_info['opera'] = opera.__version__
    env_text = '\n'.join(f'{key}: {value}' for key, value in env_info.items())
    dash_line = '-' * 60
    logger.info(f'Environment info:\n{dash_line}\n{env_text}\n{dash_line}')
    logger.info(f'Distributed training: {distributed}')
    logger.info(f'Config:\n{cfg.pretty_text}')
    return env_text


def seed_everything(cfg, args, logger):
    """Pick (or take) the seed, seed all generators and return it."""
    seed = init_random_seed(args.seed, device=cfg.device)
    if args.diff_seed:
        seed += get_dist_info()[0]
    logger.info(f'Set random seed to {seed}, '
                f'deterministic: {args.deterministic}')
    set_random_seed(seed, deterministic=args.deterministic)
    if args.deterministic:
        # cuBLAS needs this workspace setting to be deterministic.
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', CUBLAS_WORKSPACE)
        # warn_only: torch ops without a deterministic CUDA version (e.g.
        # grid_sample's backward) warn instead of stopping training.
        torch.use_deterministic_algorithms(True, warn_only=True)
    cfg.seed = seed
    return seed


def build_train_datasets(cfg):
    """Build the training dataset, plus a val one for a 2-step workflow."""
    datasets = [build_dataset(cfg.data.train)]
    if len(cfg.workflow) == 2:
        val_cfg = copy.deepcopy(cfg.data.val)
        val_cfg.pipeline = cfg.data.train.pipeline
        datasets.append(build_dataset(val_cfg))
    return datasets


def main():
    """Train a detector as the config and command line describe."""
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    apply_args(cfg, args)
    # Before anything is built: a misspelt key stops the run now, not
    # when its hook first runs.
    check_config(cfg, args.config)
    if cfg.device == 'cpu':
        # Denormal floats (e.g. Adam's averages of squared tiny gradients,
        # common on batches without objects) make CPU arithmetic many times
        # slower; flush them to zero (docs/reliability.md, "CPU speed").
        torch.set_flush_denormal(True)
    validate = not args.no_validate
    check_data_paths(cfg, splits_to_check(cfg, validate))
    setup_multi_processes(cfg)
    distributed = start_processes(args.launcher, cfg)

    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    logger = prepare_work_dir(cfg, args.config, timestamp)
    env_text = log_environment(logger, cfg, distributed)
    seed = seed_everything(cfg, args, logger)
    meta = dict(
        env_info=env_text,
        config=cfg.pretty_text,
        seed=seed,
        exp_name=osp.basename(args.config))

    model = build_detector(cfg.model)
    model.init_weights()
    datasets = build_train_datasets(cfg)
    model.CLASSES = datasets[0].CLASSES
    if cfg.get('checkpoint_config') is not None:
        # Saved next to ``meta`` (which holds the config text).
        cfg.checkpoint_config.meta = dict(
            opera_version=opera.__version__, CLASSES=datasets[0].CLASSES)
    train_model(
        model,
        datasets,
        cfg,
        distributed=distributed,
        validate=validate,
        timestamp=timestamp,
        meta=meta)


if __name__ == '__main__':
    main()
