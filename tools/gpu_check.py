"""One-command check of opera's GPU path, with a summary table.

    python tools/gpu_check.py [--quick] [--json out.json]

Run it once on a machine with an NVIDIA GPU after ``bash tools/install.sh``
(sized for under 10 minutes on one modern GPU, not yet run on one;
``--quick`` halves the timed steps).
What it checks, in order:

1. mmcv-full's ops were compiled with CUDA (else nothing below can run).
2. mmcv's CUDA multi-scale deformable attention against its PyTorch path
   (``multi_scale_deformable_attn_pytorch``, computed in fp32) at the R50
   models' size: forward output and the gradients of value, sampling
   locations and attention weights, with fp32 and with fp16 inputs. Passes
   when max |kernel - reference| <= tolerance * max |reference| (tolerances
   in ``KERNEL_TOLERANCE``).
3. One training step of the R50 H-Deformable-DETR and H-PETR configs (random
   weights, synthetic 2-image batch) in fp32 and in fp16 (mmcv's fp16
   decorators under CUDA autocast, loss scale 512): every loss and every
   gradient finite. In fp32 the losses also match the same step on the CPU
   (same weights and batch, TF32 off) within ``CPU_LOSS_RTOL``.
4. Train-step time (median of the timed steps after warm-up; forward,
   losses with matching, backward, no optimizer step) and peak GPU memory
   (``torch.cuda.max_memory_allocated``, no optimizer state) of hybrid vs
   one-to-one, with torch's default TF32 settings:
   H-Deformable-DETR vs Deformable-DETR (the paper reports 80 vs 65 min per
   epoch and 7728M vs 5480M on V100), H-PETR vs PETR.
5. Test images per second of each (batch 1, the median over timed steps).

Timed steps use synthetic inputs of the paper's scale (``--input-size``,
default 800 x 1216, 2 images of 8 boxes/persons); step times come from
``tools/analysis_tools/benchmark.py``'s train and test steps.

An exception in one part becomes a failed row naming it; the other parts
still run. Exit status: 0 when every check passed, 1 when one failed, 2 when this
machine has no usable CUDA device (a message says why; nothing measured).
"""
import argparse
import json
import logging
import os.path as osp
import sys
import time
from statistics import median

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = dict(
    h_deformable_detr='configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py',
    deformable_detr='configs/hdetr/deformable_detr_r50_two_stage_12ep.py',
    h_petr='configs/petr/h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py',
    petr='configs/petr/petr_r50_16x2_100e_coco.py')
# (forward, backward) tolerance relative to max |reference|. Backward adds
# with atomics in any order; fp16 inputs keep the kernel's sums in half.
KERNEL_TOLERANCE = {torch.float32: (1e-4, 1e-3), torch.float16: (1e-2, 2e-2)}
CPU_LOSS_RTOL = 2e-3
NO_CUDA_EXIT = 2
# Where the models run; the tests run the training and speed parts on 'cpu'.
DEVICE = 'cuda'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--input-size', type=int, nargs=2,
                        default=[800, 1216], metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--num-boxes', type=int, default=8)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--quick', action='store_true',
                        help='half the timed steps (5 + 2 warm-up)')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    if args.quick:
        args.iters, args.warmup = 5, 2
    return args


def cuda_problem():
    """Why the GPU path cannot run here (a sentence), or None."""
    if torch.version.cuda is None:
        return (f'torch {torch.__version__} is a CPU-only build: install '
                'the CUDA torch wheel (docs/get_started.md, GPU section)')
    if not torch.cuda.is_available():
        return (f'torch {torch.__version__} (CUDA {torch.version.cuda}) sees '
                'no CUDA device (no NVIDIA GPU, or its driver is missing or '
                'older than CUDA ' + torch.version.cuda + ' needs)')
    from mmcv.ops import get_compiling_cuda_version
    if get_compiling_cuda_version() == 'not available':
        return ('mmcv-full was built without CUDA ops: rebuild it with '
                '`bash tools/install.sh --cuda` (docs/get_started.md)')
    return None


def relative_error(value, reference):
    """max |value - reference| / max |reference|, both taken in fp32."""
    reference = reference.float()
    scale = reference.abs().max().clamp(min=1e-12)
    return ((value.float() - reference).abs().max() / scale).item()


