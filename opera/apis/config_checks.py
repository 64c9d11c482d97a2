"""Check a whole training config before anything is built or trained.

mmcv builds the runner, hooks, optimizer and data loaders from dicts whose
classes often take ``**kwargs`` or read ``cfg.get(...)``: a misspelt key is
then ignored, or fails only when its hook first runs (after an epoch). Here
every such dict is compared with the signature of what it configures:

* a dict with a ``type`` (runner, hooks, optimizer, datasets, pipeline
  steps): the ``__init__`` arguments along the class's MRO, plus, for
  classes that forward ``**kwargs``, the signature they forward to
  (``CheckpointHook`` -> the runner's ``save_checkpoint``, ``EvalHook`` ->
  the validation dataset's ``evaluate``);
* ``lr_config`` / ``momentum_config``: the updater hook its ``policy`` names;
* ``optimizer_config.grad_clip``: ``torch.nn.utils.clip_grad_norm_``;
* ``data`` and its ``*_dataloader`` dicts: mmdet's ``build_dataloader`` and
  torch's ``DataLoader``.

A class whose signature cannot tell (it takes ``**kwargs`` and passes them
nowhere known) is not checked. Top-level names are free (configs keep
helper variables such as ``img_norm_cfg``), except a name that is a close
misspelling of one the tools read (``optimzer``). Settings that depend on
each other are checked too: the batch size, and the detections kept per
image against what the head can output (queries x classes).
"""
import difflib
import inspect

from mmcv.runner import RUNNERS
from mmcv.runner.hooks import HOOKS
from mmcv.runner.optimizer import OPTIMIZERS
from mmdet.datasets import DATASETS, PIPELINES, build_dataloader
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import DataLoader

from opera.utils.trackers import TRACKERS
from .hooks import EvalHook

# The top-level names tools/train.py, opera.apis.train_model and mmcv read.
TOP_LEVEL_KEYS = (
    'model', 'data', 'optimizer', 'optimizer_config', 'lr_config',
    'momentum_config', 'checkpoint_config', 'log_config', 'custom_hooks',
    'evaluation', 'runner', 'workflow', 'dist_params', 'log_level',
    'load_from', 'load_from_reinit', 'ema', 'resume_from', 'auto_resume',
    'work_dir', 'gpu_ids', 'seed',
    'device', 'auto_scale_lr', 'fp16', 'opencv_num_threads',
    'mp_start_method', 'find_unused_parameters', 'data_root')
# How close (difflib ratio) an unknown top-level name must be to a known
# one to count as its misspelling rather than a helper variable.
MISSPELLING_RATIO = 0.85
DATA_SPLITS = ('train', 'val', 'test')
LOADER_KEYS = tuple(f'{split}_dataloader' for split in DATA_SPLITS)
# Arguments the builders pass themselves, never taken from the config.
SUPPLIED = {'self', 'dataset', 'dataloader', 'params', 'parameters'}


class ConfigError(ValueError):
    """A config key or value that the run cannot use."""


def signature_keys(target):
    """The argument names ``target`` accepts, and whether it takes more.

    Args:
        target (type | callable): A class (its ``__init__`` along the MRO,
            up to the first one without ``**kwargs``; none but object's: no
            arguments) or a function.

    Returns:
        tuple[set[str], bool]: The names, and True when ``**kwargs`` may
        take any other name.
    """
    if not inspect.isclass(target):
        return _parameters(target)
    names, found_init = set(), False
    for klass in target.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None or klass is object:
            continue
        own, takes_more = _parameters(init)
        names |= own
        found_init = True
        if not takes_more:
            return names, False
    # Only object's __init__: no arguments. Otherwise the last **kwargs
    # do not reach object's (it would refuse them): they go elsewhere.
    return names, found_init


