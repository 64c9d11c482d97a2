"""Training and testing loops of opera, and inference on images."""
from .inference import init_model
from .test import collect_results, multi_gpu_test, single_gpu_test
from .train import DeviceAgnosticDDP, train_model, wrap_model

__all__ = [
    'DeviceAgnosticDDP', 'collect_results', 'init_model', 'multi_gpu_test',
    'single_gpu_test', 'train_model', 'wrap_model'
]
