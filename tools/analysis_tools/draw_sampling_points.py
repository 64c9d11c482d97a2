"""Draw where the last decoder layer's deformable attention samples.

    python tools/analysis_tools/draw_sampling_points.py CONFIG [CHECKPOINT] \
        IMAGE [--out-file sampling.png] [--queries 3 17 | --top 3]

For each chosen query of a detection (H-Deformable-DETR) or pose (PETR,
H-PETR) model: one panel per feature level with the query's predicted box
or pose (the last decoder layer's, for a pose model before the refine
decoder) and its sampling points on that level, one colour per query, the
area of each point proportional to its attention weight. See
docs/get_started.md, "Where the attention looks".
"""
import argparse

import mmcv
from mmcv import DictAction

import opera  # noqa: F401  (fills the registries)
from opera.apis import init_model
from opera.apis.sampling_points import draw_sampling_points, query_samples


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Draw the deformable attention sampling points of '
        'chosen queries')
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        'checkpoint', nargs='?', help='weights (default: random init)')
    parser.add_argument('image', help='image file')
    parser.add_argument(
        '--out-file', default='sampling_points.png', help='PNG to write')
    parser.add_argument(
        '--queries', type=int, nargs='+', help='query indices to draw')
    parser.add_argument(
        '--top',
        type=int,
        default=3,
        help='without --queries: the best-scoring queries, this many')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def main(argv=None):
    """Draw the chosen queries' sampling points; return the samples."""
    args = parse_args(argv)
    model = init_model(args.config, args.checkpoint, args.device,
                       args.cfg_options)
    samples = query_samples(model, args.image, args.queries, args.top)
    layout = getattr(model.bbox_head, 'keypoint_layout', None)
    skeleton = layout.skeleton if layout is not None else ()
    image = mmcv.imread(args.image)
    mmcv.imwrite(
        draw_sampling_points(image, samples, model.CLASSES, skeleton),
        args.out_file)
    height, width = image.shape[:2]
    for sample in samples:
        x, y = sample.locations[..., 0], sample.locations[..., 1]
        outside = ((x < 0) | (x >= width) | (y < 0) | (y >= height)).sum()
        print(f'query {sample.query}: class {sample.label} score '
              f'{sample.score:.3f}, {sample.locations[..., 0].size} points '
              f'({outside} outside the image, not drawn)')
    print(f'wrote {args.out_file}')
    return samples


if __name__ == '__main__':
    main()
