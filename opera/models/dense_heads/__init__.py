from .detr_criterion import DETRCriterion
from .hybrid_deformable_detr_head import HybridDeformableDETRHead
from .petr_criterion import PETRCriterion
from .petr_head import PETRHead
from .set_criterion import SetCriterion

__all__ = [
    'DETRCriterion', 'HybridDeformableDETRHead', 'PETRCriterion', 'PETRHead',
    'SetCriterion'
]
