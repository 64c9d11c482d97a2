"""Checkpoint files that survive a crash, and loading that names what does
not fit.

mmcv writes ``epoch_N.pth`` in place and then re-creates the ``latest.pth``
link by deleting it first. A process killed in between leaves a truncated
checkpoint, or no ``latest.pth`` at all, and then mmdet's
``find_latest_checkpoint`` (``--auto-resume``) takes the highest-numbered
``*.pth``: possibly the truncated one. Here every file and link is first
written under a temporary name in the same folder and then renamed over its
final name; a rename within a file system is atomic on POSIX, so a reader
sees either the previous file or the complete new one, never a partial one.
"""
import logging
import os
import os.path as osp
import platform
import re
import pickle
import shutil
import zipfile
from fnmatch import fnmatchcase

from mmcv.parallel import is_module_wrapper
from mmcv.runner import save_checkpoint
from mmcv.runner.checkpoint import _load_checkpoint
from mmcv.utils import print_log

from .ema import is_ema_key, take_ema_weights

# Not '.pth': find_latest_checkpoint globs '*.pth' and must never pick up a
# file that is still being written.
TMP_SUFFIX = '.tmp'
# BatchNorm step counters: absent from released checkpoints and unused by
# frozen BatchNorms, so not worth a warning.
IGNORED_MISSING = 'num_batches_tracked'
# Key renames applied to every loaded state dict, as mmcv does: weights saved
# from a DataParallel / DDP wrapper carry a 'module.' prefix.
DEFAULT_REVISE_KEYS = ((r'^module\.', ''), )
# The first bytes of torch's zip format (torch >= 1.6) and of its older
# pickle format (protocol 2).
ZIP_MAGIC = b'PK\x03\x04'
LEGACY_MAGIC = b'\x80\x02'
# What torch.load and mmcv raise on a file that is not a whole checkpoint
# (torch's weights-only unpickler also raises KeyError / AssertionError on
# bytes that are not a pickle).
READ_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError,
               zipfile.BadZipFile, ValueError, KeyError, AssertionError)


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read; the message names it."""


def describe_unreadable(filename):
    """Say what is wrong with a local checkpoint file torch cannot read.

    Returns:
        str: e.g. 'a zip archive cut short at 1234 bytes (no end record):
        truncated, e.g. by an interrupted copy or a full disk'.
    """
    size = osp.getsize(filename)
    if size == 0:
        return 'the file is empty (0 bytes)'
    with open(filename, 'rb') as f:
        head = f.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC and not zipfile.is_zipfile(filename):
        return (f'a zip archive cut short at {size} bytes (no end record): '
                'truncated, e.g. by an interrupted copy or download or a '
                'full disk')
    if head == ZIP_MAGIC:
        return f'a zip archive ({size} bytes) without a torch checkpoint'
    if head.startswith(LEGACY_MAGIC):
        return (f'an old-format torch file ({size} bytes) that ends early '
                'or is damaged')
    return f'not a torch checkpoint (starts with {head!r}, {size} bytes)'


def read_checkpoint(filename, map_location='cpu', logger=None):
    """mmcv's ``_load_checkpoint``; a local file it cannot read raises an
    error that names the file and what is wrong with it.

    Raises:
        CheckpointReadError: The local file is not a whole checkpoint.
    """
    try:
        return _load_checkpoint(filename, map_location, logger)
    except READ_ERRORS as error:
        if not osp.isfile(filename):
            raise
        reason = (str(error).splitlines() or [''])[0]
        raise CheckpointReadError(
            f'cannot read checkpoint {filename}: '
            f'{describe_unreadable(filename)} ({type(error).__name__}: '
            f'{reason})') from error


def write_atomic(filepath, write):
    """Call ``write(tmp_path)``, flush the file to disk, then rename it to
    ``filepath``: a reader never sees a partly written file.

    Args:
        filepath (str): Final local path.
        write (callable): Writes the whole file at the path it is given.
    """
    tmp_path = filepath + TMP_SUFFIX
    write(tmp_path)
    # Without fsync a power cut after the rename could still leave an empty
    # file under the final name.
    with open(tmp_path, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, filepath)


def save_checkpoint_atomic(model, filepath, optimizer=None, meta=None):
    """mmcv's ``save_checkpoint``, written atomically (:func:`write_atomic`).

    Args:
        model (nn.Module): Model (wrappers are unwrapped by mmcv).
        filepath (str): Final local path, e.g. ``work_dir/epoch_3.pth``.
        optimizer (Optimizer | dict, optional): Saved with the weights.
        meta (dict, optional): Saved as ``checkpoint['meta']``.
    """
    write_atomic(
        filepath, lambda path: save_checkpoint(
            model, path, optimizer=optimizer, meta=meta))


def link_atomic(filename, link_path):
    """Point ``link_path`` at ``filename`` (a name in the same folder),
    replacing any previous link in one rename.

    On Windows, where symbolic links usually need extra rights, the file is
    copied instead (as mmcv does there).
    """
    tmp_path = link_path + TMP_SUFFIX
    if osp.lexists(tmp_path):
        os.remove(tmp_path)
    if platform.system() == 'Windows':
        shutil.copyfile(osp.join(osp.dirname(link_path), filename), tmp_path)
    else:
        os.symlink(filename, tmp_path)
    os.replace(tmp_path, link_path)


def load_checkpoint_checked(model,
                            filename,
                            map_location='cpu',
                            logger=None,
                            strict=False,
                            revise_keys=DEFAULT_REVISE_KEYS,
                            reinit=(),
                            use_ema=False):
    """Load weights into ``model``; a parameter of the wrong shape is an error.

    mmcv's ``load_checkpoint`` only logs shape mismatches and trains on with
    those parameters at their initial values. Here they stop the load,
    each named with both shapes, unless a ``reinit`` pattern names them (to
    fine-tune on other classes or keypoints): the entries it matches are not
    loaded, keep the model's current (initial) values, and are logged with
    both shapes. Missing keys (kept at their initial values) and unexpected
    keys (ignored) are listed in a warning, or raised with ``strict``.

    Args:
        model (nn.Module): Model, possibly inside a DataParallel/DDP wrapper.
        filename (str): Checkpoint path or URL (anything mmcv can load).
        map_location (str | callable): As for ``torch.load``.
        logger (logging.Logger, optional): Where the warning goes.
        strict (bool): Missing or unexpected keys are errors too.
        revise_keys (Sequence[tuple[str, str]]): ``(pattern, replacement)``
            regex renames applied to the checkpoint keys.
        reinit (Sequence[str]): ``fnmatch`` patterns (``*`` any characters)
            over the model's state-dict keys, e.g.
            ``'bbox_head.cls_branches.*'``; each must match some key.
        use_ema (bool): If the checkpoint holds EMA weights
            (``opera.EMAHook``), load those as the model's weights, and say
            so.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        CheckpointReadError: The file cannot be read (truncated, not a
            checkpoint).
        ValueError: The file holds no state dict, a parameter's shape
            differs, a ``reinit`` pattern matches nothing, or (``strict``)
            keys are missing or unexpected.
    """
    checkpoint = read_checkpoint(filename, map_location, logger)
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{filename}: no state dict in this checkpoint')
    state_dict = checkpoint.get('state_dict', checkpoint)
    for pattern, replacement in revise_keys:
        state_dict = {
            re.sub(pattern, replacement, key): value
            for key, value in state_dict.items()
        }
    if is_module_wrapper(model):
        model = model.module
    model_state = model.state_dict()
    if use_ema:
        state_dict = take_ema_weights(state_dict, model_state, filename,
                                      logger)
    reinitialised = _keys_to_reinit(model_state, state_dict, reinit,
                                    filename, logger)
    state_dict = {
        key: value
        for key, value in state_dict.items() if key not in reinitialised
    }
    _check_shapes(model_state, state_dict, filename)
    result = model.load_state_dict(state_dict, strict=False)
    # EMA copies absent from the file start from the loaded weights
    # (opera.EMAHook.before_run).
    missing = [
        k for k in result.missing_keys if IGNORED_MISSING not in k
        and k not in reinitialised and not is_ema_key(k)
    ]
    _report_key_mismatch(filename, missing, result.unexpected_keys, logger,
                         strict)
    return checkpoint


def _keys_to_reinit(model_state, state_dict, patterns, filename, logger):
    """The model keys that ``patterns`` match, each logged with its shapes.

    Raises:
        ValueError: A pattern matches no key of the model.
    """
    chosen = []
    for pattern in patterns:
        matched = [key for key in model_state if fnmatchcase(key, pattern)]
        if not matched:
            raise ValueError(
                f're-initialise pattern {pattern!r} (load_from_reinit) '
                f'matches no parameter of the model; loading {filename}')
        chosen += [key for key in matched if key not in chosen]
    if chosen:
        lines = [
            f'{key}: checkpoint {_shape_of(state_dict.get(key))}, model '
            f'{tuple(model_state[key].shape)}' for key in chosen
        ]
        print_log(
            f'{filename}: {len(chosen)} entries re-initialised, not loaded '
            '(load_from_reinit):\n  ' + '\n  '.join(lines), logger)
    return set(chosen)


def _shape_of(value):
    """The shape of a checkpoint entry as a tuple, or 'absent'."""
    return 'absent' if value is None else tuple(value.shape)


def _check_shapes(model_state, state_dict, filename):
    """Raise ValueError naming every entry whose shape differs."""
    mismatched = [
        f'{key}: checkpoint {tuple(value.shape)}, model '
        f'{tuple(model_state[key].shape)}'
        for key, value in state_dict.items()
        if key in model_state and hasattr(value, 'shape')
        and value.shape != model_state[key].shape
    ]
    if mismatched:
        raise ValueError(
            f'{filename} does not fit the model: {len(mismatched)} '
            'parameter(s) have another shape (a different number of '
            'classes, queries or layers?):\n  ' + '\n  '.join(mismatched))


def _report_key_mismatch(filename, missing, unexpected, logger, strict):
    """Warn about (or, if ``strict``, raise on) missing/unexpected keys."""
    if not missing and not unexpected:
        return
    lines = [f'{filename} and the model do not have the same keys:']
    if missing:
        lines.append(f'{len(missing)} missing from the checkpoint (left at '
                     f'their initial values): {", ".join(missing)}')
    if unexpected:
        lines.append(f'{len(unexpected)} unexpected (ignored): '
                     f'{", ".join(unexpected)}')
    message = '\n  '.join(lines)
    if strict:
        raise ValueError(
            f'{message}\n  (to load it partially anyway: strict=False, or '
            '--non-strict for tools/test.py and demo/image_demo.py)')
    print_log(message, logger, level=logging.WARNING)