def msda_inputs(dtype, generator, bs=2, num_queries=300, num_heads=8,
                head_dims=32, num_points=4):
    """Random deformable-attention inputs at the R50 models' size (four
    levels of an 800 x 1216 input); every float input requires grad."""
    shapes = torch.tensor([[100, 152], [50, 76], [25, 38], [13, 19]])
    num_keys, num_levels = int(shapes.prod(1).sum()), shapes.size(0)
    value = torch.randn(bs, num_keys, num_heads, head_dims,
                        generator=generator)
    locations = torch.rand(bs, num_queries, num_heads, num_levels,
                           num_points, 2, generator=generator)
    weights = torch.rand(bs, num_queries, num_heads, num_levels * num_points,
                         generator=generator).softmax(-1).view(
                             *locations.shape[:-1])
    floats = [t.cuda().to(dtype).requires_grad_()
              for t in (value, locations, weights)]
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    return floats, shapes.cuda(), starts.cuda()


def msda_check(dtype):
    """Rows comparing mmcv's CUDA kernel with its PyTorch path."""
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch)
    generator = torch.Generator().manual_seed(0)
    (value, locations, weights), shapes, starts = msda_inputs(dtype, generator)
    out = MultiScaleDeformableAttnFunction.apply(value, shapes, starts,
                                                 locations, weights, 64)
    grad_out = torch.randn(out.shape, generator=generator).cuda()
    kernel_grads = torch.autograd.grad(out, (value, locations, weights),
                                       grad_out.to(dtype))
    ref_inputs = [t.detach().float().requires_grad_()
                  for t in (value, locations, weights)]
    ref = multi_scale_deformable_attn_pytorch(ref_inputs[0], shapes,
                                              *ref_inputs[1:])
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad_out)
    fwd_tol, bwd_tol = KERNEL_TOLERANCE[dtype]
    name = str(dtype).replace('torch.', '')
    rows = [row(f'deformable attention kernel, {name}', 'forward',
                relative_error(out, ref), fwd_tol)]
    for label, grad, ref_grad in zip(('value', 'locations', 'weights'),
                                     kernel_grads, ref_grads):
        rows.append(row(f'deformable attention kernel, {name}',
                        f'grad {label}', relative_error(grad, ref_grad),
                        bwd_tol))
    return rows


def row(check, setting, value, limit=None, unit='rel. err', passed=None):
    """One line of the summary table; passes when value <= limit."""
    if passed is None:
        passed = limit is None or value <= limit
    return dict(check=check, setting=setting, value=value, unit=unit,
                limit=limit, passed=bool(passed))


def benchmark_tools():
    """``tools/analysis_tools/benchmark.py``, imported only once CUDA is
    known to be there (it imports mmdet and opera: seconds spent for nothing
    on a machine without a GPU)."""
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'analysis_tools'))
    import benchmark
    return benchmark


def build(name, args, device):
    """Model of ``CONFIGS[name]`` (random weights) and a synthetic batch."""
    spec = argparse.Namespace(seed=0, epoch=0, batch_size=args.batch_size,
                              input_size=args.input_size,
                              num_boxes=args.num_boxes)
    config = osp.join(REPO_ROOT, CONFIGS[name])
    return benchmark_tools().build_run(config, None, None, spec, device)


def model_losses(model, batch):
    """The detector's loss dict through ``model.forward`` (the path that
    ``auto_fp16`` wraps in autocast)."""
    return model(return_loss=True, **batch)


