"""Assigner and match-cost registries of opera (children of mmdet's)."""
from mmcv.utils import Registry
from mmdet.core.bbox.builder import BBOX_ASSIGNERS as MMDET_BBOX_ASSIGNERS
from mmdet.core.bbox.match_costs.builder import MATCH_COST as MMDET_MATCH_COST

BBOX_ASSIGNERS = Registry(
    'bbox_assigner', parent=MMDET_BBOX_ASSIGNERS, scope='opera')
MATCH_COST = Registry('match_cost', parent=MMDET_MATCH_COST, scope='opera')


def build_assigner(cfg, **default_args):
    return BBOX_ASSIGNERS.build(cfg, default_args=default_args)


def build_match_cost(cfg, **default_args):
    return MATCH_COST.build(cfg, default_args=default_args)
