"""Export a model's one-to-one inference graph to ONNX (NMS-free).

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] \\
        --out model.onnx [--input-size H W] [--opset 17] [--verify] \\
        [--image IMG] [--cfg-options ...]

Image [bs, 3, H, W] in (batch size free, H x W fixed), out: every one-to-one
query's class logits and boxes (detection), or the top persons' scores,
labels and refined keypoints (pose); see ``opera/apis/inference_graph.py``
and docs/deployment.md. Without CHECKPOINT the model keeps its random
initialisation (to try the export). ``--verify`` runs ONNX Runtime on the
export input and on a batch of two, prints the largest differences from
PyTorch, of the raw outputs and of the final boxes / scores / keypoints in
pixels, and exits with status 1, naming the outputs, if any is above its
tolerance (``--atol``, ``--pixel-atol``; see ``opera/apis/onnx_verify.py``).
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch
from mmcv import DictAction

import opera  # noqa: F401  (fills the registries)
from opera.apis import init_model
from opera.apis.inference_graph import prepare_batch
from opera.apis.onnx_backend import fixed_size_pipeline
from opera.apis.onnx_export import export_onnx
from opera.apis.onnx_verify import ATOL, PIXEL_ATOL, verify_onnx


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
        help='compare ONNX Runtime with PyTorch on the export input; exit '
        'status 1 if an output differs by more than its tolerance')
    parser.add_argument(
        '--atol',
        type=float,
        default=ATOL,
        help='--verify tolerance of the raw outputs (logits, boxes and '
        'keypoints in [0, 1], scores) and of the final scores '
        '(default: %(default)g)')
    parser.add_argument(
        '--pixel-atol',
        type=float,
        default=PIXEL_ATOL,
        help='--verify tolerance of the final boxes and keypoints, in '
        'pixels (default: %(default)g)')
    parser.add_argument(
        '--allow-topk-ties',
        action='store_true',
        help='--verify passes when the differences come only from near-tied '
        'scores that a top-k ranks the other way (the graph with '
        "PyTorch's top-k choices within tolerance, and so the scores it "
        'ranks); default: they fail')
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


def verify(detector, onnx_file, example, img_metas, atol=ATOL,
           pixel_atol=PIXEL_ATOL, allow_topk_ties=False):
    """ONNX Runtime vs PyTorch on ``example`` and on a batch of two (it and
    its mirror image); prints the differences.

    Returns:
        list[str]: The failures, one line each (empty: verified).
    """
    batch = torch.cat([example, example.flip(-1)])
    failures = []
    for img in (example, batch):
        metas = (img_metas or synthetic_metas(img))[:1] * len(img)
        report = verify_onnx(detector, onnx_file, img, metas, atol,
                             pixel_atol)
        print(f'batch of {len(img)}: largest |ONNX Runtime - PyTorch| '
              '(tolerance)')
        print_differences(report)
        given = report['given_topk']
        if given is not None:
            print("  with PyTorch's top-k choices (graph inputs in a copy "
                  'of the graph):')
            print_differences(given, indent=4)
            for i, (count, total, gap) in enumerate(given['reordered']):
                print(f'    top-k {i}: ONNX Runtime chose {count} of {total} '
                      f'entries otherwise; PyTorch\'s scores of the two '
                      f'choices differ by at most {gap:.3g} there')
        failed = report['failures']
        if failed and allow_topk_ties and given is not None and (
                not given['failures']):
            print('  accepted (--allow-topk-ties): the graph agrees with '
                  "PyTorch's top-k choices; the differences come from "
                  'near-tied scores ranked the other way')
            continue
        failures += [
            f'batch of {len(img)}: {name} {value:.3g} > {tolerance:g}'
            for name, (value, tolerance) in failed.items()
        ]
        if failed and given is not None and not given['failures']:
            failures.append(
                f"batch of {len(img)}: with PyTorch's top-k choices every "
                'output is within tolerance: the differences come from '
                'near-tied scores ranked the other way (see '
                'docs/deployment.md; --allow-topk-ties accepts this)')
    return failures


def print_differences(report, indent=2):
    for name, value in report['differences'].items():
        tolerance = report['failures'].get(name, (None, None))[1]
        flag = f'  > {tolerance:g}: FAIL' if tolerance is not None else ''
        print(f'{" " * indent}{name:22s} {value:.3g}{flag}')


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
        failures = verify(detector, args.out, example, img_metas, args.atol,
                          args.pixel_atol, args.allow_topk_ties)
        if failures:
            sys.exit(f'{args.out}: ONNX Runtime differs from PyTorch:\n' +
                     '\n'.join(failures))
        print(f'verified: every output within tolerance (atol {args.atol:g}'
              f', {args.pixel_atol:g} px)')


if __name__ == '__main__':
    main(sys.argv[1:])
