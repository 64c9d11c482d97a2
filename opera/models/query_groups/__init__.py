"""Query groups: the one-to-one and one-to-many supervision of a DETR.

Matching groups (:mod:`.hybrid_matching`) are matched to the ground truth
with a repeat K per decoder layer; fixed-target groups
(:mod:`.fixed_target_groups`) come with their targets, made by a group
maker each batch (denoising, Co-DETR's auxiliary heads).
"""
from .co_detr import *  # noqa: F401,F403
from .denoising import ContrastiveDenoisingQueries
from .fixed_target_groups import FixedTargetGroup, GroundTruthQueries
from .hybrid_matching import HybridQueryGroups, QueryGroup, build_query_groups
from .pose_denoising import PoseDenoisingQueries

__all__ = [
    'ContrastiveDenoisingQueries', 'FixedTargetGroup', 'GroundTruthQueries',
    'HybridQueryGroups', 'PoseDenoisingQueries', 'QueryGroup',
    'build_query_groups'
]
