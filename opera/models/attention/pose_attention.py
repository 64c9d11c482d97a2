"""Deformable attention that samples around a pose (PETR's pose decoder).

Each query carries a reference pose of K keypoints. Every head samples each
level once per keypoint (``num_points = K``), at the keypoint moved by a
predicted offset measured in half the size of the box around the pose, so a
query looks at its own person's joints whatever the person's scale.

Like :mod:`.deformable_attention`, it runs in fp32 under fp16 training: the
sampling locations are keypoints plus offsets scaled by the pose's box, and
half precision would blur them.
"""
from mmcv.cnn import constant_init, xavier_init
from mmcv.cnn.bricks.registry import ATTENTION as MMCV_ATTENTION
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch)
from mmcv.runner import force_fp32

from ..builder import ATTENTION
from .deformable_attention import FP32_INPUTS


def pose_sampling_locations(reference_poses, offsets, offset_scale=0.5,
                            min_box_size=1e-4):
    """Where each head samples: keypoint + offset x pose box size x scale.

    Args:
        reference_poses (Tensor): [bs, nq, num_levels, K, 2], normalised
            (x, y) of the reference keypoints on each level.
        offsets (Tensor): [bs, nq, num_heads, num_levels, K, 2] predicted
            offsets.
        offset_scale (float): Offsets are in units of ``offset_scale`` x the
            box (w, h).
        min_box_size (float): Lower bound of the box width and height.

    Returns:
        Tensor: [bs, nq, num_heads, num_levels, K, 2] sampling locations.
    """
    box_size = (reference_poses.amax(dim=-2) -
                reference_poses.amin(dim=-2)).clamp(min=min_box_size)
    return (reference_poses[:, :, None] +
            offsets * box_size[:, :, None, :, None, :] * offset_scale)


