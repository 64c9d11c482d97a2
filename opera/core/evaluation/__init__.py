"""Evaluation hooks of opera."""
from .eval_hooks import DistEvalHook

__all__ = ['DistEvalHook']
