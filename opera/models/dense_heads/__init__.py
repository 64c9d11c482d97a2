from .hybrid_deformable_detr_head import HybridDeformableDETRHead

__all__ = ['HybridDeformableDETRHead']
