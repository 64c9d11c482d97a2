"""Plot curves from, and time, the JSON training logs (``*.log.json``).

    python tools/analysis_tools/analyze_logs.py plot_curve LOG.json [...]
        [--keys loss bbox_mAP] [--legend NAME ...] [--title T] [--out F.png]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json [...]

``plot_curve`` draws one panel per key, one line per log: training values
(losses, lr, ...) against the iteration, evaluation values (``bbox_mAP``,
``keypoints_mAP``, ...) against the epoch (the iteration for iteration-based
runs). Each legend entry ends with the line's last value, and the last value
of every key and log is printed as a table (e.g. the final AP of two runs
side by side). ``cal_train_time`` prints the time per iteration of each log.
"""
import argparse
import json
import os.path as osp
from collections import defaultdict

import numpy as np

MODES = ('train', 'val')
# Width and height in inches of one panel (one key) of the figure.
PANEL_SIZE = (8, 3)


def load_json_log(path):
    """Read the ``train`` / ``val`` records of one JSON log.

    The first line (environment and config, no ``mode``) is skipped.

    Args:
        path (str): A ``*.log.json`` file written by mmcv's
            ``TextLoggerHook``.

    Returns:
        list[dict]: The records, in file order.
    """
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f'{path}:{line_no} is not a JSON line ({error}); pass '
                    'the *.log.json file, not the text *.log') from None
            if record.get('mode') in MODES:
                records.append(record)
    if not records:
        raise ValueError(f'{path} has no train or val records')
    return records


def iters_per_epoch(records):
    """Iterations per epoch of an epoch-based log: the largest training
    ``iter`` logged (exact when the log interval divides the epoch)."""
    return max(r['iter'] for r in records if r['mode'] == 'train')


def curve(records, key):
    """The (x, y) points of ``key`` in one log.

    Args:
        records (list[dict]): From :func:`load_json_log`.
        key (str): A logged value, e.g. 'loss' or 'keypoints_mAP'.

    Returns:
        tuple[np.ndarray, np.ndarray, str]: x, y and the x-axis name:
        'iter' for training values (global iteration), 'epoch' for
        evaluation values of epoch-based runs.

    Raises:
        KeyError: No record of the log holds ``key``.
    """
    found = [r for r in records if key in r]
    if not found:
        keys = set().union(*records) - {'mode', 'epoch', 'iter'}
        raise KeyError(f"'{key}' is not in the log; it has: {sorted(keys)}")
    mode = found[0]['mode']
    found = [r for r in found if r['mode'] == mode]
    ys = np.array([r[key] for r in found], dtype=float)
    if 'epoch' not in found[0]:  # iteration-based runner: global iters
        return np.array([r['iter'] for r in found]), ys, 'iter'
    if mode == 'val':
        return np.array([r['epoch'] for r in found]), ys, 'epoch'
    per_epoch = iters_per_epoch(records)
    xs = np.array([(r['epoch'] - 1) * per_epoch + r['iter'] for r in found])
    return xs, ys, 'iter'


def log_name(legend, index):
    """The legend name of log ``index``: ``legend[index]`` or 'log i'."""
    return legend[index] if legend is not None else f'log {index}'


def last_values(logs, keys, legend=None):
    """The last logged value of each key in each log, as a printable table.

    Args:
        logs (list[list[dict]]): Records of each log.
        keys (list[str]): Logged values.
        legend (list[str], optional): A name per log.

    Returns:
        str: One row per log, one column per key, e.g. the final
        ``bbox_mAP`` of two runs one under the other.
    """
    names = [log_name(legend, i) for i in range(len(logs))]
    name_width = max(len(name) for name in names)
    widths = [max(len(key), 8) for key in keys]
    rows = [' '.join([' ' * name_width] +
                     [key.rjust(w) for key, w in zip(keys, widths)])]
    for name, records in zip(names, logs):
        values = [curve(records, key)[1][-1] for key in keys]
        rows.append(' '.join([name.ljust(name_width)] + [
            f'{value:.4f}'.rjust(w) for value, w in zip(values, widths)
        ]))
    return '\n'.join(rows)


