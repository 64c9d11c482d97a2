"""Criteria: matching and losses of a set of predictions, apart from the
model."""
from .detr_criterion import DETRCriterion
from .petr_criterion import PETRCriterion
from .set_criterion import SetCriterion

__all__ = ['DETRCriterion', 'PETRCriterion', 'SetCriterion']
