from .co_detr_auxiliary_heads import (CoATSSQueries, CoDETRAuxiliaryHeads,
                                      CoRoIQueries)
from .detr_criterion import DETRCriterion
from .hybrid_deformable_detr_head import HybridDeformableDETRHead
from .petr_criterion import PETRCriterion
from .petr_head import PETRHead
from .set_criterion import SetCriterion

__all__ = [
    'CoATSSQueries', 'CoDETRAuxiliaryHeads', 'CoRoIQueries',
    'DETRCriterion', 'HybridDeformableDETRHead', 'PETRCriterion', 'PETRHead',
    'SetCriterion'
]
