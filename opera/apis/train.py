"""Training on GPUs or CPUs, in one process or distributed.

This follows mmdet 2.x's ``train_detector``; the difference is how the model
is wrapped: mmdet's ``build_ddp`` only accepts CUDA, while ``wrap_model``
also gives CPU processes (gloo) a working ``MMDistributedDataParallel``.
"""
import torch
from mmcv.parallel import MMDataParallel, is_module_wrapper
from mmcv.runner import (DistSamplerSeedHook, EpochBasedRunner,
                         Fp16OptimizerHook, OptimizerHook, build_runner)
from mmdet.core import build_optimizer
from mmdet.datasets import (build_dataloader, build_dataset,
                            replace_ImageToTensor)
from mmdet.utils import compat_cfg, find_latest_checkpoint

from mmcv_custom.checkpoint import load_checkpoint_checked
from mmcv_custom.ema import register_ema
from mmcv_custom.parallel import DeviceAgnosticDDP
from opera.datasets import inner_datasets
from opera.datasets.data_checks import examples
from opera.utils import get_device, get_root_logger
from opera.utils.dist import seed_sync_on_backend_device
from opera.utils.trackers import tracker_log_config
from .batch_size import (accumulating_optimizer_hook, cumulative_iters,
                         log_batch_and_scale_lr)
from .hooks import DistEvalHook, EvalHook, schedule_per_update


def wrap_model(model, distributed, find_unused_parameters=False):
    """Put ``model`` on this process's device inside an mmcv wrapper.

    Without CUDA, torch's ``DataParallel`` keeps no device ids, and
    ``MMDataParallel`` then scatters each batch to the CPU; DDP gets
    ``device_ids=None``, which torch requires for CPU modules.

    Args:
        model (nn.Module): The detector.
        distributed (bool): Wrap for DDP instead of a single process.
        find_unused_parameters (bool): Passed on to DDP.

    Returns:
        nn.Module: The wrapped model.
    """
    on_gpu = get_device() == 'cuda'
    if on_gpu:
        model = model.cuda()
    device_ids = [torch.cuda.current_device()] if on_gpu else None
    if distributed:
        return DeviceAgnosticDDP(
            model,
            device_ids=device_ids,
            broadcast_buffers=False,
            find_unused_parameters=find_unused_parameters)
    return MMDataParallel(model, device_ids=device_ids)


def train_model(model,
                dataset,
                cfg,
                distributed=False,
                validate=False,
                timestamp=None,
                meta=None):
    """Train ``model`` as ``cfg`` describes.

    Args:
        model (nn.Module): The detector, weights already initialised.
        dataset (Dataset | list[Dataset]): One training dataset per
            ``cfg.workflow`` entry.
        cfg (mmcv.Config): Full config; ``work_dir`` and ``seed`` set.
        distributed (bool): The process group is initialised.
        validate (bool): Evaluate on ``cfg.data.val`` during training.
        timestamp (str, optional): Shared name of the text and json logs.
        meta (dict, optional): Stored in the checkpoints.
    """
    cfg = compat_cfg(cfg)
    cfg.setdefault('gpu_ids', [0])
    logger = get_root_logger(log_level=cfg.log_level)
    datasets = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    for train_dataset in datasets:
        check_num_classes(model, train_dataset, 'training')
        check_keypoint_layout(model, train_dataset, 'training')
    data_loaders = [
        _build_train_loader(ds, cfg, distributed) for ds in datasets
    ]
    model = wrap_model(model, distributed,
                       cfg.get('find_unused_parameters', False))
    log_batch_and_scale_lr(cfg, distributed, logger)
    runner = build_runner(
        cfg.runner,
        default_args=dict(
            model=model,
            optimizer=build_optimizer(model, cfg.optimizer),
            work_dir=cfg.work_dir,
            logger=logger,
            meta=meta))
    runner.timestamp = timestamp
    _register_training_hooks(runner, cfg, distributed)
    schedule_per_update(runner, cumulative_iters(cfg))
    register_ema(runner, cfg.get('ema'), cumulative_iters(cfg))
    if validate:
        _register_eval_hook(runner, cfg, distributed)
    _resume_or_load(runner, cfg)
    runner.run(data_loaders, cfg.workflow)


