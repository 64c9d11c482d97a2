"""An epoch-based runner whose runs can be killed and resumed exactly."""
import os.path as osp
import random

import numpy as np
import torch
from mmcv.parallel import is_module_wrapper
from mmcv.runner import EpochBasedRunner

from .builder import RUNNERS
from .checkpoint import (DEFAULT_REVISE_KEYS, link_atomic,
                         load_checkpoint_checked, save_checkpoint_atomic)

LATEST_LINK = 'latest.pth'
# Non-finite parameters named in an error message.
MAX_NAMED = 5


def epoch_seed(seed, epoch, rank=0):
    """A 32-bit seed for ``epoch`` of process ``rank`` of a run seeded with
    ``seed``.

    Mixed by numpy's ``SeedSequence`` so that neighbouring (seed, epoch,
    rank) triples give unrelated streams.
    """
    entropy = [seed, epoch, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def seed_all(seed):
    """Seed Python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@RUNNERS.register_module()
class ResumableEpochBasedRunner(EpochBasedRunner):
    """mmcv's ``EpochBasedRunner`` made safe to kill and to resume.

    * Checkpoints and the ``latest.pth`` link are written atomically (see
      :mod:`mmcv_custom.checkpoint`): a kill while saving leaves the
      previous checkpoint in place, never a truncated one.
    * A checkpoint whose weights are not all finite is refused instead of
      being written.
    * Each epoch starts by seeding every global random generator from the
      run's seed (``meta['seed']``, stored in the checkpoints), the epoch
      number and the process rank. The training sampler's shuffle, the data
      augmentation and dropout of epoch e then depend only on (seed, e,
      rank), not on what ran before, so a run resumed from ``epoch_e.pth``
      (the kill may have happened anywhere in epoch e + 1) replays the rest
      of the run exactly: with ``--seed`` and ``--deterministic`` it ends
      with the same weights as a run that was never interrupted. (Processes
      get different streams, as with mmdet's ``--diff-seed``; distributed
      samplers shuffle with their own generator, seeded by epoch.)
    * Loading weights (``resume_from``, ``load_from``) fails on a parameter
      of the wrong shape and lists missing or unexpected keys.
    * With a data loader without worker processes (``workers_per_gpu=0``)
      an epoch starts at once, without mmcv's 2 s pause.

    Config: ``runner = dict(type='opera.ResumableEpochBasedRunner',
    max_epochs=12)``.
    """

    def train(self, data_loader, **kwargs):
        """Seed the generators for this epoch, then train one epoch."""
        seed = (self.meta or {}).get('seed')
        if seed is None:
            self.logger.warning(
                'meta has no seed: epoch %d is not seeded, so resuming this '
                'run will not reproduce it', self.epoch + 1)
        else:
            seed_all(epoch_seed(seed, self.epoch, self.rank))
        if getattr(data_loader, 'num_workers', 0) > 0:
            super().train(data_loader, **kwargs)
        else:
            self._train_epoch_in_process(data_loader, **kwargs)

    def _train_epoch_in_process(self, data_loader, **kwargs):
        """One epoch of mmcv's ``train`` without its 2 s pause before it.

        mmcv pauses to keep data-loader worker processes from deadlocking at
        the epoch change; a loader without workers cannot, and on a sample of
        a few images (the quick start: one iteration per epoch) the pauses
        would be a third of the run.
        """
        self.model.train()
        self.mode = 'train'
        self.data_loader = data_loader
        self._max_iters = self._max_epochs * len(data_loader)
        self.call_hook('before_train_epoch')
        for i, data_batch in enumerate(data_loader):
            self.data_batch = data_batch
            self._inner_iter = i
            self.call_hook('before_train_iter')
            self.run_iter(data_batch, train_mode=True, **kwargs)
            self.call_hook('after_train_iter')
            del self.data_batch
            self._iter += 1
        self.call_hook('after_train_epoch')
        self._epoch += 1

    def save_checkpoint(self,
                        out_dir,
                        filename_tmpl='epoch_{}.pth',
                        save_optimizer=True,
                        meta=None,
                        create_symlink=True):
        """Write ``out_dir/filename_tmpl.format(epoch)`` and ``latest.pth``
        atomically (arguments as in mmcv's ``EpochBasedRunner``).

        Raises:
            FloatingPointError: Some weights are NaN or infinite.
        """
        self._check_finite_weights()
        meta = dict(meta or {})
        meta.update(self.meta or {})
        meta.update(epoch=self.epoch + 1, iter=self.iter)
        filename = filename_tmpl.format(self.epoch + 1)
        optimizer = self.optimizer if save_optimizer else None
        save_checkpoint_atomic(
            self.model, osp.join(out_dir, filename), optimizer, meta)
        if create_symlink:
            link_atomic(filename, osp.join(out_dir, LATEST_LINK))

    def load_checkpoint(self,
                        filename,
                        map_location='cpu',
                        strict=False,
                        revise_keys=DEFAULT_REVISE_KEYS):
        """Load weights, failing on shape mismatches (see
        :func:`mmcv_custom.checkpoint.load_checkpoint_checked`)."""
        return load_checkpoint_checked(self.model, filename, map_location,
                                       self.logger, strict, revise_keys)

    def _check_finite_weights(self):
        """Raise FloatingPointError naming the non-finite parameters."""
        model = self.model.module if is_module_wrapper(
            self.model) else self.model
        bad = [
            name for name, param in model.named_parameters()
            if not torch.isfinite(param).all()
        ]
        if bad:
            raise FloatingPointError(
                f'Not saving the checkpoint of epoch {self.epoch + 1} '
                f'(iteration {self.iter}): {len(bad)} parameter(s) are NaN or '
                f'infinite, e.g. {", ".join(bad[:MAX_NAMED])}')
