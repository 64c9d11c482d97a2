"""The batch an optimizer update sees: gradient accumulation, the effective
batch size, and the learning rate scaled to it.

Gradient accumulation is the config switch
``optimizer_config = dict(cumulative_iters=N, ...)``: the gradients of N
consecutive iterations are summed (each loss divided by N) before one
optimizer step, with mmcv's ``GradientCumulativeOptimizerHook`` (or its fp16
version when ``fp16`` is set). The effective batch is then
``samples_per_gpu x processes x N`` images, and learning-rate and momentum
schedules count optimizer updates, not iterations
(:class:`opera.apis.hooks.PerUpdateSchedule`).
"""
from mmcv.runner import (GradientCumulativeFp16OptimizerHook,
                         GradientCumulativeOptimizerHook, get_dist_info)

# Images per process when the config names none (as in train.py's loader).
DEFAULT_SAMPLES_PER_GPU = 2


def cumulative_iters(cfg):
    """Iterations per optimizer update: ``optimizer_config.cumulative_iters``
    (1 if absent).

    Raises:
        ValueError: It is not a positive integer.
    """
    value = cfg.get('optimizer_config', {}).get('cumulative_iters', 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError('optimizer_config.cumulative_iters must be a '
                         f'positive integer, got {value!r}')
    return value


def accumulating_optimizer_hook(cfg, distributed):
    """The optimizer hook when ``optimizer_config`` has ``cumulative_iters``
    (with 1 it steps every iteration, as mmcv's plain hooks), else None.

    Args:
        cfg (mmcv.Config): With ``optimizer_config`` and maybe ``fp16``.
        distributed (bool): Passed to the fp16 hook.

    Returns:
        Hook | None: mmcv's ``GradientCumulative(Fp16)OptimizerHook``.
    """
    if 'cumulative_iters' not in cfg.get('optimizer_config', {}):
        return None
    num_iters = cumulative_iters(cfg)
    hook_args = dict(cfg.optimizer_config)
    hook_args.pop('type', None)
    hook_args['cumulative_iters'] = num_iters
    fp16_cfg = cfg.get('fp16', None)
    if fp16_cfg is None:
        return GradientCumulativeOptimizerHook(**hook_args)
    return GradientCumulativeFp16OptimizerHook(
        **hook_args, **fp16_cfg, distributed=distributed)


def effective_batch_size(cfg, distributed):
    """Images per optimizer update, and its factors.

    Returns:
        tuple[int, int, int, int]: (images per process, processes,
        accumulated iterations, their product).
    """
    samples_per_gpu = cfg.data.get('train_dataloader', {}).get(
        'samples_per_gpu',
        cfg.data.get('samples_per_gpu', DEFAULT_SAMPLES_PER_GPU))
    processes = get_dist_info()[1] if distributed else len(cfg.gpu_ids)
    num_iters = cumulative_iters(cfg)
    return (samples_per_gpu, processes, num_iters,
            samples_per_gpu * processes * num_iters)


def log_batch_and_scale_lr(cfg, distributed, logger):
    """Log the effective batch size; with ``auto_scale_lr.enable`` multiply
    ``cfg.optimizer.lr`` by it over ``auto_scale_lr.base_batch_size``.

    The scaling is linear in the effective batch (accumulation included),
    as mmdet's ``auto_scale_lr`` is in the per-step batch.
    """
    per_gpu, processes, num_iters, total = effective_batch_size(
        cfg, distributed)
    logger.info(
        f'effective batch size: {per_gpu} images per process x {processes} '
        f'process(es) x {num_iters} accumulated iteration(s) = {total} '
        'images per optimizer update')
    scaling = cfg.get('auto_scale_lr', {})
    if not scaling.get('enable', False):
        return
    base = scaling.get('base_batch_size')
    if base is None:
        logger.warning('auto_scale_lr.base_batch_size is not set: lr not '
                       'scaled')
        return
    lr = cfg.optimizer.lr * total / base
    logger.info(f'auto_scale_lr: lr {cfg.optimizer.lr} x {total} / {base} '
                f'(effective / base batch size) = {lr}')
    cfg.optimizer.lr = lr
