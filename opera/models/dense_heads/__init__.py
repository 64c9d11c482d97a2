from .hybrid_deformable_detr_head import HybridDeformableDETRHead
from .petr_criterion import PETRCriterion
from .petr_head import PETRHead

__all__ = ['HybridDeformableDETRHead', 'PETRCriterion', 'PETRHead']
