"""Evaluation hooks of opera."""
from .eval_hooks import DistEvalHook, EvalHook

__all__ = ['DistEvalHook', 'EvalHook']
