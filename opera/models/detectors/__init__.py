from .petr import PETR

__all__ = ['PETR']
