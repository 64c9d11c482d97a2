from .attention import *  # noqa: F401,F403
from .builder import (ATTENTION, BACKBONES, DETECTORS, HEADS, LOSSES, MODELS,
                      NECKS, TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE,
                      build_detector, build_model)
from .criteria import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .query_groups import *  # noqa: F401,F403
from .transformers import *  # noqa: F401,F403

__all__ = [
    'MODELS', 'BACKBONES', 'NECKS', 'HEADS', 'LOSSES', 'DETECTORS',
    'ATTENTION', 'TRANSFORMER', 'TRANSFORMER_LAYER_SEQUENCE', 'build_model',
    'build_detector'
]
