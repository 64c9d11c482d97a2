from .builder import (BACKBONES, DETECTORS, HEADS, LOSSES, MODELS, NECKS,
                      build_detector, build_model)
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403

__all__ = [
    'MODELS', 'BACKBONES', 'NECKS', 'HEADS', 'LOSSES', 'DETECTORS',
    'build_model', 'build_detector'
]
