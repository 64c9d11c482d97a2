"""Evaluation hooks that run the inference loops of ``opera.apis``.

Those loops keep pose results intact (mmdet's would mask-encode keypoints)
and collect distributed results with gloo as well as nccl. A model with EMA
weights (``opera.EMAHook``) is evaluated with those.
"""
import torch.distributed as dist
from mmdet.core.evaluation import DistEvalHook as MMDetDistEvalHook
from mmdet.core.evaluation import EvalHook as MMDetEvalHook
from torch.nn.modules.batchnorm import _BatchNorm

from mmcv_custom.ema import ema_weights
from ..test import multi_gpu_test, single_gpu_test


class EvalHook(MMDetEvalHook):
    """mmdet's ``EvalHook`` with ``single_gpu_test`` of ``opera.apis``."""

    def _do_evaluate(self, runner):
        """Run inference, evaluate, and save the best checkpoint if asked."""
        if not self._should_evaluate(runner):
            return
        with ema_weights(runner.model, runner.logger):
            results = single_gpu_test(runner.model, self.dataloader)
        self.latest_results = results
        runner.log_buffer.output['eval_iter_num'] = len(self.dataloader)
        key_score = self.evaluate(runner, results)
        if self.save_best and key_score:
            self._save_ckpt(runner, key_score)


class DistEvalHook(MMDetDistEvalHook):
    """mmdet's ``DistEvalHook`` that collects results with ``multi_gpu_test``
    of ``opera.apis`` (no CUDA tensors), so CPU processes can evaluate too.

    BatchNorm buffers are still broadcast from rank 0 first, and the best
    checkpoint is still saved when ``save_best`` is set.
    """

    def _do_evaluate(self, runner):
        """Run distributed inference, then evaluate and save on rank 0."""
        if self.broadcast_bn_buffer:
            _broadcast_bn_buffers(runner.model)
        if not self._should_evaluate(runner):
            return
        with ema_weights(runner.model, runner.logger):
            results = multi_gpu_test(runner.model, self.dataloader)
        self.latest_results = results
        if runner.rank != 0:
            return
        print('\n')
        runner.log_buffer.output['eval_iter_num'] = len(self.dataloader)
        key_score = self.evaluate(runner, results)
        if self.save_best and key_score:
            self._save_ckpt(runner, key_score)


def _broadcast_bn_buffers(model):
    """Copy rank 0's BatchNorm running statistics to every rank.

    DDP does not synchronise these buffers, so ranks may otherwise evaluate
    slightly different models.
    """
    for module in model.modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            dist.broadcast(module.running_var, 0)
            dist.broadcast(module.running_mean, 0)
