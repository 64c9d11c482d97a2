"""Export a model's one-to-one inference graph to ONNX (NMS-free).

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] \\
        --out model.onnx [--input-size H W] [--opset 17] [--verify] \\
        [--image IMG] [--cfg-options ...]

Image [bs, 3, H, W] in (batch size free, H x W fixed), out: every one-to-one
query's class logits and boxes (detection), or the top persons' scores,
labels and refined keypoints (pose); see ``opera/apis/inference_graph.py``
and docs/deployment.md. Without CHECKPOINT the model keeps its random
initialisation (to try the export). ``--verify`` runs ONNX Runtime on the
export input and on a batch of two, and prints the largest differences from
PyTorch, of the raw outputs and of the final boxes / scores / keypoints in
pixels.
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch
from mmcv import DictAction

import opera  # noqa: F401  (fills the registries)
from opera.apis import init_model
from opera.apis.inference_graph import graph_results, prepare_batch
from opera.apis.onnx_backend import ONNXRuntimeDetector, fixed_size_pipeline
from opera.apis.onnx_export import export_onnx
from opera.core.visualization import split_result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        'checkpoint', nargs='?', help='weights (default: random init)')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument(
        '--input-size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='image height and width (default: the test scale of the '
        'config, e.g. 800 1333)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument(
        '--dynamic-shape',
        action='store_true',
        help='height and width free too (not supported: see '
        'docs/deployment.md)')
    parser.add_argument(
        '--verify',
        action='store_true',
        help='compare ONNX Runtime with PyTorch on the export input')
    parser.add_argument(
        '--image',
        help='an image to export and verify with (through the test '
        'pipeline at --input-size); default: random input')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if args.dynamic_shape:
        parser.error(
            '--dynamic-shape: height and width are fixed at export. The '
            'feature-map sizes become Python ints in the traced graph '
            '(level split sizes, proposal grids, mmcv\'s deformable '
            'sampling); see docs/deployment.md')
    return args


def default_input_size(cfg):
    """(H, W) of the config's test scale (its (long, short) img_scale)."""
    for step in cfg.data.test.pipeline:
        scale = step.get('img_scale')
        if scale is not None:
            scale = scale[0] if isinstance(scale, list) else scale
            return min(scale), max(scale)
    raise ValueError('no img_scale in the test pipeline: give --input-size')


def example_input(cfg, input_size, image):
    """[1, 3, H, W]: ``image`` through the fixed-size test pipeline, or a
    seeded random input; and its metas (None for the random input)."""
    if image is None:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(1, 3, *input_size, generator=generator), None
    cfg = cfg.copy()
    cfg.data.test.pipeline = fixed_size_pipeline(cfg.data.test.pipeline,
                                                 input_size)
    return prepare_batch(cfg, [image])


def largest_differences(detector, torch_outputs, ort_outputs, names,
                        img_metas):
    """Largest |ONNX Runtime - PyTorch| of each raw output, and of the
    final boxes, scores and keypoints (pixels of the input)."""
    diffs = {
        name: float(np.abs(ours.numpy() - theirs).max())
        for name, ours, theirs in zip(names, torch_outputs, ort_outputs)
    }
    torch_results, ort_results = (
        [split_result(r) for r in graph_results(detector, outputs, img_metas)]
        for outputs in (torch_outputs, ort_outputs))
    for name, field, columns in (('final boxes (px)', 0, slice(0, 4)),
                                 ('final scores', 0, 4),
                                 ('final keypoints (px)', 2, slice(0, 2))):
        pairs = [(ours[field], theirs[field])
                 for ours, theirs in zip(torch_results, ort_results)
                 if ours[field] is not None]
        if pairs:
            diffs[name] = max(
                float(np.abs(a[..., columns] - b[..., columns]).max())
                for a, b in pairs)
    return diffs


def verify(detector, graph, onnx_file, example, img_metas):
    """ONNX Runtime vs PyTorch on ``example`` and on a batch of two."""
    runtime = ONNXRuntimeDetector(onnx_file, detector)
    batch = torch.cat([example, example.flip(-1)])
    for img in (example, batch):
        metas = (img_metas or synthetic_metas(img))[:1] * len(img)
        with torch.no_grad():
            torch_outputs = graph(img)
        diffs = largest_differences(detector, torch_outputs,
                                    runtime.run_graph(img),
                                    graph.output_names, metas)
        print(f'batch of {len(img)}: largest |ONNX Runtime - PyTorch|')
        for name, value in diffs.items():
            print(f'  {name:22s} {value:.3g}')


def synthetic_metas(img):
    height, width = img.shape[-2:]
    return [
        dict(
            img_shape=(height, width, 3),
            scale_factor=np.ones(4, dtype=np.float32))
    ]


def main(argv=None):
    args = parse_args(argv)
    detector = init_model(args.config, args.checkpoint, 'cpu',
                          args.cfg_options)
    if args.checkpoint is None:
        print('no CHECKPOINT: exporting random weights')
    input_size = tuple(args.input_size or default_input_size(detector.cfg))
    example, img_metas = example_input(detector.cfg, input_size, args.image)
    graph = export_onnx(
        detector,
        args.out,
        input_size,
        opset=args.opset,
        config=args.config,
        example=example)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MiB): '
          f'input img [batch, 3, {input_size[0]}, {input_size[1]}], '
          f'outputs {", ".join(graph.output_names)}')
    if args.verify:
        verify(detector, graph, args.out, example, img_metas)


if __name__ == '__main__':
    main(sys.argv[1:])