def _parameters(function):
    """Named parameters of ``function`` and whether it has ``**kwargs``."""
    params = inspect.signature(function).parameters.values()
    names = {
        p.name
        for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


class ConfigChecker:
    """Collects every problem of one config (see the module docstring).

    Args:
        cfg (mmcv.Config): The config, ``--cfg-options`` merged.
        filename (str): Its file, for the messages.
    """

    def __init__(self, cfg, filename):
        self.cfg = cfg
        self.filename = filename
        self.problems = []

    def report(self, where, message):
        """Record one problem at config path ``where``."""
        self.problems.append(f'{where}: {message}')

    def check_keys(self, cfg, where, known, extra=()):
        """Report each key of ``cfg`` that is not in ``known`` or ``extra``.

        Args:
            cfg (dict): The dict to check.
            where (str): Its config path.
            known (Iterable[str]): Names its target accepts.
            extra (Iterable[str]): Names read around the target.
        """
        known = (set(known) | set(extra)) - SUPPLIED
        for key in sorted(set(cfg) - known):
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ''
            self.report(
                f'{where}.{key}', f'unknown key{hint}; known: '
                f'{", ".join(sorted(known))}')

    def check_typed(self, cfg, registry, where, default_type=None, extra=(),
                    forwarded=None):
        """Check a dict that builds ``registry[cfg['type']]``.

        Args:
            cfg (dict): With a ``type`` (or ``default_type``).
            registry (mmcv.utils.Registry): Where the type is looked up.
            where (str): The dict's config path.
            default_type (str | None): The type when ``cfg`` has none.
            extra (Iterable[str]): Names read around the class.
            forwarded (callable | None): What the class's ``**kwargs`` go
                to; its parameters are accepted too.

        Returns:
            type | None: The class, or None if the type is unknown.
        """
        if not isinstance(cfg, dict):
            return None
        obj_type = cfg.get('type', default_type)
        cls = registry.get(obj_type) if isinstance(obj_type, str) else None
        if cls is None:
            self.report(f'{where}.type', f'{obj_type!r} is not in the '
                        f'{registry.name} registry')
            return None
        known, takes_more = signature_keys(cls)
        if takes_more and forwarded is not None:
            more, takes_more = signature_keys(forwarded)
            known |= more
        if not takes_more:
            self.check_keys(cfg, where, known, {'type', *extra})
        return cls

    def check(self):
        """Run every check; raise :class:`ConfigError` listing them all."""
        cfg = self.cfg
        self.check_top_level()
        runner_cls = self.check_typed(cfg.get('runner'), RUNNERS, 'runner')
        self.check_optimizer()
        self.check_policy_hook('lr_config', 'LrUpdaterHook')
        self.check_policy_hook('momentum_config', 'MomentumUpdaterHook')
        save = getattr(runner_cls, 'save_checkpoint', None)
        self.check_typed(cfg.get('checkpoint_config'), HOOKS,
                         'checkpoint_config', 'CheckpointHook',
                         forwarded=save)
        self.check_log_config()
        for index, hook in enumerate(cfg.get('custom_hooks') or []):
            self.check_typed(hook, HOOKS, f'custom_hooks[{index}]',
                             extra={'priority'})
        self.check_data()
        self.check_evaluation()
        self.check_detections_per_image()
        self.raise_problems()

    def raise_problems(self):
        """Raise :class:`ConfigError` listing the problems found, if any."""
        if self.problems:
            raise ConfigError(
                f'{self.filename}: {len(self.problems)} problem(s) in the '
                'config:\n  ' + '\n  '.join(self.problems))

    def check_top_level(self):
        """Report top-level names that misspell one the tools read."""
        for key in sorted(set(self.cfg) - set(TOP_LEVEL_KEYS)):
            close = difflib.get_close_matches(
                key, TOP_LEVEL_KEYS, n=1, cutoff=MISSPELLING_RATIO)
            if close:
                self.report(key, f"unknown top-level key (did you mean "
                            f"'{close[0]}'?)")

    def check_optimizer(self):
        """``optimizer`` against the torch optimizer, ``optimizer_config``
        against its hook (and ``fp16``), ``grad_clip`` against
        ``clip_grad_norm_``."""
        cfg = self.cfg
        self.check_typed(cfg.get('optimizer'), OPTIMIZERS, 'optimizer',
                         extra={'paramwise_cfg', 'constructor'})
        hook_cfg = cfg.get('optimizer_config')
        if not isinstance(hook_cfg, dict):
            return
        if cfg.get('fp16') is not None:
            hook_cfg = dict(hook_cfg, **cfg.fp16, type='Fp16OptimizerHook')
        self.check_typed(hook_cfg, HOOKS, 'optimizer_config', 'OptimizerHook')
        grad_clip = hook_cfg.get('grad_clip')
        if isinstance(grad_clip, dict):
            self.check_keys(grad_clip, 'optimizer_config.grad_clip',
                            signature_keys(clip_grad_norm_)[0])

    def check_policy_hook(self, name, suffix):
        """``lr_config`` / ``momentum_config``: mmcv builds the hook named
        ``policy`` (title-cased if all lower case) + ``suffix``."""
        hook_cfg = self.cfg.get(name)
        if not isinstance(hook_cfg, dict):
            return
        policy = hook_cfg.get('policy')
        if not isinstance(policy, str):
            self.report(f'{name}.policy', 'missing (e.g. policy=\'step\')')
            return
        if policy == policy.lower():
            policy = policy.title()
        self.check_typed(
            dict(hook_cfg, type=policy + suffix), HOOKS, name,
            extra={'policy'})

    def check_log_config(self):
        """``log_config``: what mmcv's ``register_logger_hooks`` and
        :func:`opera.utils.trackers.tracker_log_config` read, then each
        logger hook (``interval`` is passed to them by mmcv)."""
        log_config = self.cfg.get('log_config')
        if not isinstance(log_config, dict):
            return
        self.check_keys(log_config, 'log_config', {'interval', 'hooks'},
                        TRACKERS)
        for index, hook in enumerate(log_config.get('hooks') or []):
            self.check_typed(hook, HOOKS, f'log_config.hooks[{index}]')

    def check_data(self):
        """``data``: splits, loader settings, datasets and pipelines."""
        data = self.cfg.get('data')
        if not isinstance(data, dict):
            self.report('data', 'missing')
            return
        loader_keys = (signature_keys(build_dataloader)[0]
                       | signature_keys(DataLoader)[0])
        self.check_keys(data, 'data', loader_keys,
                        DATA_SPLITS + LOADER_KEYS)
        self.check_loader_values(data, 'data')
        for loader in LOADER_KEYS:
            if isinstance(data.get(loader), dict):
                self.check_keys(data[loader], f'data.{loader}', loader_keys)
                self.check_loader_values(data[loader], f'data.{loader}')
        for split in DATA_SPLITS:
            if split in data:
                self.check_dataset(data[split], f'data.{split}')

    def check_loader_values(self, loader, where):
        """Batch size >= 1 and worker count >= 0."""
        for key, least in (('samples_per_gpu', 1), ('workers_per_gpu', 0)):
            value = loader.get(key)
            if value is not None and not (isinstance(value, int)
                                          and value >= least):
                self.report(f'{where}.{key}',
                            f'must be an integer >= {least}, got {value!r}')

    def check_dataset(self, dataset, where):
        """A dataset (or a wrapper, or a list of them) and its pipeline."""
        if isinstance(dataset, (list, tuple)):
            for index, item in enumerate(dataset):
                self.check_dataset(item, f'{where}[{index}]')
            return
        self.check_typed(dataset, DATASETS, where)
        if not isinstance(dataset, dict):
            return
        for key in ('dataset', 'datasets'):
            if key in dataset:
                self.check_dataset(dataset[key], f'{where}.{key}')
        self.check_pipeline(dataset.get('pipeline') or [], f'{where}.pipeline')

    def check_pipeline(self, pipeline, where):
        """Each step of a pipeline, and the steps inside wrapper steps."""
        for index, step in enumerate(pipeline):
            step_where = f'{where}[{index}]'
            self.check_typed(step, PIPELINES, step_where)
            if isinstance(step, dict):
                for key in ('transforms', 'policies'):
                    inner = step.get(key)
                    if isinstance(inner, list) and all(
                            isinstance(s, dict) for s in inner):
                        self.check_pipeline(inner, f'{step_where}.{key}')

    def check_evaluation(self):
        """``evaluation``: the eval hook's arguments, and what it passes on
        to the validation dataset's ``evaluate``."""
        evaluation = self.cfg.get('evaluation')
        val = (self.cfg.get('data') or {}).get('val')
        if not isinstance(evaluation, dict) or not isinstance(val, dict):
            return
        dataset_cls = DATASETS.get(val.get('type', ''))
        if dataset_cls is None:
            return
        known, hook_takes_more = signature_keys(EvalHook)
        evaluate, takes_more = signature_keys(dataset_cls.evaluate)
        if hook_takes_more and not takes_more:
            self.check_keys(evaluation, 'evaluation', known | evaluate,
                            {'type'})

    def check_detections_per_image(self):
        """``test_cfg.max_per_img`` cannot exceed queries x classes: the
        head's top-k over its scores would fail at the first evaluation."""
        model = self.cfg.get('model') or {}
        head = model.get('bbox_head') or {}
        test_cfg = model.get('test_cfg') or head.get('test_cfg') or {}
        wanted = test_cfg.get('max_per_img')
        queries, classes = head.get('num_query'), head.get('num_classes')
        if None in (wanted, queries, classes):
            return
        if wanted > queries * classes:
            self.report(
                'model.test_cfg.max_per_img',
                f'{wanted} detections per image, but the head can give at '
                f'most num_query x num_classes = {queries} x {classes} = '
                f'{queries * classes}')


def check_config(cfg, filename):
    """Check ``cfg`` (read from ``filename``) before a training run.

    Raises:
        ConfigError: Naming the file and every problem: the key's path, the
            closest known name and the known ones.
    """
    ConfigChecker(cfg, filename).check()


def check_test_config(cfg, filename):
    """The checks of :func:`check_config` that testing needs (the
    detections kept per image), for ``tools/test.py``.

    Raises:
        ConfigError: As :func:`check_config`.
    """
    checker = ConfigChecker(cfg, filename)
    checker.check_detections_per_image()
    checker.raise_problems()
