"""The detector of every box DETR here: mmdet's Deformable-DETR detector
(backbone, neck, head) with the epoch call of query groups."""
from mmdet.models.detectors import DeformableDETR as MMDetDeformableDETR

from ..builder import DETECTORS
from .query_group_epoch import QueryGroupEpochMixin


# 'DeformableDETR': its name in released configs.
@DETECTORS.register_module(name=['DETRDetector', 'DeformableDETR'])
class DETRDetector(QueryGroupEpochMixin, MMDetDeformableDETR):
    """mmdet's ``DeformableDETR`` (same arguments, parameters and
    checkpoints) plus :meth:`set_epoch` for hybrid-epoch schedules; runs
    ``opera.DETRDetectionHead`` (Deformable-DETR, H-Deformable-DETR, Group
    DETR, DINO, Co-DETR)."""
