"""Measure a config's inference speed, train-step time split and peak memory.

    python tools/analysis_tools/benchmark.py CONFIG [CHECKPOINT]
        [--input-size 320 384] [--batch-size 2] [--num-boxes 8]
        [--iters 5] [--warmup 2] [--mode infer train] [--json out.json]

Inputs are synthetic (random images of a fixed size, random boxes), so runs
are comparable run to run and need no dataset. A train iteration is split
into forward (backbone + head outputs), matching (the Hungarian assigner's
calls), loss (the rest of the loss computation) and backward.
"""
import argparse
import contextlib
import json
import logging
import platform
import resource
import sys
import time
from statistics import median

import torch
from mmcv import Config, DictAction
from mmcv.runner import load_checkpoint

import opera  # noqa: F401  (registers modules)
from opera.models import build_detector


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark a detector config')
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument(
        '--input-size', type=int, nargs=2, default=[800, 1333],
        metavar=('H', 'W'), help='padded input size')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument(
        '--num-boxes', type=int, default=8, help='ground truth per image')
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--mode', nargs='+', choices=['infer', 'train'],
        default=['infer', 'train'])
    parser.add_argument('--device', default=None, help='cpu or cuda')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def synthetic_batch(batch_size, height, width, num_boxes, num_classes,
                    device, generator):
    """Random images, metas and ground-truth boxes/labels."""
    img = torch.randn(batch_size, 3, height, width, generator=generator)
    metas, boxes, labels = [], [], []
    for _ in range(batch_size):
        metas.append(
            dict(
                img_shape=(height, width, 3),
                ori_shape=(height, width, 3),
                pad_shape=(height, width, 3),
                batch_input_shape=(height, width),
                scale_factor=torch.ones(4).numpy(),
                flip=False))
        xy = torch.rand(num_boxes, 2, generator=generator) * 0.7
        wh = torch.rand(num_boxes, 2, generator=generator) * 0.25 + 0.05
        scale = torch.tensor([width, height, width, height])
        boxes.append((torch.cat([xy, xy + wh], 1) * scale).to(device))
        labels.append(
            torch.randint(0, num_classes, (num_boxes, ),
                          generator=generator).to(device))
    return dict(
        img=img.to(device), img_metas=metas, gt_bboxes=boxes,
        gt_labels=labels)


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class Timer:
    """Accumulates wall time of the wrapped calls (e.g. the assigner)."""

    def __init__(self, device):
        self.device, self.total = device, 0.0

    def wrap(self, fn):

        def timed(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            self.total += time.perf_counter() - start
            return out

        return timed


@contextlib.contextmanager
def timed_assigner(head, timer):
    original = head.assigner.assign
    head.assigner.assign = timer.wrap(original)
    try:
        yield
    finally:
        head.assigner.assign = original


def measure_inference(model, batch, device, iters, warmup):
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            sync(device)
            start = time.perf_counter()
            model.simple_test(batch['img'], batch['img_metas'])
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    seconds = median(times)
    return dict(
        seconds_per_batch=seconds,
        images_per_second=batch['img'].size(0) / seconds)


def measure_train_step(model, batch, device, iters, warmup):
    model.train()
    head = model.bbox_head
    rows = []
    for i in range(warmup + iters):
        model.zero_grad(set_to_none=True)
        timer = Timer(device)
        sync(device)
        t0 = time.perf_counter()
        outs = head(model.extract_feat(batch['img']), batch['img_metas'])
        sync(device)
        t1 = time.perf_counter()
        with timed_assigner(head, timer):
            losses = head.loss(*outs, batch['gt_bboxes'], batch['gt_labels'],
                               batch['img_metas'])
        total = sum(v for k, v in losses.items() if 'loss' in k)
        sync(device)
        t2 = time.perf_counter()
        total.backward()
        sync(device)
        t3 = time.perf_counter()
        if i >= warmup:
            rows.append(
                dict(
                    forward=t1 - t0,
                    matching=timer.total,
                    loss=t2 - t1 - timer.total,
                    backward=t3 - t2,
                    total=t3 - t0))
    return {key: median(r[key] for r in rows) for key in rows[0]}


def peak_memory_mb(device):
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is in KiB on Linux: the peak resident set of this process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args):
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.model.backbone.init_cfg = None  # weights come from CHECKPOINT, if any
    torch.manual_seed(args.seed)
    model = build_detector(cfg.model)
    # mmcv logs one line per initialised parameter; keep the table readable.
    logging.getLogger('mmcv').setLevel(logging.WARNING)
    model.init_weights()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.to(device)
    generator = torch.Generator().manual_seed(args.seed)
    batch = synthetic_batch(args.batch_size, *args.input_size,
                            args.num_boxes, model.bbox_head.num_classes,
                            device, generator)
    result = dict(
        config=args.config,
        device=torch.cuda.get_device_name() if device.startswith('cuda') else
        f'cpu ({platform.processor() or platform.machine()}, '
        f'{torch.get_num_threads()} threads)',
        input_size=args.input_size,
        batch_size=args.batch_size,
        num_boxes=args.num_boxes,
        iters=args.iters,
        trainable_params=sum(p.numel() for p in model.parameters()
                             if p.requires_grad))
    if 'infer' in args.mode:
        result['inference'] = measure_inference(model, batch, device,
                                                args.iters, args.warmup)
    if 'train' in args.mode:
        result['train_step'] = measure_train_step(model, batch, device,
                                                  args.iters, args.warmup)
    result['peak_memory_mb'] = peak_memory_mb(device)
    return result


def format_table(result):
    lines = [
        f"config      {result['config']}",
        f"device      {result['device']}",
        f"input       {result['batch_size']} x {result['input_size'][0]}x"
        f"{result['input_size'][1]}, {result['num_boxes']} boxes/image",
        f"parameters  {result['trainable_params']:,} trainable",
    ]
    if 'inference' in result:
        inf = result['inference']
        lines.append(f"inference   {inf['seconds_per_batch']:.3f} s/batch, "
                     f"{inf['images_per_second']:.2f} images/s")
    if 'train_step' in result:
        step = result['train_step']
        parts = ', '.join(f'{k} {step[k]:.3f}'
                          for k in ('forward', 'matching', 'loss', 'backward'))
        lines.append(f"train step  {step['total']:.3f} s ({parts})")
    lines.append(f"peak memory {result['peak_memory_mb']:.0f} MiB")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    result = run(args)
    print(format_table(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main(sys.argv[1:])
