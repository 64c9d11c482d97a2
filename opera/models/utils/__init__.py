from .builder import TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE
from .hybrid_matching import HybridQueryGroups
from .pose_attention import PoseDeformableAttention, pose_sampling_locations
from .pose_transformer import PETRPoseDecoder, PETRTransformer
from .transformer import (DeformableDetrTransformer,
                          DeformableDetrTransformerDecoder, refine_reference)

__all__ = [
    'TRANSFORMER', 'TRANSFORMER_LAYER_SEQUENCE', 'HybridQueryGroups',
    'DeformableDetrTransformer', 'DeformableDetrTransformerDecoder',
    'refine_reference', 'PoseDeformableAttention', 'pose_sampling_locations',
    'PETRPoseDecoder', 'PETRTransformer'
]