def total_loss(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


def to_device(batch, device):
    return {key: ([v.to(device) for v in value] if key.startswith('gt_')
                  else value.to(device) if key == 'img' else value)
            for key, value in batch.items()}


def train_step_check(name, fp16, args):
    """Rows for one fp32 or fp16 training step of ``name`` on the GPU."""
    from mmcv.runner import wrap_fp16_model
    model, batch = build(name, args, DEVICE)
    model.train()
    setting = 'fp16' if fp16 else 'fp32'
    if fp16:
        wrap_fp16_model(model)
    scaler = torch.amp.GradScaler(DEVICE, init_scale=512., enabled=fp16)
    losses = model_losses(model, batch)
    scaler.scale(total_loss(losses)).backward()
    finite_losses = all(torch.isfinite(v).all().item()
                        for k, v in losses.items() if 'loss' in k)
    finite_grads = all(torch.isfinite(p.grad).all().item()
                       for p in model.parameters() if p.grad is not None)
    rows = [row(f'train step {name}', setting, float(total_loss(losses)),
                unit='total loss', passed=finite_losses and finite_grads)]
    if not fp16:
        rows.append(cpu_agreement(name, model, batch, losses))
    return rows


def cpu_agreement(name, model, batch, gpu_losses):
    """The GPU losses against the same step on the CPU (TF32 off)."""
    model = model.cpu()
    with torch.no_grad():
        cpu_losses = model_losses(model, to_device(batch, 'cpu'))
    error = max(
        abs(gpu_losses[k].item() - v.item()) / max(abs(v.item()), 1e-6)
        for k, v in cpu_losses.items() if 'loss' in k)
    return row(f'train step {name}', 'fp32 losses vs CPU', error,
               CPU_LOSS_RTOL, unit='max rel. diff')


def speed_rows(hybrid, base, args):
    """Train-step time, peak memory and test images/s, hybrid vs base."""
    benchmark = benchmark_tools()
    rows = []
    measured = {}
    for name in (base, hybrid):
        run_ = build(name, args, DEVICE)
        train = benchmark.measure(benchmark.train_step, [run_], DEVICE,
                                  args.iters, args.warmup)[0]
        one_image = dict(run_[1], img=run_[1]['img'][:1],
                         img_metas=run_[1]['img_metas'][:1])
        infer = benchmark.measure(benchmark.inference_step,
                                  [(run_[0], one_image)], DEVICE,
                                  2 * args.iters, args.warmup)[0]
        measured[name] = dict(
            step_s=median(r['total'] for r in train),
            memory_mb=max(r['peak_memory_mb'] for r in train),
            images_per_s=1 / median(r['seconds_per_batch'] for r in infer))
        del run_
        torch.cuda.empty_cache()
        rows += [
            row(f'speed {name}', 'train step, s', measured[name]['step_s'],
                unit='s'),
            row(f'speed {name}', 'peak train memory, MiB',
                measured[name]['memory_mb'], unit='MiB'),
            row(f'speed {name}', 'test images/s (batch 1)',
                measured[name]['images_per_s'], unit='img/s')]
    for key, label in (('step_s', 'train step'), ('memory_mb', 'memory')):
        rows.append(row(f'{hybrid} / {base}', label,
                        measured[hybrid][key] / measured[base][key],
                        unit='ratio'))
    return rows


def guarded(check, function, *args):
    """``function(*args)``'s rows, or one failed row naming the error, so
    one broken part does not hide the others."""
    try:
        return function(*args)
    except Exception as error:  # noqa: B902  (reported in the table)
        return [row(check, f'error: {type(error).__name__}: {error}'[:120],
                    float('nan'), passed=False, unit='')]


def run_checks(args):
    """Every check in order (each part guarded)."""
    rows = []
    for dtype in (torch.float32, torch.float16):
        rows += guarded('deformable attention kernel', msda_check, dtype)
    # TF32 convolutions would differ from the CPU by ~1e-3; the timed steps
    # below run with torch's defaults again.
    torch.backends.cudnn.allow_tf32 = False
    for name in ('h_deformable_detr', 'h_petr'):
        for fp16 in (False, True):
            rows += guarded(f'train step {name}', train_step_check, name,
                            fp16, args)
    torch.backends.cudnn.allow_tf32 = True
    for hybrid, base in (('h_deformable_detr', 'deformable_detr'),
                         ('h_petr', 'petr')):
        rows += guarded(f'speed {hybrid}', speed_rows, hybrid, base, args)
    return rows


def format_table(rows):
    lines = ['| check | setting | value | limit | result |',
             '|---|---|---|---|---|']
    for r in rows:
        limit = '' if r['limit'] is None else f"<= {r['limit']:g}"
        lines.append(f"| {r['check']} | {r['setting']} | "
                     f"{r['value']:.4g} {r['unit']} | {limit} | "
                     f"{'ok' if r['passed'] else 'FAIL'} |")
    return '\n'.join(lines)


def describe_machine():
    from mmcv.ops import get_compiling_cuda_version
    capability = '.'.join(map(str, torch.cuda.get_device_capability()))
    return (f'{torch.cuda.get_device_name()} (sm {capability}), torch '
            f'{torch.__version__}, CUDA {torch.version.cuda}, mmcv ops '
            f'compiled with CUDA {get_compiling_cuda_version()}')


def main(argv=None):
    args = parse_args(argv)
    problem = cuda_problem()
    if problem is not None:
        print(f'gpu_check: no GPU check on this machine: {problem}. '
              'Nothing was measured.')
        return NO_CUDA_EXIT
    logging.getLogger('mmcv').setLevel(logging.WARNING)
    machine = describe_machine()
    print(f'gpu_check on {machine}', flush=True)
    start = time.perf_counter()
    rows = run_checks(args)
    print(format_table(rows))
    failed = [r for r in rows if not r['passed']]
    print(f'{len(rows) - len(failed)}/{len(rows)} rows ok in '
          f'{time.perf_counter() - start:.0f} s')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(machine=machine, rows=rows), f, indent=1)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
