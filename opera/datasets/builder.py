"""Dataset and pipeline registries of opera.

Children of mmdet's, so ``opera.X`` entries can be built by mmdet's
``build_dataset`` and ``Compose`` and mmdet's own datasets stay reachable as
``mmdet.X``.
"""
from mmcv.utils import Registry
from mmdet.datasets import DATASETS as MMDET_DATASETS
from mmdet.datasets import PIPELINES as MMDET_PIPELINES

DATASETS = Registry('dataset', parent=MMDET_DATASETS, scope='opera')
PIPELINES = Registry('pipeline', parent=MMDET_PIPELINES, scope='opera')
