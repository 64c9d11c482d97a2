"""Measure a config's inference speed, train-step time split and peak memory.

    python tools/analysis_tools/benchmark.py CONFIG [CHECKPOINT]
        [--input-size 320 384] [--batch-size 2] [--num-boxes 8]
        [--iters 5] [--warmup 2] [--mode infer train] [--json out.json]
        [--cfg-options ...] [--vs CONFIG2 [--vs-cfg-options ...]]

Inputs are synthetic (random images of a fixed size, random boxes, and
random keypoints inside them for pose models), so runs are comparable run to
run and need no dataset. A train iteration is split into forward (backbone +
head outputs), matching (the Hungarian assigner's calls), loss (the rest of
the loss computation; for PETR also the refine decoder, which runs on the
matched persons) and backward. Matching is also reported per branch: the
one-to-one decoder queries, the one-to-many queries and the encoder
proposals.

Next to each time it prints the matmul and convolution FLOPs of that part
(by the formulas of torch's ``FlopCounterMode``, with the CPU
self-attention kernel's added: ``opera.utils.flops``; counted in one extra
pass that is not timed: forward for inference; forward, loss and backward
for a train step) and the rate achieved, GFLOP/s, so every run shows how
far it is from the machine's arithmetic limit. Peak memory is per model:
the CUDA peak allocated, or on Linux CPUs the peak resident set (VmHWM)
during its steps, reset before each step.

With ``--vs`` a second config (or the same one with other options) is built
in the same process and measured round by round in turn with the first, so
both see the same machine load; the ratios (second / first) are medians of
the per-round ratios, and the per-round time ratios are printed beside
them (``round_ratios`` in the JSON).
"""
import argparse
import contextlib
import json
import logging
import platform
import sys
import time
from statistics import median

import torch
from mmcv import Config, DictAction
from mmcv.runner import load_checkpoint
from torch.utils._python_dispatch import TorchDispatchMode

import opera  # noqa: F401  (registers modules)
from opera.models import build_detector
from opera.utils.flops import op_flops


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
    parser.add_argument(
        '--epoch', type=int, default=0,
        help='training epoch (0-based) for query-group schedules')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument(
        '--vs',
        metavar='CONFIG',
        help='a second config measured in the same run, round by round '
        'interleaved with the first; ratios are second / first')
    parser.add_argument(
        '--vs-cfg-options',
        nargs='+',
        action=DictAction,
        help='--cfg-options of the --vs config')
    return parser.parse_args(argv)


def synthetic_batch(batch_size, height, width, num_boxes, num_classes,
                    num_keypoints, device, generator):
    """Random images, metas and ground truth: boxes [n, 4] (x1, y1, x2, y2)
    and labels [n]; with ``num_keypoints`` also keypoints [n, K, 3] inside
    the boxes (all visible) and box areas [n]."""
    img = torch.randn(batch_size, 3, height, width, generator=generator)
    batch = dict(img=img.to(device), img_metas=[], gt_bboxes=[], gt_labels=[])
    if num_keypoints:
        batch.update(gt_keypoints=[], gt_areas=[])
    scale = torch.tensor([width, height, width, height])
    for _ in range(batch_size):
        batch['img_metas'].append(
            dict(
                img_shape=(height, width, 3),
                ori_shape=(height, width, 3),
                pad_shape=(height, width, 3),
                batch_input_shape=(height, width),
                scale_factor=torch.ones(4).numpy(),
                flip=False))
        xy = torch.rand(num_boxes, 2, generator=generator) * 0.7
        wh = torch.rand(num_boxes, 2, generator=generator) * 0.25 + 0.05
        boxes = torch.cat([xy, xy + wh], 1) * scale
        batch['gt_bboxes'].append(boxes.to(device))
        batch['gt_labels'].append(
            torch.randint(0, num_classes, (num_boxes, ),
                          generator=generator).to(device))
        if num_keypoints:
            low, high = boxes[:, None, :2], boxes[:, None, 2:]
            xy = low + torch.rand(
                num_boxes, num_keypoints, 2, generator=generator) * (
                    high - low)
            visible = torch.full((num_boxes, num_keypoints, 1), 2.)
            batch['gt_keypoints'].append(
                torch.cat([xy, visible], -1).to(device))
            batch['gt_areas'].append((high - low)[:, 0].prod(-1).to(device))
    return batch


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def untimed_phase(name):
    """The phase context of timed steps: nothing."""
    return contextlib.nullcontext()


