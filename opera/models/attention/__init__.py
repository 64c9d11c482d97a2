"""Attention layers: per-group self-attention, deformable cross-attention
around a box or a pose."""
from .deformable_attention import MultiScaleDeformableAttention
from .group_attention import MultiheadAttention, QueryGroupMask
from .pose_attention import PoseDeformableAttention, pose_sampling_locations

__all__ = [
    'MultiScaleDeformableAttention', 'MultiheadAttention', 'QueryGroupMask',
    'PoseDeformableAttention', 'pose_sampling_locations'
]
