"""Export a detector's inference graph to ONNX, with the model's identity.

The graph is :class:`.inference_graph.InferenceGraph`: one input ``img``
[bs, 3, H, W] with the batch size free and H, W fixed at export, outputs as
that module describes. It is traced by torch's TorchScript-based exporter
(``dynamo=False``), which handles the Python loops over feature levels and
decoder layers by unrolling them; the multi-scale deformable attention runs
its PyTorch path on CPU (``F.grid_sample`` -> ONNX ``GridSample``, opset
16 and later). See docs/deployment.md for what is and is not dynamic.

The file's ``metadata_props`` hold the model's identity
(:func:`model_identity`), which :mod:`.onnx_backend` checks against the
config it is loaded with.

onnx is imported only by the functions that need it.
"""
import os
import os.path as osp
import warnings

import torch

from opera.version import __version__
from .inference_graph import InferenceGraph, model_kind

METADATA_PREFIX = 'opera.'
# Identity entries that must agree between a file and the config it runs
# with; the others are informative.
CHECKED_IDENTITY = ('kind', 'detector', 'head', 'backbone', 'num_classes',
                    'num_query', 'num_keypoints', 'max_per_img',
                    'num_parameters')
MIN_OPSET = 16  # GridSample


def model_identity(detector, input_size=None, config=None):
    """What a graph computes and for which model, as strings.

    Args:
        detector (nn.Module): The detector.
        input_size (tuple[int, int], optional): (H, W) of the graph input.
        config (str, optional): Config file the detector was built from.

    Returns:
        dict[str, str]: ``kind``, ``detector``, ``head``, ``backbone``,
        ``num_classes``, ``num_query`` (one-to-one), ``num_keypoints`` and
        ``max_per_img`` (pose; the graph keeps that many persons),
        ``num_parameters`` (all, trainable or not), and when given
        ``input_size`` ('HxW') and ``config``.
    """
    head = detector.bbox_head
    backbone = detector.backbone
    kind = model_kind(detector)
    identity = dict(
        kind=kind,
        detector=type(detector).__name__,
        head=type(head).__name__,
        backbone=type(backbone).__name__ +
        (f'-{backbone.depth}' if hasattr(backbone, 'depth') else ''),
        num_classes=head.num_classes,
        num_query=head.query_groups.num_active_queries(False),
        num_parameters=sum(p.numel() for p in detector.parameters()),
        opera_version=__version__)
    if kind == 'pose':
        identity.update(
            num_keypoints=head.num_keypoints,
            max_per_img=head.test_cfg['max_per_img'])
    if input_size is not None:
        identity['input_size'] = 'x'.join(map(str, input_size))
    if config is not None:
        identity['config'] = osp.basename(config)
    return {key: str(value) for key, value in identity.items()}


def export_onnx(detector,
                out_file,
                input_size,
                opset=17,
                config=None,
                example=None):
    """Trace ``detector``'s inference graph into an ONNX file.

    Args:
        detector (nn.Module): The detector, on CPU (the deformable
            attention must take its PyTorch path).
        out_file (str): Where to write the .onnx file.
        input_size (tuple[int, int]): (H, W) of the input images.
        opset (int): ONNX opset, at least 16.
        config (str, optional): Config file name, stored in the metadata.
        example (Tensor, optional): [bs, 3, H, W] input to trace with;
            a seeded random one by default.

    Returns:
        InferenceGraph: The traced module (eval mode), to compare with.
    """
    if opset < MIN_OPSET:
        raise ValueError(f'opset {opset} has no GridSample (deformable '
                         f'attention): use --opset {MIN_OPSET} or later')
    if next(detector.parameters()).is_cuda:
        raise ValueError('export on CPU: on CUDA the deformable attention '
                         'runs its CUDA kernel, which ONNX cannot express')
    height, width = input_size
    graph = InferenceGraph(detector)
    if example is None:
        example = torch.randn(
            1, 3, height, width, generator=torch.Generator().manual_seed(0))
    if tuple(example.shape[-2:]) != (height, width):
        raise ValueError(f'example input is {list(example.shape)}, not '
                         f'[bs, 3, {height}, {width}]')
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    dynamic_axes = {name: {0: 'batch'} for name in graph.output_names}
    dynamic_axes['img'] = {0: 'batch'}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every Python int taken from a tensor (feature
        # map sizes, level offsets): they are fixed by H, W as intended.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(
            graph, (example, ),
            out_file,
            input_names=['img'],
            output_names=list(graph.output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False)
    write_metadata(out_file,
                   model_identity(detector, input_size, config))
    return graph


def write_metadata(onnx_file, identity):
    """Store ``identity`` in the file's ``metadata_props`` (keys prefixed
    with ``opera.``)."""
    import onnx
    model = onnx.load(onnx_file)
    onnx.helper.set_model_props(model, {
        METADATA_PREFIX + key: value
        for key, value in identity.items()
    })
    onnx.save(model, onnx_file)
