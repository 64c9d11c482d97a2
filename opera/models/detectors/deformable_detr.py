"""mmdet's Deformable-DETR detector with the epoch call of query groups."""
from mmdet.models.detectors import DeformableDETR as MMDetDeformableDETR

from ..builder import DETECTORS
from .query_group_epoch import QueryGroupEpochMixin


@DETECTORS.register_module()
class DeformableDETR(QueryGroupEpochMixin, MMDetDeformableDETR):
    """mmdet's ``DeformableDETR`` (same arguments, parameters and
    checkpoints) plus :meth:`set_epoch` for hybrid-epoch schedules."""
