"""Parameters and FLOPs of a config's eval-mode inference graph.

    python tools/analysis_tools/get_flops.py CONFIG [--input-size H W]
        [--cfg-options ...]

Counts one forward pass of one image of H x W (default 800 x 1333) through
the graph that inference runs (``opera.apis.inference_graph``): backbone,
neck, encoder, the one-to-one queries of the decoder (and for pose models
the top persons through the refine decoder; no heatmap branch). What is
counted, in FLOPs of 2 per multiply-add:

- every matrix multiply and convolution, by torch's ``FlopCounterMode``
  (linear layers, attention products, convolutions), with the formulas of
  the CPU self-attention kernel that it lacks added (``opera.utils.flops``);
- the sampling of each multi-scale deformable attention call, which that
  counter does not see (``grid_sample`` and the weighted sum are not
  matmuls): per query, head, level, point and channel of the head, a
  bilinear interpolation (4 multiply-adds) and its attention-weighted sum
  (1 multiply-add), i.e. ``10 x bs x queries x levels x points x
  embed_dims`` per call.

Not counted: element-wise work (activations, normalisation, softmax,
additions, sigmoid), sampling-location arithmetic, top-k and indexing.
DETR papers count a multiply-add as one FLOP (fvcore): the ``GMACs`` line
is that convention (half the FLOPs).
"""
import argparse
import logging
import sys

import torch
from mmcv import DictAction
from mmcv.ops import MultiScaleDeformableAttention

import opera  # noqa: F401  (fills the registries)
from opera.apis import init_model
from opera.apis.inference_graph import InferenceGraph
from opera.utils.flops import flop_counter_mode

# Per query, head, level, point and head channel: bilinear interpolation
# (4 multiply-adds) + attention weighting (1 multiply-add), 2 FLOPs each.
SAMPLING_FLOPS = 10
# mmcv's, which opera's fp32 and pose deformable attentions subclass.
DEFORMABLE_ATTENTIONS = (MultiScaleDeformableAttention, )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        '--input-size',
        type=int,
        nargs=2,
        default=[800, 1333],
        metavar=('H', 'W'),
        help='image height and width (default 800 1333)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        help='override config entries, e.g. model.bbox_head.num_query=900',
        action=DictAction)
    return parser.parse_args(argv)


def count_parameters(model):
    """(all, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def deformable_sampling_flops(module, query, batch_first):
    """FLOPs of one deformable attention call's sampling.

    Args:
        module (nn.Module): The attention (``num_levels``, ``num_points``,
            ``embed_dims``).
        query (Tensor): [nq, bs, c], or [bs, nq, c] when ``batch_first``.
        batch_first (bool): Layout of ``query``.

    Returns:
        int: ``SAMPLING_FLOPS x bs x nq x levels x points x embed_dims``.
    """
    num_query, batch = query.shape[:2]
    if batch_first:
        num_query, batch = batch, num_query
    return (SAMPLING_FLOPS * batch * num_query * module.num_levels *
            module.num_points * module.embed_dims)


class DeformableSamplingCounter:
    """Adds up :func:`deformable_sampling_flops` over every call of the
    deformable attentions of a model while it is entered."""

    def __init__(self, model):
        self.modules = [
            m for m in model.modules() if isinstance(m, DEFORMABLE_ATTENTIONS)
        ]
        self.flops = 0
        self.calls = 0
        self.handles = []

    def _hook(self, module, args, kwargs, output):
        query = args[0] if args else kwargs['query']
        self.flops += deformable_sampling_flops(module, query,
                                                module.batch_first)
        self.calls += 1

    def __enter__(self):
        self.handles = [
            m.register_forward_hook(self._hook, with_kwargs=True)
            for m in self.modules
        ]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def count_flops(detector, input_size):
    """FLOPs of one H x W image through ``detector``'s inference graph.

    Returns:
        dict: ``matmul_conv`` (torch's counter), ``deformable_sampling``,
        ``total`` (both), ``deformable_calls`` and ``by_module`` (torch's
        counter per top-level module: backbone, neck, bbox_head).
    """
    graph = InferenceGraph(detector)
    img = torch.randn(1, 3, *input_size,
                      generator=torch.Generator().manual_seed(0))
    counter = flop_counter_mode(display=False, depth=2)
    # Frozen parameters instead of no_grad: the counter's per-module
    # tracking hooks any module output that requires grad, and fails on a
    # parameter a module hands on unchanged.
    trainable = [p for p in detector.parameters() if p.requires_grad]
    for param in trainable:
        param.requires_grad_(False)
    try:
        with counter, DeformableSamplingCounter(detector) as sampling:
            graph(img)
    finally:
        for param in trainable:
            param.requires_grad_(True)
    by_module = {
        name.split('.')[-1]: sum(flops.values())
        for name, flops in counter.get_flop_counts().items()
        if name.count('.') == 2
    }
    matmul_conv = counter.get_total_flops()
    return dict(
        matmul_conv=matmul_conv,
        deformable_sampling=sampling.flops,
        deformable_calls=sampling.calls,
        total=matmul_conv + sampling.flops,
        by_module=by_module)


def format_report(config, input_size, params, flops):
    total, trainable = params
    lines = [
        f'config       {config}',
        f'input        1 x 3 x {input_size[0]} x {input_size[1]}',
        f'parameters   {total:,} ({trainable:,} trainable)',
        f"FLOPs        {flops['total'] / 1e9:.1f} G "
        f"({flops['total'] / 2e9:.1f} GMACs)",
        f"  matmul/conv {flops['matmul_conv'] / 1e9:.1f} G "
        '(torch FlopCounterMode formulas)',
        f"  deformable sampling {flops['deformable_sampling'] / 1e9:.1f} G "
        f"({flops['deformable_calls']} calls)",
    ]
    lines += [
        f'  {name:11s} {value / 1e9:.1f} G matmul/conv'
        for name, value in flops['by_module'].items()
    ]
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    logging.getLogger('mmcv').setLevel(logging.WARNING)
    detector = init_model(args.config, None, 'cpu', args.cfg_options)
    params = count_parameters(detector)
    flops = count_flops(detector, tuple(args.input_size))
    print(format_report(args.config, args.input_size, params, flops))
    return params, flops


if __name__ == '__main__':
    main(sys.argv[1:])
