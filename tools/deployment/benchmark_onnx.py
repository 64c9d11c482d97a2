"""ONNX Runtime vs PyTorch eager inference speed and peak memory, on CPU.

    python tools/deployment/benchmark_onnx.py CONFIG [CHECKPOINT] \\
        [--onnx model.onnx] [--input-size 320 384] [--batch-size 1] \\
        [--iters 3] [--warmup 1] [--threads 1] [--json out.json]

Both backends run the same test-time path on the same synthetic batch
(random images of H x W, none padded): PyTorch the detector's
``simple_test``, ONNX Runtime the exported graph plus the same
post-processing (``opera.apis.ONNXRuntimeDetector.simple_test``). Rounds
alternate between the two, so both see the same machine load; the speed-up
is the median of the per-round ratios. Without ``--onnx`` the graph is
exported first (to a temporary file). Peak memory is measured in a fresh
process that loads one backend and runs it ``warmup + iters`` times
(``--only``, started by this script), so the other backend's memory does
not count: its peak RSS while loading, then (peak restarted, Linux
``/proc/self/clear_refs``) while running. The ONNX Runtime process also
holds the (unused) PyTorch weights of the detector it takes its
post-processing from.
"""
import argparse
import json
import logging
import os.path as osp
import platform
import resource
import subprocess
import sys
import tempfile
import time
from statistics import median

import torch

import opera  # noqa: F401  (fills the registries)
from opera.apis import ONNXRuntimeDetector, export_onnx, init_model
from opera.apis.inference_graph import unpadded_metas

BACKENDS = ('pytorch', 'onnxruntime')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--onnx', help='an exported file (default: export)')
    parser.add_argument(
        '--input-size', type=int, nargs=2, default=[320, 384],
        metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument(
        '--threads', type=int, default=1,
        help='intra-op threads of both torch and ONNX Runtime')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument(
        '--only', choices=BACKENDS,
        help='run one backend and print its peak RSS (used internally)')
    return parser.parse_args(argv)


def synthetic_batch(batch_size, input_size):
    """[bs, 3, H, W] seeded random images and their metas (no padding)."""
    img = torch.randn(batch_size, 3, *input_size,
                      generator=torch.Generator().manual_seed(0))
    metas = unpadded_metas(img)
    for meta in metas:
        meta.update(ori_shape=meta['img_shape'], scale_factor=[1.] * 4)
    return img, metas


def build_backends(args, onnx_file, names=BACKENDS):
    """name -> a callable running one test-time batch."""
    torch.set_num_threads(args.threads)
    detector = init_model(args.config, args.checkpoint, 'cpu')
    backends = {}
    if 'pytorch' in names:
        backends['pytorch'] = detector.simple_test
    if 'onnxruntime' in names:
        backends['onnxruntime'] = ONNXRuntimeDetector(
            onnx_file, detector, num_threads=args.threads).simple_test
    return backends


def timed(run, img, metas):
    start = time.perf_counter()
    with torch.no_grad():
        run(img, metas, rescale=True)
    return time.perf_counter() - start


def interleaved_rounds(backends, img, metas, warmup, iters):
    """name -> seconds per batch of each measured round."""
    seconds = {name: [] for name in backends}
    for index in range(warmup + iters):
        for name, run in backends.items():
            elapsed = timed(run, img, metas)
            if index >= warmup:
                seconds[name].append(elapsed)
    return seconds


def peak_rss_mib():
    """This process's peak RSS in MiB (since :func:`reset_peak_rss`)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    """Restart the peak RSS from the current RSS (Linux: clear_refs 5)."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def measure_alone(args, onnx_file, name):
    """Peak RSS (MiB) of a fresh process running only backend ``name``:
    (while loading it, while running it)."""
    command = [
        sys.executable, __file__, args.config, '--only', name, '--onnx',
        onnx_file, '--input-size', *map(str, args.input_size),
        '--batch-size', str(args.batch_size), '--iters', str(args.iters),
        '--warmup', str(args.warmup), '--threads', str(args.threads)
    ]
    if args.checkpoint:
        command.insert(3, args.checkpoint)
    output = subprocess.run(
        command, check=True, capture_output=True, text=True).stdout
    load, run = output.strip().splitlines()[-1].split()[1:]
    return float(load), float(run)


def run_one(args):
    """``--only``: one backend; prints its peak RSS while loading and while
    running (the peak restarted in between)."""
    backends = build_backends(args, args.onnx, [args.only])
    img, metas = synthetic_batch(args.batch_size, args.input_size)
    load_peak = peak_rss_mib()
    reset_peak_rss()
    interleaved_rounds(backends, img, metas, args.warmup, args.iters)
    print(f'peak_rss_mib {load_peak:.1f} {peak_rss_mib():.1f}')


def benchmark(args, onnx_file):
    backends = build_backends(args, onnx_file)
    img, metas = synthetic_batch(args.batch_size, args.input_size)
    seconds = interleaved_rounds(backends, img, metas, args.warmup,
                                 args.iters)
    ratios = [
        torch_s / onnx_s
        for torch_s, onnx_s in zip(seconds['pytorch'], seconds['onnxruntime'])
    ]
    result = dict(
        config=args.config,
        device=f'cpu ({platform.processor() or platform.machine()}), '
        f'{args.threads} thread(s)',
        input_size=args.input_size,
        batch_size=args.batch_size,
        rounds=args.iters,
        onnxruntime_speedup=median(ratios),
        per_round_speedup=ratios)
    for name in BACKENDS:
        seconds_per_batch = median(seconds[name])
        result[name] = dict(
            seconds_per_batch=seconds_per_batch,
            images_per_second=args.batch_size / seconds_per_batch,
            peak_rss_mib=dict(
                zip(('loading', 'running'),
                    measure_alone(args, onnx_file, name))))
    return result


def format_result(result):
    lines = [
        f"config   {result['config']}",
        f"device   {result['device']}",
        f"input    {result['batch_size']} x {result['input_size'][0]}x"
        f"{result['input_size'][1]}, {result['rounds']} interleaved rounds",
    ]
    for name in BACKENDS:
        entry = result[name]
        rss = entry['peak_rss_mib']
        lines.append(f"{name:12s} {entry['seconds_per_batch']:.3f} s/batch, "
                     f"{entry['images_per_second']:.2f} images/s, peak RSS "
                     f"{rss['running']:.0f} MiB running "
                     f"({rss['loading']:.0f} MiB loading)")
    per_round = ', '.join(f'{r:.2f}' for r in result['per_round_speedup'])
    lines.append(f"speed-up onnxruntime / pytorch: "
                 f"{result['onnxruntime_speedup']:.2f}x (rounds: {per_round})")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    logging.getLogger('mmcv').setLevel(logging.WARNING)
    if args.only:
        return run_one(args)
    with tempfile.TemporaryDirectory() as tmp_dir:
        onnx_file = args.onnx
        if onnx_file is None:
            onnx_file = osp.join(tmp_dir, 'model.onnx')
            export_onnx(
                init_model(args.config, args.checkpoint, 'cpu'), onnx_file,
                tuple(args.input_size), config=args.config)
        result = benchmark(args, onnx_file)
    print(format_result(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main(sys.argv[1:])
