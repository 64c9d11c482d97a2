"""Multi-scale deformable attention that stays in fp32 under mixed precision.

mmcv 1.7's deformable-attention CUDA kernel has no half-precision version,
and sampling locations in half precision (about 3 significant digits) would
move the sampled points by up to a pixel on large feature maps. Under mmcv's
fp16 training (``fp16 = dict(...)`` in a config: the model runs in
``autocast``) this module casts its half inputs to fp32 and runs with
autocast off, through mmcv's ``force_fp32``. Without fp16 it is mmcv's
``MultiScaleDeformableAttention``: same arguments and parameters, so
checkpoints load unchanged.

With ``per_image_queries`` (a :class:`.PerImageQueries`) the queries come
batched per person and the values per image (PETR's refine decoder): the
persons' queries are regrouped by image, so the value projection runs once
per image instead of once per person, and sampled back per person.

:meth:`MultiScaleDeformableAttention.locations_and_weights` computes where
the module samples, for drawing (``tools/analysis_tools/
draw_sampling_points.py``); mmcv's forward computes the same inline.
"""
from mmcv.ops import \
    MultiScaleDeformableAttention as MMCVMultiScaleDeformableAttention
from mmcv.runner import force_fp32

from ..builder import ATTENTION

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
                per_image_queries=None,
                **kwargs):
        """See mmcv's ``MultiScaleDeformableAttention.forward``; returns
        fp32 under fp16 training.

        Args:
            per_image_queries (PerImageQueries | None): When given, the
                query batch entries are persons (``query`` [k, n, c],
                ``reference_points`` [n, k, num_levels, 2 or 4]) and the
                value batch entries images (``value`` [num_value, bs, c],
                ``key_padding_mask`` [bs, num_value]); see
                :meth:`forward_per_image`.
        """
        if per_image_queries is not None:
            return self.forward_per_image(query, value, identity, query_pos,
                                          key_padding_mask, reference_points,
                                          spatial_shapes, level_start_index,
                                          per_image_queries)
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

    def locations_and_weights(self, query, reference_points, spatial_shapes):
        """Where each head samples and with which attention weight: the
        steps of mmcv's forward before the sampling.

        Args:
            query (Tensor): [bs, nq, c], query_pos already added.
            reference_points (Tensor): [bs, nq, num_levels, 2] points (x, y)
                or [bs, nq, num_levels, 4] boxes (cx, cy, w, h), normalised
                on each level's (padded) feature map.
            spatial_shapes (Tensor): [num_levels, 2], (h, w) per level.

        Returns:
            tuple[Tensor, Tensor]: locations [bs, nq, num_heads, num_levels,
            num_points, 2] (x, y) normalised like ``reference_points``, and
            weights [bs, nq, num_heads, num_levels, num_points] (a softmax
            over each head's levels and points).
        """
        bs, num_query, _ = query.shape
        shape = (bs, num_query, self.num_heads, self.num_levels,
                 self.num_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads, -1).softmax(-1).view(shape)
        references = reference_points[:, :, None, :, None]
        if reference_points.size(-1) == 2:
            # Offsets are in pixels of each level: (w, h) normalises them.
            level_size = spatial_shapes.flip(-1)[None, None, None, :, None]
            return references + offsets / level_size, weights
        # Offsets are in units of half the box, shared by the points.
        return (references[..., :2] +
                offsets / self.num_points * references[..., 2:] * 0.5,
                weights)

    def forward_per_image(self, query, value, identity, query_pos,
                          key_padding_mask, reference_points, spatial_shapes,
                          level_start_index, per_image_queries):
        """Persons' queries attend to their image's values, each image's
        values projected once.

        Args:
            query (Tensor): [k, n, c] ([n, k, c] if batch_first): k queries
                for each of n persons.
            value (Tensor): [num_value, bs, c] ([bs, num_value, c] if
                batch_first), one entry per image.
            identity, query_pos (Tensor | None): Shaped like ``query``.
            key_padding_mask (Tensor | None): [bs, num_value] per image.
            reference_points (Tensor): [n, k, num_levels, 2 or 4], already
                scaled by each person's image's valid ratios.
            spatial_shapes, level_start_index (Tensor): Shared by all images.
            per_image_queries (PerImageQueries): The image of each person.

        Returns:
            Tensor: Shaped like ``query``.
        """
        if identity is None:
            identity = query
        num_per_person = query.size(1 if self.batch_first else 0)

        def to_images(x):
            if x is None:
                return None
            if not self.batch_first:
                x = x.transpose(0, 1)
            x = per_image_queries.to_images(x)
            return x if self.batch_first else x.transpose(0, 1)

        output = super().forward(
            to_images(query),
            None,
            value,
            to_images(identity),
            to_images(query_pos),
            key_padding_mask,
            per_image_queries.to_images(reference_points),
            spatial_shapes,
            level_start_index)
        if not self.batch_first:
            output = output.transpose(0, 1)
        output = per_image_queries.to_persons(output, num_per_person)
        return output if self.batch_first else output.transpose(0, 1)
