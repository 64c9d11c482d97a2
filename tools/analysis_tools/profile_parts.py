"""Where one train step's (or inference's) time and FLOPs go, part by part.

    python tools/analysis_tools/profile_parts.py CONFIG
        [--mode train|infer] [--input-size 320 384] [--batch-size 2]
        [--num-boxes 8] [--top 15] [--json out.json] [--cfg-options ...]
        [--vs CONFIG2 [--vs-cfg-options ...]]

Inputs are benchmark.py's synthetic batches. Each model runs one warm-up
step, one plain timed step (its wall time and peak memory) and one profiled
step. In the profiled step every aten op is timed on its own (a
``TorchDispatchMode`` around the op; on CUDA it synchronises after each op)
and its matmul/conv FLOPs are counted with the formulas of torch's
``FlopCounterMode`` and, for the CPU self-attention kernel torch has none
for, ``opera.utils.flops``. A forward op belongs to the innermost module
running it; a backward op to the module whose forward created its autograd
node (looked up by the node's sequence number), so backward time lands on
the part that caused it. Parts are the backbone, neck, each transformer stack's
self-attention / deformable projections (value, offset, weight and output
linears) / deformable sampling (the rest of the deformable attention:
offsets to locations, softmax, ``grid_sample`` and the weighted sum) / FFN /
norms, the prediction heads, matching (inside the assigner), each loss
module and the loss code around them (targets, sums).

The op times add up to less than the plain step: the rest is Python,
SciPy's Hungarian algorithm and framework overhead ("outside ops"). With
``--vs`` the two models alternate (warm-up, timed, profiled) and a last
table shows each part's difference in time and FLOPs.
"""
import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict

import torch
from mmcv import DictAction
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from opera.utils.flops import op_flops
from benchmark import (build_run, inference_step, peak_memory_mb,
                       reset_peak_memory, sync, train_step)

