from .deformable_detr import DeformableDETR
from .petr import PETR

__all__ = ['DeformableDETR', 'PETR']
