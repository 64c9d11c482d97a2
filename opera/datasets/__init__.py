from .builder import DATASETS, PIPELINES

__all__ = ['DATASETS', 'PIPELINES']