@ATTENTION.register_module()
class PoseDeformableAttention(MultiScaleDeformableAttention):
    """Multi-scale deformable attention with one point per keypoint.

    mmcv's ``MultiScaleDeformableAttention`` (same parameters, created in
    the same order) but for where it samples: see :meth:`forward`.

    Args:
        embed_dims (int): Query and value channels.
        num_heads (int): Attention heads.
        num_levels (int): Feature levels.
        num_points (int): Sampling points per head and level; equals the
            number of keypoints K of the reference poses.
        offset_scale (float): See :func:`pose_sampling_locations`.
        min_box_size (float): See :func:`pose_sampling_locations`.
        im2col_step (int): Chunk size of the CUDA kernel.
        dropout (float): Dropout on the output before the residual.
        batch_first (bool): Queries and values are [bs, n, c] if True,
            else [n, bs, c].
        init_cfg (dict | None): Unused; see :meth:`init_weights`.
    """

    def __init__(self,
                 embed_dims=256,
                 num_heads=8,
                 num_levels=4,
                 num_points=17,
                 offset_scale=0.5,
                 min_box_size=1e-4,
                 im2col_step=64,
                 dropout=0.1,
                 batch_first=False,
                 init_cfg=None):
        super().__init__(
            embed_dims=embed_dims,
            num_heads=num_heads,
            num_levels=num_levels,
            num_points=num_points,
            im2col_step=im2col_step,
            dropout=dropout,
            batch_first=batch_first,
            init_cfg=init_cfg)
        self.offset_scale = offset_scale
        self.min_box_size = min_box_size
        # Set to True by mmcv's wrap_fp16_model (Fp16OptimizerHook).
        self.fp16_enabled = False

    def init_weights(self):
        """Zero offsets and weights (sample the reference keypoints, evenly
        weighted; not mmcv's ring of offsets around one reference point);
        Xavier value and output projections."""
        constant_init(self.sampling_offsets, 0.)
        constant_init(self.attention_weights, 0.)
        xavier_init(self.value_proj, distribution='uniform', bias=0.)
        xavier_init(self.output_proj, distribution='uniform', bias=0.)

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
        """Attend from each query to its pose's keypoints on every level.

        mmcv's forward cannot be reused: it computes the sampling locations
        inline, from one reference point (or box) per query and level, and
        divides the offsets by ``num_points``. Here every point has its own
        reference, its keypoint, and the offsets scale with the pose's box
        (:func:`pose_sampling_locations`); the projections, the softmax and
        mmcv's sampling kernel are the same steps as mmcv's.

        Args:
            query (Tensor): [nq, bs, c] ([bs, nq, c] if batch_first).
            key (Tensor | None): Unused (deformable attention has no keys).
            value (Tensor | None): [num_value, bs, c]; ``query`` if None.
            identity (Tensor | None): Residual; ``query`` if None.
            query_pos (Tensor | None): Added to ``query`` for the offsets and
                weights.
            key_padding_mask (Tensor | None): [bs, num_value], True at
                padding (zeroed values).
            reference_points (Tensor): [bs, nq, num_levels, 2K], reference
                poses (x1, y1, ..., xK, yK) normalised per level.
            spatial_shapes (Tensor): [num_levels, 2], (h, w) per level.
            level_start_index (Tensor): [num_levels] start of each level in
                ``value``.

        Returns:
            Tensor: Same shape as ``query``: identity + attended values
            (fp32 under fp16 training).
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        if reference_points.size(-1) != 2 * self.num_points:
            raise ValueError(
                f'reference poses need {2 * self.num_points} coordinates '
                f'(num_points keypoints), got {reference_points.size(-1)}')

        value = self.project_values(value, key_padding_mask)
        locations, weights = self.locations_and_weights(
            query, reference_points)

        output = self.output_proj(
            self.sample(value, spatial_shapes, level_start_index, locations,
                        weights))
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return identity + self.dropout(output)

    def locations_and_weights(self, query, reference_points):
        """Where each head samples and with which attention weight.

        Args:
            query (Tensor): [bs, nq, c], query_pos already added.
            reference_points (Tensor): [bs, nq, num_levels, 2K], see
                :meth:`forward`.

        Returns:
            tuple[Tensor, Tensor]: locations [bs, nq, num_heads, num_levels,
            K, 2] (x, y) normalised on each level's (padded) feature map,
            and weights [bs, nq, num_heads, num_levels, K] (a softmax over
            each head's levels and points).
        """
        bs, num_query, _ = query.shape
        offsets = self.sampling_offsets(query).view(bs, num_query,
                                                    self.num_heads,
                                                    self.num_levels,
                                                    self.num_points, 2)
        weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads,
            self.num_levels * self.num_points).softmax(-1).view(
                bs, num_query, self.num_heads, self.num_levels,
                self.num_points)
        locations = pose_sampling_locations(
            reference_points.view(bs, num_query, self.num_levels,
                                  self.num_points, 2), offsets,
            self.offset_scale, self.min_box_size)
        return locations, weights

    def project_values(self, value, key_padding_mask):
        """[bs, num_value, c] -> per-head values [bs, num_value, num_heads,
        c / num_heads], zero at padding (``key_padding_mask``
        [bs, num_value])."""
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.)
        return value.view(*value.shape[:2], self.num_heads, -1)

    def sample(self, value, spatial_shapes, level_start_index, locations,
               weights):
        """mmcv's sampling: the CUDA kernel on GPU, its PyTorch version on
        CPU.

        Args:
            value (Tensor): [bs, num_value, num_heads, c / num_heads].
            spatial_shapes, level_start_index (Tensor): See :meth:`forward`.
            locations (Tensor): [bs, nq, num_heads, num_levels, K, 2].
            weights (Tensor): [bs, nq, num_heads, num_levels, K].

        Returns:
            Tensor: [bs, nq, c].
        """
        if value.is_cuda:
            return MultiScaleDeformableAttnFunction.apply(
                value, spatial_shapes, level_start_index, locations, weights,
                self.im2col_step)
        return multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                                   locations, weights)


# Opera's released PETR configs name it without a scope, which mmcv resolves
# in its own registry: the name is kept there too.
MMCV_ATTENTION.register_module(
    name='PoseDeformableAttention', module=PoseDeformableAttention)
