"""The transformers (encode -> pre_decoder -> forward_decoder) and what
they hand each other."""
from .decoder_queries import DecoderQueries
from .deformable_detr_transformer import (DeformableDetrTransformer,
                                          DeformableDetrTransformerDecoder,
                                          DetrTransformerEncoder)
from .dino_transformer import DinoTransformer, DinoTransformerDecoder
from .per_image_queries import PerImageQueries
from .pose_transformer import PETRPoseDecoder, PETRTransformer
from .refine import refine_reference

__all__ = [
    'DecoderQueries', 'DeformableDetrTransformer',
    'DeformableDetrTransformerDecoder', 'DetrTransformerEncoder',
    'DinoTransformer', 'DinoTransformerDecoder', 'PerImageQueries',
    'PETRPoseDecoder', 'PETRTransformer', 'refine_reference'
]
