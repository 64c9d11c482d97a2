"""Training and testing loops of opera, and inference on images."""
from .hooks import DistEvalHook, EvalHook, QueryGroupScheduleHook
from .inference import init_model
from .inference_graph import InferenceGraph, graph_results, prepare_batch
from .onnx_backend import ONNXRuntimeDetector, init_onnx_model
from .onnx_export import export_onnx
from .test import collect_results, multi_gpu_test, single_gpu_test
from .train import DeviceAgnosticDDP, train_model, wrap_model

__all__ = [
    'DeviceAgnosticDDP', 'DistEvalHook', 'EvalHook', 'InferenceGraph',
    'ONNXRuntimeDetector', 'QueryGroupScheduleHook', 'collect_results',
    'export_onnx', 'graph_results', 'init_model', 'init_onnx_model',
    'multi_gpu_test', 'prepare_batch', 'single_gpu_test', 'train_model',
    'wrap_model'
]
