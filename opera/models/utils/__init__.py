"""Small helpers of the models: strict arguments, layer checkpointing,
keypoint-layout config filling."""
from .layer_checkpoint import run_layer

__all__ = ['run_layer']
