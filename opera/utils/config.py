"""Config helpers: loading with overrides, moving the data root, checking
that dataset files exist."""
import os.path as osp

from mmcv import Config

DATA_ROOT_HINT = ('Set data_root to the folder that holds your data, e.g. '
                  '--cfg-options data_root=/path/to/coco/')
WRAPPED_DATASET_KEYS = ('dataset', 'datasets')
PATH_KEYS = ('ann_file', 'img_prefix')


def load_config(path, cfg_options=None):
    """Read a config file and apply ``--cfg-options`` overrides.

    A ``data_root`` override is applied first with
    :func:`replace_data_root`, so every path derived from the old root moves
    with it; the other overrides are merged afterwards and can still set
    single paths.

    Args:
        path (str): Config file.
        cfg_options (dict, optional): Dotted keys to values.

    Returns:
        mmcv.Config: The config.
    """
    cfg = Config.fromfile(path)
    options = dict(cfg_options or {})
    new_root = options.pop('data_root', None)
    if new_root is not None:
        replace_data_root(cfg, new_root)
    cfg.merge_from_dict(options)
    return cfg


def replace_data_root(cfg, new_root):
    """Point every ``cfg.data`` path under the old data root at ``new_root``.

    mmcv substitutes ``data_root`` into ``ann_file``, ``img_prefix`` and the
    like while parsing the file, so overriding ``data_root`` afterwards
    changes nothing. This rewrites, recursively through dataset wrappers and
    lists, every string in ``cfg.data`` that starts with the old
    ``cfg.data_root``, then sets ``cfg.data_root`` to ``new_root``.

    Args:
        cfg (mmcv.Config): Config to modify in place.
        new_root (str): New data root; a trailing '/' is added if missing.

    Returns:
        mmcv.Config: ``cfg`` itself.
    """
    new_root = _as_folder(new_root)
    old_root = cfg.get('data_root')
    if old_root and 'data' in cfg:
        cfg.data = _swap_prefix(cfg.data, _as_folder(old_root), new_root)
    cfg.data_root = new_root
    return cfg


def _as_folder(path):
    """Return ``path`` with exactly one trailing '/'."""
    return path.rstrip('/') + '/'


def _swap_prefix(node, old_root, new_root):
    """Return ``node`` with ``old_root`` replaced by ``new_root`` in strings.

    Containers are updated in place (tuples are rebuilt).
    """
    if isinstance(node, str):
        if node.startswith(old_root):
            return new_root + node[len(old_root):]
        return new_root if node == old_root.rstrip('/') else node
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _swap_prefix(value, old_root, new_root)
    elif isinstance(node, list):
        node[:] = [_swap_prefix(item, old_root, new_root) for item in node]
    elif isinstance(node, tuple):
        return tuple(_swap_prefix(item, old_root, new_root) for item in node)
    return node


def check_data_paths(cfg, splits):
    """Fail early, with a readable message, when dataset files are missing.

    Args:
        cfg (mmcv.Config): Config with a ``data`` section.
        splits (Iterable[str]): Splits to check, from 'train', 'val', 'test'.

    Raises:
        KeyError: A split is not in ``cfg.data``.
        FileNotFoundError: An ``ann_file`` or ``img_prefix`` does not exist.
    """
    for split in splits:
        if split not in cfg.data:
            raise KeyError(f'The config has no data.{split} section.')
        for dataset_cfg in _leaf_datasets(cfg.data[split]):
            _check_dataset_paths(dataset_cfg, split)


def _leaf_datasets(dataset_cfg):
    """Yield the innermost dataset configs inside wrappers and lists."""
    if isinstance(dataset_cfg, (list, tuple)):
        for item in dataset_cfg:
            yield from _leaf_datasets(item)
        return
    wrapped = [
        dataset_cfg[key] for key in WRAPPED_DATASET_KEYS if key in dataset_cfg
    ]
    if not wrapped:
        yield dataset_cfg
    for inner in wrapped:
        yield from _leaf_datasets(inner)


def _check_dataset_paths(dataset_cfg, split):
    """Raise FileNotFoundError for the first missing path of one dataset."""
    own_root = dataset_cfg.get('data_root')
    for key in PATH_KEYS:
        for path in _as_list(dataset_cfg.get(key)):
            if own_root and not osp.isabs(path):
                path = osp.join(own_root, path)
            if not osp.exists(path):
                raise FileNotFoundError(
                    f'data.{split}.{key} does not exist: {path!r}. '
                    f'{DATA_ROOT_HINT}')


def _as_list(paths):
    """Return the non-empty paths in ``paths`` (a str, a list or None)."""
    if not paths:
        return []
    if isinstance(paths, str):
        return [paths]
    return [path for path in paths if path]