def plot_curve(logs, keys, legend=None, title=None):
    """A figure with one panel per key and one line per log.

    Args:
        logs (list[list[dict]]): Records of each log.
        keys (list[str]): Logged values to plot.
        legend (list[str], optional): A name per log.
        title (str, optional): Figure title.

    Returns:
        matplotlib.figure.Figure: The figure; ``fig.axes[i].lines[j]``
        holds key i of log j.
    """
    # Imported here: the backend is chosen in main() before pyplot loads.
    import matplotlib.pyplot as plt
    if legend is not None and len(legend) != len(logs):
        raise ValueError(f'--legend has {len(legend)} names for '
                         f'{len(logs)} logs')
    width, height = PANEL_SIZE
    fig, axes = plt.subplots(
        len(keys), 1, figsize=(width, height * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for i, records in enumerate(logs):
            xs, ys, x_name = curve(records, key)
            label = f'{log_name(legend, i)} (last: {ys[-1]:.4g})'
            ax.plot(
                xs, ys, marker='o' if x_name == 'epoch' else None, label=label)
        ax.set_xlabel(x_name)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def train_time(records, include_outliers=False):
    """Time per training iteration of one log.

    Args:
        records (list[dict]): From :func:`load_json_log`.
        include_outliers (bool): Keep the first logged record of every
            epoch, which also holds the data loader start-up.

    Returns:
        dict: ``mean`` (s/iter over the kept records), ``epochs`` (mean per
        epoch), ``slowest`` and ``fastest`` (epoch, s/iter) and ``std`` (of
        the epoch means).
    """
    by_epoch = defaultdict(list)
    for record in records:
        if record['mode'] == 'train':
            by_epoch[record.get('epoch', 1)].append(record['time'])
    times = {}
    for epoch, epoch_times in sorted(by_epoch.items()):
        if not include_outliers and len(epoch_times) > 1:
            epoch_times = epoch_times[1:]
        times[epoch] = epoch_times
    means = {epoch: float(np.mean(t)) for epoch, t in times.items()}
    return dict(
        mean=float(np.mean([t for ts in times.values() for t in ts])),
        epochs=means,
        slowest=max(means.items(), key=lambda item: item[1]),
        fastest=min(means.items(), key=lambda item: item[1]),
        std=float(np.std(list(means.values()))))


def cal_train_time(paths, include_outliers=False):
    """Print :func:`train_time` of each log; return the results."""
    results = []
    for path in paths:
        stats = train_time(load_json_log(path), include_outliers)
        print(f'{"-" * 10} {path} {"-" * 10}')
        print(f'slowest epoch {stats["slowest"][0]}, average time is '
              f'{stats["slowest"][1]:.4f} s/iter')
        print(f'fastest epoch {stats["fastest"][0]}, average time is '
              f'{stats["fastest"][1]:.4f} s/iter')
        print(f'time std over epochs is {stats["std"]:.4f}')
        print(f'average iter time: {stats["mean"]:.4f} s/iter\n')
        results.append(stats)
    return results


def parse_args(argv=None):
    """Parse the command line (``argv``, or ``sys.argv`` when None)."""
    parser = argparse.ArgumentParser(description='Analyze JSON logs')
    tasks = parser.add_subparsers(dest='task', required=True)
    plot = tasks.add_parser('plot_curve', help='plot logged values')
    plot.add_argument('json_logs', nargs='+', help='*.log.json files')
    plot.add_argument(
        '--keys', nargs='+', default=['loss'], help='values to plot')
    plot.add_argument('--legend', nargs='+', help='a name per log')
    plot.add_argument('--title', help='figure title')
    plot.add_argument(
        '--out',
        help='save the figure here (e.g. curves.png); shown in a '
        'window otherwise')
    timing = tasks.add_parser('cal_train_time', help='time per iteration')
    timing.add_argument('json_logs', nargs='+', help='*.log.json files')
    timing.add_argument(
        '--include-outliers',
        action='store_true',
        help='keep the first iteration of each epoch')
    return parser.parse_args(argv)


def main(argv=None):
    """Run the task of the command line."""
    args = parse_args(argv)
    for path in args.json_logs:
        if not osp.isfile(path):
            raise FileNotFoundError(f'log not found: {path}')
    if args.task == 'cal_train_time':
        return cal_train_time(args.json_logs, args.include_outliers)
    if args.out is not None:
        # Write files without a display.
        import matplotlib
        matplotlib.use('Agg')
    logs = [load_json_log(p) for p in args.json_logs]
    fig = plot_curve(logs, args.keys, args.legend, args.title)
    print(f'last values:\n{last_values(logs, args.keys, args.legend)}')
    if args.out is None:
        import matplotlib.pyplot as plt
        plt.show()
    else:
        fig.savefig(args.out)
        print(f'saved {args.out}')
    return fig


if __name__ == '__main__':
    main()
