"""One config switch per experiment tracker (TensorBoard, Weights & Biases).

``log_config`` in ``configs/_base_/default_runtime.py`` carries
``tensorboard=False`` and ``wandb=False``. Setting one to True (or to a
dict of the logger hook's arguments) adds mmcv's logger hook for it, e.g.

    python tools/train.py CONFIG --cfg-options log_config.tensorboard=True
    WANDB_MODE=offline python tools/train.py CONFIG \
        --cfg-options log_config.wandb=True

The text and JSON logs (``TextLoggerHook``) stay on either way. The tracker
packages are optional: they are imported only when their switch is on.
"""
import copy
import importlib.util

# switch -> (mmcv logger hook, the package it needs, its default arguments).
# wandb's step must grow with every call, but mmcv logs an epoch's
# evaluation at the step of the next training log, so wandb would drop that
# training log; with_step=False logs the iteration as 'global_step' instead.
TRACKERS = dict(
    tensorboard=('TensorboardLoggerHook', 'tensorboard', {}),
    wandb=('WandbLoggerHook', 'wandb', dict(with_step=False)))


def tracker_log_config(log_config):
    """Turn the tracker switches of ``log_config`` into logger hooks.

    Args:
        log_config (dict | None): ``interval``, ``hooks`` and optionally
            ``tensorboard`` / ``wandb``: False (off), True (on, with the
            defaults of ``TRACKERS``) or a dict of hook arguments (e.g.
            ``dict(init_kwargs=dict(project='hdetr'))`` for wandb).

    Returns:
        dict | None: A copy for ``runner.register_logger_hooks``: the
        switches removed, a hook appended for each one that is on (unless
        ``hooks`` already lists a hook of that type).

    Raises:
        TypeError: A switch is neither a bool nor a dict.
        ImportError: A switch is on but its package is not installed.
    """
    if log_config is None:
        return None
    log_config = copy.deepcopy(dict(log_config))
    hooks = list(log_config.get('hooks', []))
    listed = {hook['type'] for hook in hooks}
    for switch, (hook_type, package, defaults) in TRACKERS.items():
        setting = log_config.pop(switch, False)
        if setting is False or hook_type in listed:
            continue
        if setting is not True and not isinstance(setting, dict):
            raise TypeError(
                f'log_config.{switch} must be True, False or a dict of '
                f'{hook_type} arguments, got {setting!r}')
        if importlib.util.find_spec(package) is None:
            raise ImportError(
                f'log_config.{switch} is on but the {package} package is '
                f'not installed: pip install {package} (it is listed in '
                'requirements/tests.txt), or turn the switch off.')
        hook_args = dict(defaults, **(setting if setting is not True else {}))
        hooks.append(dict(type=hook_type, **hook_args))
    log_config['hooks'] = hooks
    return log_config