class FlopCounter(TorchDispatchMode):
    """Matmul/conv FLOPs of the aten ops run inside, by
    :func:`opera.utils.flops.op_flops` (torch's ``FlopCounterMode`` itself
    is not used: its module tracking fails on views of parameters taken
    under ``no_grad``, as the query embeddings are)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.flops += op_flops(func, args, kwargs, out)
        return out


class PhaseFlops:
    """Matmul/conv FLOPs of named phases of a step (:class:`FlopCounter`).

    Use an instance as a step's ``phase``: ``with phase('forward'): ...``.
    """

    def __init__(self):
        self.totals = {}

    @contextlib.contextmanager
    def __call__(self, name):
        with FlopCounter() as counter:
            yield
        self.totals[name] = self.totals.get(name, 0) + counter.flops


def gflops_per_second(flops, seconds):
    """None without matmul/conv work or time."""
    return flops / seconds / 1e9 if flops and seconds > 0 else None


class MatchingTimer:
    """Wall time inside a head's assigner, per matching branch: a hook of
    the criterion's ``register_assign_hook``.

    Assignments with ``num_repeats`` > 1 are the one-to-many branch; the
    others of ``num_query_one2one`` queries the one-to-one decoder queries,
    of any other number the encoder proposals.
    """

    BRANCHES = ('one2one', 'one2many', 'encoder')

    def __init__(self, device, num_query_one2one):
        self.device = device
        self.num_query_one2one = num_query_one2one
        self.totals = dict.fromkeys(self.BRANCHES, 0.0)

    def branch(self, num_queries, num_repeats):
        if num_repeats > 1:
            return 'one2many'
        if num_queries == self.num_query_one2one:
            return 'one2one'
        return 'encoder'

    @contextlib.contextmanager
    def __call__(self, num_queries, num_repeats):
        sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.totals[self.branch(num_queries, num_repeats)] += (
                time.perf_counter() - start)


@contextlib.contextmanager
def timed_matching(head, timer):
    """Time every assignment of ``head.criterion`` with ``timer``."""
    handle = head.criterion.register_assign_hook(timer)
    try:
        yield
    finally:
        handle.remove()


def inference_step(model, batch, device, phase=untimed_phase):
    """Seconds of one test-time forward pass of the batch."""
    model.eval()
    with torch.no_grad(), phase('forward'):
        sync(device)
        start = time.perf_counter()
        model.simple_test(batch['img'], batch['img_metas'])
        sync(device)
    return dict(seconds_per_batch=time.perf_counter() - start)


def batch_targets(batch):
    """The ground truth of ``batch`` as the heads' ``loss`` takes it: its
    ``gt_*`` lists (boxes and labels; keypoints and areas for poses)."""
    return {name: value for name, value in batch.items()
            if name.startswith('gt_')}


def train_step(model, batch, device, phase=untimed_phase):
    """Seconds of one training iteration, split into its parts; ``phase``
    wraps the forward, loss (with matching) and backward parts."""
    model.train()
    head = model.bbox_head
    model.zero_grad(set_to_none=True)
    timer = MatchingTimer(device, head.query_groups.groups[0].num_queries)
    sync(device)
    t0 = time.perf_counter()
    targets = batch_targets(batch)
    with phase('forward'):
        # With the batch's ground truth, as in training: the fixed-target
        # groups (denoising, Co-DETR's auxiliary heads with their own
        # losses) are made and decoded in the forward.
        outs = head(
            model.extract_feat(batch['img']), batch['img_metas'], targets)
    sync(device)
    t1 = time.perf_counter()
    with timed_matching(head, timer), phase('loss'):
        losses = head.loss(outs, targets, batch['img_metas'])
        total = sum(v for k, v in losses.items() if 'loss' in k)
    sync(device)
    t2 = time.perf_counter()
    with phase('backward'):
        total.backward()
    sync(device)
    t3 = time.perf_counter()
    matching = sum(timer.totals.values())
    return dict(
        forward=t1 - t0,
        matching=matching,
        loss=t2 - t1 - matching,
        backward=t3 - t2,
        total=t3 - t0,
        **{f'matching_{name}': value
           for name, value in timer.totals.items()})


def measure(step, runs, device, iters, warmup):
    """``step`` on every model in turn, ``warmup + iters`` rounds.

    Interleaving the models round by round exposes them to the same load
    (a shared CPU), so their ratios are fairer than those of separate runs.
    Each row also has the step's peak memory (``peak_memory_mb``, None where
    it cannot be measured).

    Returns:
        list[list[dict]]: Per model, the rows of the measured rounds.
    """
    rows = [[] for _ in runs]
    for i in range(warmup + iters):
        for model_rows, (model, batch) in zip(rows, runs):
            reset_peak_memory(device)
            row = step(model, batch, device)
            row['peak_memory_mb'] = peak_memory_mb(device)
            if i >= warmup:
                model_rows.append(row)
    return rows


def count_flops(step, run_, device):
    """Matmul/conv FLOPs per phase of one untimed ``step`` of a model."""
    flops = PhaseFlops()
    step(*run_, device, phase=flops)
    flops.totals['total'] = sum(flops.totals.values())
    return flops.totals


def summarise(rows):
    """Median of every time over the rounds, the largest peak memory."""
    summary = {
        key: median(row[key] for row in rows)
        for key in rows[0] if key != 'peak_memory_mb'
    }
    peaks = [row['peak_memory_mb'] for row in rows]
    summary['peak_memory_mb'] = None if None in peaks else max(peaks)
    return summary


def round_ratios(rows_a, rows_b, key_a, key_b=None):
    """Per round, ``rows_b[key_b] / rows_a[key_a]`` (``key_b`` defaults to
    ``key_a``); None when a denominator is 0."""
    key_b = key_b or key_a
    if not all(a[key_a] > 0 for a in rows_a):
        return None
    return [b[key_b] / a[key_a] for a, b in zip(rows_a, rows_b)]


def median_ratio(rows_a, rows_b, key_a, key_b=None):
    """Median of :func:`round_ratios`; None when a denominator is 0."""
    ratios = round_ratios(rows_a, rows_b, key_a, key_b)
    return None if ratios is None else median(ratios)


def reset_peak_memory(device):
    """Start a new peak: CUDA's allocator statistics, or on Linux the
    process's peak resident set (writing 5 to clear_refs resets VmHWM)."""
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')