def dataset_name(dataset):
    """The annotation file(s) of a dataset, or its class name."""
    inner = getattr(dataset, 'datasets', None) or [
        getattr(dataset, 'dataset', dataset)
    ]
    files = [getattr(ds, 'ann_file', None) for ds in inner]
    if all(files):
        return ', '.join(map(str, files))
    return type(dataset).__name__


def check_num_classes(model, dataset, purpose):
    """Raise if a head's ``num_classes`` is not the dataset's number of
    classes (whatever the runner; mmdet's ``NumClassCheckHook`` only runs
    with epoch-based runners).

    Args:
        model (nn.Module): The detector, possibly wrapped.
        dataset (Dataset): With ``CLASSES``.
        purpose (str): 'training' or 'validation', for the message.

    Raises:
        ValueError: Naming the module, both numbers and the dataset.
    """
    classes = getattr(dataset, 'CLASSES', None)
    if classes is None:
        return
    if is_module_wrapper(model):
        model = model.module
    for name, module in model.named_modules():
        num_classes = getattr(module, 'num_classes', None)
        # An RPN head scores "object", one class whatever the dataset.
        if (not isinstance(num_classes, int) or name.endswith('rpn_head')
                or num_classes == len(classes)):
            continue
        raise ValueError(
            f'model.{name}.num_classes is {num_classes}, but the {purpose} '
            f'dataset ({dataset_name(dataset)}) has {len(classes)} classes '
            f'({examples(classes)}): set model.{name}.num_classes='
            f'{len(classes)}, or the classes of the dataset')


def check_keypoint_layout(model, dataset, purpose):
    """Raise if a pose head's keypoint layout is not the dataset's: a
    different K, OKS sigmas or flip pairs would train or evaluate on
    keypoints the model does not predict.

    Args:
        model (nn.Module): The detector, possibly wrapped.
        dataset (Dataset): Pose datasets have ``keypoint_layout``; each
            dataset inside a wrapper (``ConcatDataset``, ...) is checked.
        purpose (str): 'training' or 'validation', for the message.

    Raises:
        ValueError: Naming both layouts and what differs.
    """
    if is_module_wrapper(model):
        model = model.module
    theirs = getattr(getattr(model, 'bbox_head', None), 'keypoint_layout',
                     None)
    for inner in inner_datasets(dataset):  # those in Concat-, RepeatDataset
        ours = getattr(inner, 'keypoint_layout', None)
        if ours is not None and theirs is not None:
            _check_one_keypoint_layout(ours, theirs, inner, purpose)


def _check_one_keypoint_layout(ours, theirs, dataset, purpose):
    """Raise if ``dataset``'s layout ``ours`` differs from the model's
    ``theirs`` in K, sigmas or flip pairs."""
    differ = [
        field for field in ('num_keypoints', 'sigmas', 'flip_pairs')
        if getattr(ours, field) != getattr(theirs, field)
    ]
    if differ:
        raise ValueError(
            f'the {purpose} dataset ({dataset_name(dataset)}) has keypoint '
            f'layout {ours.name!r} ({ours.num_keypoints} keypoints), the '
            f'model model.bbox_head.keypoint_layout {theirs.name!r} '
            f'({theirs.num_keypoints} keypoints); they differ in '
            f'{", ".join(differ)}: give both the same keypoint_layout')


