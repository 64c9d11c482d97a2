"""Multi-scale deformable attention that stays in fp32 under mixed precision.

mmcv 1.7's deformable-attention CUDA kernel has no half-precision version,
and sampling locations in half precision (about 3 significant digits) would
move the sampled points by up to a pixel on large feature maps. Under mmcv's
fp16 training (``fp16 = dict(...)`` in a config: the model runs in
``autocast``) this module casts its half inputs to fp32 and runs with
autocast off, through mmcv's ``force_fp32``. Without fp16 it is mmcv's
``MultiScaleDeformableAttention``: same arguments and parameters, so
checkpoints load unchanged.
"""
from mmcv.ops import \
    MultiScaleDeformableAttention as MMCVMultiScaleDeformableAttention
from mmcv.runner import force_fp32

from .builder import ATTENTION

# Inputs that can arrive in half precision under autocast.
FP32_INPUTS = ('query', 'key', 'value', 'identity', 'query_pos',
               'reference_points')


@ATTENTION.register_module()
class MultiScaleDeformableAttention(MMCVMultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention``, computed in fp32 under fp16.

    Args: see mmcv's ``MultiScaleDeformableAttention``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Set to True by mmcv's wrap_fp16_model (Fp16OptimizerHook).
        self.fp16_enabled = False

    @force_fp32(apply_to=FP32_INPUTS)
    def forward(self,
                query,
                key=None,
                value=None,
                identity=None,
                query_pos=None,
                key_padding_mask=None,
                reference_points=None,
                spatial_shapes=None,
                level_start_index=None,
                **kwargs):
        """See mmcv's ``MultiScaleDeformableAttention.forward``; returns
        fp32 under fp16 training."""
        return super().forward(
            query,
            key,
            value,
            identity,
            query_pos,
            key_padding_mask,
            reference_points,
            spatial_shapes,
            level_start_index,
            **kwargs)
