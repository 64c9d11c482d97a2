from .builder import ATTENTION, TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE
from .decoder_queries import DecoderQueries
from .deformable_attention import MultiScaleDeformableAttention
from .denoising import ContrastiveDenoisingQueries
from .dino_transformer import DinoTransformer, DinoTransformerDecoder
from .fixed_target_groups import FixedTargetGroup, GroundTruthQueries
from .group_attention import MultiheadAttention, QueryGroupMask
from .hybrid_matching import (HybridQueryGroups, QueryGroup,
                              build_query_groups)
from .layer_checkpoint import run_layer
from .memory_pyramid import MemoryPyramid
from .per_image_queries import PerImageQueries
from .pose_attention import PoseDeformableAttention, pose_sampling_locations
from .pose_denoising import PoseDenoisingQueries
from .pose_transformer import PETRPoseDecoder, PETRTransformer
from .refine import refine_reference
from .transformer import (DeformableDetrTransformer,
                          DeformableDetrTransformerDecoder,
                          DetrTransformerEncoder)

__all__ = [
    'ATTENTION', 'TRANSFORMER', 'TRANSFORMER_LAYER_SEQUENCE',
    'MultiScaleDeformableAttention', 'MultiheadAttention', 'QueryGroupMask',
    'HybridQueryGroups', 'QueryGroup', 'build_query_groups', 'run_layer',
    'DecoderQueries', 'FixedTargetGroup', 'GroundTruthQueries',
    'ContrastiveDenoisingQueries', 'PoseDenoisingQueries', 'DinoTransformer',
    'DinoTransformerDecoder',
    'DeformableDetrTransformer',
    'DeformableDetrTransformerDecoder', 'DetrTransformerEncoder',
    'refine_reference', 'PoseDeformableAttention', 'pose_sampling_locations',
    'PETRPoseDecoder', 'PETRTransformer', 'PerImageQueries', 'MemoryPyramid'
]
