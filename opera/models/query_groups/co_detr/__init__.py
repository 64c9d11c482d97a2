"""Co-DETR's auxiliary heads, whose positives are decoder queries."""
from .auxiliary_heads import CoATSSQueries, CoDETRAuxiliaryQueries, CoRoIQueries
from .auxiliary_queries import (AuxiliaryContentEmbedding,
                                AuxiliaryQueryEmbedding)
from .memory_pyramid import MemoryPyramid

__all__ = [
    'AuxiliaryContentEmbedding', 'AuxiliaryQueryEmbedding', 'CoATSSQueries',
    'CoDETRAuxiliaryQueries', 'CoRoIQueries', 'MemoryPyramid'
]