def _build_train_loader(dataset, cfg, distributed):
    """Return the training data loader of one dataset."""
    if len(dataset) == 0:
        # mmdet's infinite sampler would loop forever looking for a batch.
        raise ValueError(f'the training dataset ({dataset_name(dataset)}) '
                         'is empty')
    loader_args = dict(
        samples_per_gpu=2,
        workers_per_gpu=2,
        num_gpus=len(cfg.gpu_ids),  # ignored when distributed
        dist=distributed,
        seed=cfg.seed,
        runner_type=cfg.runner['type'],
        persistent_workers=False)
    loader_args.update(cfg.data.get('train_dataloader', {}))
    # mmdet's samplers for IterBasedRunner share their seed on CUDA only.
    with seed_sync_on_backend_device():
        return build_dataloader(dataset, **loader_args)


def _optimizer_hook(cfg, distributed):
    """Return the optimizer hook (or its config) for fp16 or fp32; mmcv's
    accumulating ones when ``optimizer_config`` has ``cumulative_iters``."""
    accumulating = accumulating_optimizer_hook(cfg, distributed)
    if accumulating is not None:
        return accumulating
    fp16_cfg = cfg.get('fp16', None)
    if fp16_cfg is not None:
        return Fp16OptimizerHook(
            **cfg.optimizer_config, **fp16_cfg, distributed=distributed)
    if distributed and 'type' not in cfg.optimizer_config:
        return OptimizerHook(**cfg.optimizer_config)
    return cfg.optimizer_config


def _register_training_hooks(runner, cfg, distributed):
    """Register lr, optimizer, checkpoint, logger and custom hooks."""
    runner.register_training_hooks(
        cfg.lr_config,
        _optimizer_hook(cfg, distributed),
        cfg.checkpoint_config,
        tracker_log_config(cfg.log_config),
        cfg.get('momentum_config', None),
        custom_hooks_config=cfg.get('custom_hooks', None))
    if distributed and isinstance(runner, EpochBasedRunner):
        runner.register_hook(DistSamplerSeedHook())


def _register_eval_hook(runner, cfg, distributed):
    """Register the (distributed) evaluation hook on ``cfg.data.val``."""
    loader_args = dict(
        samples_per_gpu=1,
        workers_per_gpu=2,
        dist=distributed,
        shuffle=False,
        persistent_workers=False)
    loader_args.update(cfg.data.get('val_dataloader', {}))
    if loader_args['samples_per_gpu'] > 1:
        # Batches of several images need padding and stacking.
        cfg.data.val.pipeline = replace_ImageToTensor(cfg.data.val.pipeline)
    val_dataset = build_dataset(cfg.data.val, dict(test_mode=True))
    check_num_classes(runner.model, val_dataset, 'validation')
    check_keypoint_layout(runner.model, val_dataset, 'validation')
    if getattr(val_dataset, 'check_images', False):
        # Missing images stop the run now, not at the first evaluation.
        val_dataset.check_image_files()
    val_loader = build_dataloader(val_dataset, **loader_args)
    eval_cfg = dict(cfg.get('evaluation', {}))
    eval_cfg['by_epoch'] = cfg.runner['type'] != 'IterBasedRunner'
    hook_type = DistEvalHook if distributed else EvalHook
    # LOW priority: evaluate after the iteration timer has logged.
    runner.register_hook(hook_type(val_loader, **eval_cfg), priority='LOW')


def _resume_or_load(runner, cfg):
    """Resume from (or auto-find) a checkpoint, or load initial weights.

    ``load_from`` is checked whatever the runner: a parameter of another
    shape stops training unless a ``load_from_reinit`` pattern names it (it
    keeps its initial value, logged with both shapes), missing and
    unexpected keys are listed; a checkpoint's EMA weights, if it has them,
    are the ones loaded. Resuming
    goes through the runner (``opera.ResumableEpochBasedRunner`` checks the
    same way).
    """
    resume_from = cfg.get('resume_from')
    if resume_from is None and cfg.get('auto_resume'):
        resume_from = find_latest_checkpoint(cfg.work_dir)
    if resume_from:
        runner.resume(resume_from)
    elif cfg.get('load_from'):
        load_checkpoint_checked(
            runner.model,
            cfg.load_from,
            logger=runner.logger,
            reinit=cfg.get('load_from_reinit', ()),
            use_ema=True)