def peak_memory_mb(device):
    """Peak since :func:`reset_peak_memory`: CUDA max allocated, or the
    process's peak resident set (VmHWM; None where /proc is missing)."""
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    with contextlib.suppress(OSError):
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024  # kB
    return None


def build_run(config, cfg_options, checkpoint, args, device):
    """A model of ``config`` on ``device`` and its synthetic batch."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.backbone.init_cfg = None  # weights come from CHECKPOINT, if any
    torch.manual_seed(args.seed)
    model = build_detector(cfg.model)
    # mmcv logs one line per initialised parameter; keep the tables readable.
    logging.getLogger('mmcv').setLevel(logging.WARNING)
    model.init_weights()
    # Query groups with an epoch schedule (hybrid epoch) are measured in
    # their first phase; in training the schedule hook sets the epoch.
    model.set_epoch(args.epoch)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    model.to(device)
    generator = torch.Generator().manual_seed(args.seed)
    batch = synthetic_batch(args.batch_size, *args.input_size,
                            args.num_boxes, model.bbox_head.num_classes,
                            getattr(model.bbox_head, 'num_keypoints', 0),
                            device, generator)
    return model, batch


def describe(config, model, args, device):
    return dict(
        config=config,
        device=torch.cuda.get_device_name() if device.startswith('cuda') else
        f'cpu ({platform.processor() or platform.machine()}, '
        f'{torch.get_num_threads()} threads)',
        input_size=args.input_size,
        batch_size=args.batch_size,
        num_boxes=args.num_boxes,
        iters=args.iters,
        trainable_params=sum(p.numel() for p in model.parameters()
                             if p.requires_grad))


def run(args):
    """Measure ``args.config`` (and ``args.vs``, interleaved).

    Returns:
        dict: The config's results; with ``--vs`` also ``vs`` (the same for
        the other config) and ``ratios`` (other / this, median over rounds).
    """
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    specs = [(args.config, args.cfg_options, args.checkpoint)]
    if args.vs:
        specs.append((args.vs, args.vs_cfg_options, None))
    runs = [build_run(*spec, args, device) for spec in specs]
    results = [
        describe(spec[0], model, args, device)
        for spec, (model, _) in zip(specs, runs)
    ]
    rows = {}
    if 'infer' in args.mode:
        rows['inference'] = measure(inference_step, runs, device, args.iters,
                                    args.warmup)
        for result, model_rows, run_ in zip(results, rows['inference'],
                                            runs):
            batch = run_[1]
            inference = summarise(model_rows)
            inference['images_per_second'] = (
                batch['img'].size(0) / inference['seconds_per_batch'])
            inference['flops'] = count_flops(inference_step, run_,
                                             device)['total']
            inference['gflops_per_second'] = gflops_per_second(
                inference['flops'], inference['seconds_per_batch'])
            result['inference'] = inference
    if 'train' in args.mode:
        rows['train_step'] = measure(train_step, runs, device, args.iters,
                                     args.warmup)
        for result, model_rows, run_ in zip(results, rows['train_step'],
                                            runs):
            step = summarise(model_rows)
            result['train_step'] = step
            result['train_flops'] = count_flops(train_step, run_, device)
            result['train_gflops_per_second'] = train_rates(
                step, result['train_flops'])
            result['one2many_over_one2one_matching'] = None
            if step['matching_one2many'] > 0:
                result['one2many_over_one2one_matching'] = median_ratio(
                    model_rows, model_rows, 'matching_one2one',
                    'matching_one2many')
    for result in results:
        peaks = [result[mode].pop('peak_memory_mb')
                 for mode in ('inference', 'train_step') if mode in result]
        result['peak_memory_mb'] = None if None in peaks else max(peaks)
    if args.vs:
        results[0]['vs'] = results[1]
        results[0]['ratios'] = vs_ratios(rows, *results)
        # The spread of the time ratios, round by round.
        results[0]['round_ratios'] = {
            name: round_ratios(*rows[mode], key)
            for name, mode, key in (('inference_seconds', 'inference',
                                     'seconds_per_batch'),
                                    ('train_total', 'train_step', 'total'))
            if mode in rows
        }
    return results[0]


def train_rates(step, flops):
    """GFLOP/s of a train step's parts; the loss FLOPs include matching's,
    so their rate is over the loss and matching time."""
    seconds = dict(
        forward=step['forward'],
        loss=step['loss'] + step['matching'],
        backward=step['backward'],
        total=step['total'])
    return {
        name: gflops_per_second(flops[name], seconds[name])
        for name in seconds
    }


def vs_ratios(rows, first, second):
    """--vs config / this config: medians of the per-round time ratios,
    and the FLOP ratios."""
    ratios = {}
    if 'inference' in rows:
        ratios['inference_seconds'] = median_ratio(*rows['inference'],
                                                   'seconds_per_batch')
        ratios['inference_flops'] = (second['inference']['flops'] /
                                     first['inference']['flops'])
    if 'train_step' in rows:
        for key in ('total', 'forward', 'backward', 'matching'):
            ratios[f'train_{key}'] = median_ratio(*rows['train_step'], key)
        ratios['train_flops'] = (second['train_flops']['total'] /
                                 first['train_flops']['total'])
    if first['peak_memory_mb'] and second['peak_memory_mb']:
        ratios['peak_memory'] = (second['peak_memory_mb'] /
                                 first['peak_memory_mb'])
    return ratios


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
        rate = flops_and_rate(inf['flops'], inf['gflops_per_second'])
        lines.append(f"inference   {inf['seconds_per_batch']:.3f} s/batch, "
                     f"{inf['images_per_second']:.2f} images/s, {rate}")
    if 'train_step' in result:
        step, flops = result['train_step'], result['train_flops']
        rates = result['train_gflops_per_second']
        lines.append(f"train step  {step['total']:.3f} s, "
                     f"{flops_and_rate(flops['total'], rates['total'])}")
        for part in ('forward', 'matching', 'loss', 'backward'):
            line = f'  {part:<9} {step[part]:.3f} s'
            if part in flops:
                line += ', ' + flops_and_rate(flops[part], rates[part])
            lines.append(line + (' (with matching)' if part == 'loss' else ''))
        branches = ', '.join(f"{name} {step['matching_' + name]:.4f}"
                             for name in MatchingTimer.BRANCHES)
        lines.append(f'matching    {branches} s')
        ratio = result['one2many_over_one2one_matching']
        if ratio is not None:
            lines.append(f'            one2many / one2one {ratio:.2f}x')
    peak = result['peak_memory_mb']
    lines.append('peak memory ' +
                 ('unknown' if peak is None else f'{peak:.0f} MiB'))
    if 'vs' in result:
        lines += ['', 'vs', format_table(result['vs']), '']
        for name, value in result['ratios'].items():
            if value is None:
                continue
            line = f'ratio       {name}: {value:.2f}x'
            rounds = result['round_ratios'].get(name)
            if rounds:
                line += ' (rounds ' + ', '.join(f'{r:.2f}'
                                                for r in rounds) + ')'
            lines.append(line)
    return '\n'.join(lines)


def flops_and_rate(flops, rate):
    """'12.3 GFLOP at 45.6 GFLOP/s' (matmul/conv FLOPs)."""
    text = f'{flops / 1e9:.1f} GFLOP'
    return text if rate is None else f'{text} at {rate:.1f} GFLOP/s'


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
