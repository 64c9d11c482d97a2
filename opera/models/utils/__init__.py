from .builder import TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE
from .hybrid_matching import HybridQueryGroups
from .transformer import (DeformableDetrTransformer,
                          DeformableDetrTransformerDecoder, refine_reference)

__all__ = [
    'TRANSFORMER', 'TRANSFORMER_LAYER_SEQUENCE', 'HybridQueryGroups',
    'DeformableDetrTransformer', 'DeformableDetrTransformerDecoder',
    'refine_reference'
]
