"""Runner and hook registries for opera's additions to mmcv's training loop.

Children of mmcv's registries with the scope 'opera', so configs name them
``opera.X`` (``runner = dict(type='opera.ResumableEpochBasedRunner')``) next
to mmcv's and mmdet's unscoped names.
"""
from mmcv.runner.builder import RUNNERS as MMCV_RUNNERS
from mmcv.runner.hooks import HOOKS as MMCV_HOOKS
from mmcv.utils import Registry

RUNNERS = Registry('runner', parent=MMCV_RUNNERS, scope='opera')
HOOKS = Registry('hook', parent=MMCV_HOOKS, scope='opera')