STACKS = {
    'encoder': 'encoder',
    'decoder': 'decoder',
    'refine_decoder': 'refine decoder',
    'hm_encoder': 'heatmap encoder',
}
HEAD_BRANCHES = ('cls_branches', 'reg_branches', 'kpt_branches', 'fc_hm')
# The sequence number of the nodes that accumulate parameter gradients.
ACCUMULATE_GRAD = 2**64 - 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Time and FLOPs of one step, per part and per op')
    parser.add_argument('config')
    parser.add_argument('--mode', choices=['train', 'infer'], default='train')
    parser.add_argument(
        '--input-size', type=int, nargs=2, default=[320, 384],
        metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--num-boxes', type=int, default=8)
    parser.add_argument('--device', default=None, help='cpu or cuda')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--epoch', type=int, default=0,
        help='training epoch (0-based) for query-group schedules')
    parser.add_argument('--top', type=int, default=15, help='ops listed')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--vs', metavar='CONFIG')
    parser.add_argument('--vs-cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def part_of(module_name, module_classes, label):
    """The part an op belongs to.

    Args:
        module_name (str): Innermost module, relative to the detector
            ('' outside every module).
        module_classes (dict[str, str]): Class name of every module.
        label (str): 'matching' inside the assigner, else the step's phase
            ('forward', 'loss', 'backward').
    """
    if label == 'matching':
        return 'matching'
    if not module_name:
        return 'loss: targets and sums' if label == 'loss' else 'other'
    names = module_name.split('.')
    if names[0] != 'bbox_head':
        return names[0]  # backbone, neck
    if len(names) == 1:
        return 'head: glue'
    if names[1] == 'criterion' and len(names) > 2:
        names = names[1:]  # both heads' losses sit in their criterion
    if names[1].startswith('loss'):
        return f'loss: {names[1]}'
    if names[1] in HEAD_BRANCHES:
        return 'heads (class, box / pose branches)'
    if names[1] == 'refine_kpt_branches':
        return 'refine decoder: branches'
    if names[1] != 'transformer':
        return f'head: {names[1]}'
    stack = STACKS.get(names[2]) if len(names) > 2 else None
    if stack is None:
        return 'transformer: proposals and glue'
    if 'attentions' in names:
        end = names.index('attentions') + 2
        attention = '.'.join(names[:end])
        if 'Multihead' in module_classes[attention]:
            kind = 'self-attention'
        elif len(names) == end:
            kind = 'deformable sampling'
        else:
            kind = 'deformable projections'
    elif 'ffns' in names:
        kind = 'FFN'
    elif 'norms' in names:
        kind = 'norms'
    else:
        kind = 'glue'
    return f'{stack}: {kind}'


class OpProfiler(TorchDispatchMode):
    """Times every aten op, counts its FLOPs and files them under a part.

    Args:
        model (nn.Module): The detector; its modules name the parts.
        device (str): Synchronised after every op on CUDA.
    """

    def __init__(self, model, device):
        super().__init__()
        self.device = device
        self.names = {id(m): name for name, m in model.named_modules()}
        self.classes = {
            name: type(m).__name__
            for name, m in model.named_modules()
        }
        self.modules = []  # names of the modules running, innermost last
        self.labels = ['forward']
        self.node_parts = {}  # autograd node sequence number -> part
        self.pending = []  # (outputs, part) of the last forward op
        # (part, op, 'forward' | 'backward') -> [seconds, flops, calls]
        self.ops = defaultdict(lambda: [0.0, 0, 0])
        self.label_seconds = defaultdict(float)

    @contextlib.contextmanager
    def label(self, name):
        """Ops inside are filed under ``name`` (a phase or 'matching')."""
        self.labels.append(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.label_seconds[name] += time.perf_counter() - start
            self.labels.pop()

    def matching_hook(self, num_queries, num_repeats):
        """The criterion's assign hook: an assignment's ops are filed under
        'matching' (see ``matching_labelled``)."""
        return self.label('matching')

    def _enter(self, module, args):
        self.modules.append(self.names.get(id(module), ''))

    def _exit(self, module, args, output):
        self.modules.pop()

    @contextlib.contextmanager
    def tracking(self):
        """Record ops and the module stack."""
        pre = torch.nn.modules.module.register_module_forward_pre_hook(
            self._enter)
        post = torch.nn.modules.module.register_module_forward_hook(
            self._exit)
        try:
            with self:
                yield self
                self._resolve()
        finally:
            pre.remove()
            post.remove()

    def _resolve(self):
        """File the autograd nodes of the last forward op's outputs (set
        once the op has returned through autograd) under its part."""
        for outputs, part in self.pending:
            for out in outputs:
                # An in-place op on a view also gives its base a node.
                for tensor in (out, out._base):
                    if tensor is not None and tensor.grad_fn is not None:
                        self.node_parts.setdefault(
                            tensor.grad_fn._sequence_nr(), part)
        self.pending = []

    def current_part(self):
        module = self.modules[-1] if self.modules else ''
        return part_of(module, self.classes, self.labels[-1])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._resolve()
        node = torch._C._current_autograd_node()
        start = time.perf_counter()
        out = func(*args, **kwargs)
        sync(self.device)
        seconds = time.perf_counter() - start
        if node is None:
            phase, part = 'forward', self.current_part()
            self.pending.append(([
                t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)
            ], part))
        elif node._sequence_nr() == ACCUMULATE_GRAD:
            phase, part = 'backward', 'gradient accumulation'
        else:
            phase = 'backward'
            part = self.node_parts.get(node._sequence_nr(), 'unattributed')
        flops = op_flops(func, args, kwargs, out)
        record = self.ops[(part, str(func._overloadpacket).split('.')[-1],
                           phase)]
        record[0] += seconds
        record[1] += flops
        record[2] += 1
        return out


@contextlib.contextmanager
def matching_labelled(head, profiler):
    """Label the ops of every assignment of ``head.criterion`` 'matching'
    (through its assign hook)."""
    handle = head.criterion.register_assign_hook(profiler.matching_hook)
    try:
        yield
    finally:
        handle.remove()


def profile_step(step, model, batch, device):
    """One profiled ``step``: its op records and the matching wall time."""
    profiler = OpProfiler(model, device)
    with matching_labelled(model.bbox_head, profiler), profiler.tracking():
        step(model, batch, device, phase=profiler.label)
    return profiler


def parts_table(profiler):
    """Per part: forward and backward seconds, FLOPs, op calls."""
    parts = defaultdict(lambda: dict(
        forward_s=0.0, backward_s=0.0, gflop=0.0, calls=0))
    for (part, _, phase), (seconds, flops, calls) in profiler.ops.items():
        row = parts[part]
        row[f'{phase}_s'] += seconds
        row['gflop'] += flops / 1e9
        row['calls'] += calls
    for row in parts.values():
        row['total_s'] = row['forward_s'] + row['backward_s']
        row['gflop_per_s'] = (row['gflop'] / row['total_s']
                              if row['gflop'] and row['total_s'] else None)
    return dict(sorted(parts.items(), key=lambda kv: -kv[1]['total_s']))


def ops_table(profiler, top):
    """The ``top`` (part, op, phase) records by time."""
    rows = [
        dict(part=part, op=op, phase=phase, seconds=seconds,
             gflop=flops / 1e9, calls=calls,
             gflop_per_s=flops / 1e9 / seconds if flops and seconds else None)
        for (part, op, phase), (seconds, flops, calls) in
        profiler.ops.items()
    ]
    return sorted(rows, key=lambda row: -row['seconds'])[:top]


def profile_models(args):
    """Warm-up, timed and profiled step of each model, interleaved."""
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    specs = [(args.config, args.cfg_options)]
    if args.vs:
        specs.append((args.vs, args.vs_cfg_options))
    runs = [build_run(config, options, None, args, device)
            for config, options in specs]
    step = train_step if args.mode == 'train' else inference_step
    results = [dict(config=config, mode=args.mode) for config, _ in specs]
    for model, batch in runs:
        step(model, batch, device)  # warm-up
    for (model, batch), result in zip(runs, results):
        reset_peak_memory(device)
        start = time.perf_counter()
        step(model, batch, device)
        sync(device)
        result['step_s'] = time.perf_counter() - start
        result['peak_memory_mb'] = peak_memory_mb(device)
    for (model, batch), result in zip(runs, results):
        start = time.perf_counter()
        profiler = profile_step(step, model, batch, device)
        result['profiled_step_s'] = time.perf_counter() - start
        result['matching_s'] = profiler.label_seconds['matching']
        result['parts'] = parts_table(profiler)
        result['ops'] = ops_table(profiler, args.top)
        result['op_s'] = sum(row['total_s']
                             for row in result['parts'].values())
        result['gflop'] = sum(row['gflop']
                              for row in result['parts'].values())
    return results


def format_parts(result):
    lines = [
        f"{result['config']} ({result['mode']}): step {result['step_s']:.2f}"
        f" s, {result['gflop']:.1f} GFLOP, ops {result['op_s']:.2f} s, "
        f"outside ops {result['step_s'] - result['op_s']:.2f} s, matching "
        f"(wall) {result['matching_s'] * 1e3:.0f} ms, peak memory "
        f"{result['peak_memory_mb'] or 0:.0f} MiB", '',
        '| part | forward, s | backward, s | GFLOP | GFLOP/s |',
        '|---|---|---|---|---|'
    ]
    for part, row in result['parts'].items():
        rate = row['gflop_per_s']
        lines.append(f"| {part} | {row['forward_s']:.3f} | "
                     f"{row['backward_s']:.3f} | {row['gflop']:.1f} | "
                     f"{'' if rate is None else f'{rate:.1f}'} |")
    lines += ['', '| op | phase | part | s | GFLOP | GFLOP/s | calls |',
              '|---|---|---|---|---|---|---|']
    for row in result['ops']:
        rate = row['gflop_per_s']
        lines.append(f"| {row['op']} | {row['phase']} | {row['part']} | "
                     f"{row['seconds']:.3f} | {row['gflop']:.1f} | "
                     f"{'' if rate is None else f'{rate:.1f}'} | "
                     f"{row['calls']} |")
    return '\n'.join(lines)


def format_difference(first, second):
    """Per part: second - first, in seconds and GFLOP."""
    lines = [
        f"{second['config']} - {first['config']}", '',
        '| part | time, s | GFLOP |', '|---|---|---|'
    ]
    empty = dict(total_s=0.0, gflop=0.0)
    parts = list(second['parts']) + [
        p for p in first['parts'] if p not in second['parts']
    ]
    for part in parts:
        a = first['parts'].get(part, empty)
        b = second['parts'].get(part, empty)
        lines.append(f"| {part} | {b['total_s'] - a['total_s']:+.3f} | "
                     f"{b['gflop'] - a['gflop']:+.1f} |")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    results = profile_models(args)
    tables = [format_parts(result) for result in results]
    if len(results) == 2:
        tables.append(format_difference(*results))
    print('\n\n'.join(tables))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main(sys.argv[1:])
