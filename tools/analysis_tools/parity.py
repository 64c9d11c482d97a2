"""Record a model's behaviour and compare two records, entry by entry.

    python tools/analysis_tools/parity.py record CONFIG [CONFIG ...] \
        --out DIR [--input-size 320 384] [--batch-size 2] [--num-boxes 3]
    python tools/analysis_tools/parity.py compare DIR_A DIR_B

A refactor that must keep behaviour is checked by recording before and after
it and comparing. For each config one JSON file holds, under the config's
name, every entry of:

- ``init/*``: the seeded initial weights (every state_dict entry),
- ``count/*``: parameters, trainable parameters, state_dict keys,
- ``loss/*``: every value ``forward_train`` returns on a synthetic batch
  (the benchmark's: random images, boxes, labels and, for pose models,
  keypoints), with the random draws of training (denoising noise) seeded,
- ``grad/*``: the gradient of every parameter after the backward pass of
  the summed losses,
- ``test/*``: what ``simple_test`` returns for the same images.

Each tensor is stored as a SHA-1 of its bytes with its shape, dtype and
float64 sum, so records are small and equal exactly when the tensors are
bitwise equal; ``compare`` prints each entry that differs with its sums
(how large the difference is) and exits 1 if any does. Runs use one thread,
so float summation order is the same in both records.
"""
import argparse
import hashlib
import json
import logging
import os
import os.path as osp
import random
import sys

import numpy as np
import torch
from mmcv import Config

# The checkout this script is in, before an installed opera: a record is of
# the code beside it (compare two checkouts by running each one's copy).
sys.path[:0] = [
    osp.dirname(osp.abspath(__file__)),
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
]
import opera  # noqa: E402,F401  (registers modules)
from benchmark import synthetic_batch  # noqa: E402
from opera.models import build_detector  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    record = sub.add_parser('record', help='record configs into DIR')
    record.add_argument('configs', nargs='+')
    record.add_argument('--out', required=True, help='folder of records')
    record.add_argument('--input-size', type=int, nargs=2, default=[320, 384])
    record.add_argument('--batch-size', type=int, default=2)
    record.add_argument('--num-boxes', type=int, default=3)
    record.add_argument('--seed', type=int, default=0)
    compare = sub.add_parser('compare', help='compare two folders')
    compare.add_argument('first')
    compare.add_argument('second')
    return parser.parse_args(argv)


def describe(value):
    """A tensor (or array, or number) as its hash, shape, dtype and sum."""
    tensor = torch.as_tensor(value).detach().cpu().contiguous()
    data = tensor.numpy().tobytes() if tensor.numel() else b''
    return dict(
        sha1=hashlib.sha1(data).hexdigest(),
        shape=list(tensor.shape),
        dtype=str(tensor.dtype),
        sum=float(tensor.double().sum()) if tensor.numel() else 0.0)


def flatten_results(results, prefix='test/'):
    """``simple_test``'s nested lists / tuples of arrays as named entries
    (``test/{image}.{class}...``)."""
    if isinstance(results, (list, tuple)):
        out = {}
        for index, item in enumerate(results):
            name = f'{prefix}{index}'
            out.update(flatten_results(item, name + '.'))
        return out
    return {prefix.rstrip('.'): describe(np.asarray(results))}


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def record_config(config, args):
    """Every entry of one config (see the module doc)."""
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    seed_all(args.seed)
    model = build_detector(cfg.model)
    model.init_weights()
    if hasattr(model, 'set_epoch'):
        model.set_epoch(0)
    entries = {
        f'init/{name}': describe(value)
        for name, value in model.state_dict().items()
    }
    params = list(model.parameters())
    entries['count/params'] = sum(p.numel() for p in params)
    entries['count/trainable'] = sum(
        p.numel() for p in params if p.requires_grad)
    entries['count/state_dict_keys'] = sorted(model.state_dict())
    generator = torch.Generator().manual_seed(args.seed)
    batch = synthetic_batch(args.batch_size, *args.input_size,
                            args.num_boxes, model.bbox_head.num_classes,
                            getattr(model.bbox_head, 'num_keypoints', 0),
                            'cpu', generator)
    model.train()
    seed_all(args.seed)
    losses = model.forward_train(**batch)
    total = 0
    for name, value in losses.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for index, item in enumerate(values):
            entries[f'loss/{name}.{index}'] = describe(item)
        if 'loss' in name:
            total = total + sum(values)
    total.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            entries[f'grad/{name}'] = describe(param.grad)
    model.eval()
    with torch.no_grad():
        results = model.simple_test(batch['img'], batch['img_metas'])
    entries.update(flatten_results(results))
    return entries


def record(args):
    torch.set_num_threads(1)
    logging.getLogger('mmcv').setLevel(logging.WARNING)
    os.makedirs(args.out, exist_ok=True)
    for config in args.configs:
        name = osp.splitext(osp.basename(config))[0]
        entries = record_config(config, args)
        with open(osp.join(args.out, name + '.json'), 'w') as f:
            json.dump(entries, f, indent=0, sort_keys=True)
        print(f'{name}: {len(entries)} entries', flush=True)


def compare(args):
    names = sorted(
        f for f in os.listdir(args.first) if f.endswith('.json'))
    total = differ = 0
    for name in names:
        other = osp.join(args.second, name)
        if not osp.exists(other):
            print(f'{name}: missing in {args.second}')
            differ += 1
            continue
        with open(osp.join(args.first, name)) as f:
            first = json.load(f)
        with open(other) as f:
            second = json.load(f)
        keys = sorted(set(first) | set(second))
        bad = [key for key in keys if first.get(key) != second.get(key)]
        total += len(keys)
        differ += len(bad)
        print(f'{name}: {len(keys)} entries, {len(bad)} differ')
        for key in bad[:20]:
            print(f'  {key}: {first.get(key)} != {second.get(key)}')
    print(f'all: {total} entries, {differ} differ')
    return 1 if differ else 0


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'record':
        record(args)
        return 0
    return compare(args)


if __name__ == '__main__':
    sys.exit(main())
