"""Draw the best and worst images of a test run by per-image AP.

    python tools/analysis_tools/analyze_results.py CONFIG RESULTS.pkl \\
        --show-dir DIR [--topk 20] [--metric bbox|keypoints] \\
        [--show-score-thr 0.3] [--cfg-options ...]

RESULTS.pkl is what ``tools/test.py CONFIG CHECKPOINT --out RESULTS.pkl``
writes, for the config's test set. Each image's AP is the COCO AP at IoU
(or OKS) 0.50:0.95 of that image alone (one COCOeval per image: pycocotools
for boxes, xtcocotools with the dataset's sigmas for keypoints); images
without ground truth have no AP and are left out of the ranking. The
``--topk`` best and worst are drawn into ``DIR/best/`` and ``DIR/worst/``:
ground truth on the left, predictions scoring above ``--show-score-thr`` on
the right (boxes, or persons with skeletons). ``DIR/per_image_ap.json`` has
every image's AP.
"""
import argparse
import contextlib
import io
import os.path as osp
import sys

import mmcv
import numpy as np
from mmcv import DictAction
from mmdet.datasets import build_dataset
from pycocotools.cocoeval import COCOeval

import opera  # noqa: F401  (fills the registries)
from opera.core.visualization import imshow_det_keypoints, split_result
from opera.utils import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the test config')
    parser.add_argument('results', help='results .pkl of tools/test.py --out')
    parser.add_argument('--show-dir', required=True, help='drawings go here')
    parser.add_argument(
        '--topk', type=int, default=20, help='best and worst images drawn')
    parser.add_argument(
        '--metric',
        choices=['bbox', 'keypoints'],
        help='AP to rank by (default: keypoints for pose results, else '
        'bbox)')
    parser.add_argument(
        '--show-score-thr',
        type=float,
        default=0.3,
        help='draw predictions scoring above this')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def load_results(path, dataset):
    """The results list, checked against the dataset's length."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'results file not found: {path}')
    results = mmcv.load(path)
    if not isinstance(results, list) or len(results) != len(dataset):
        length = len(results) if isinstance(results, list) else 'not a list'
        raise ValueError(
            f'{path} holds {length} results for {len(dataset)} test images '
            f'of {dataset.ann_file}: was it written by tools/test.py with '
            'this config?')
    return results


def is_pose_result(result):
    return isinstance(result, tuple) and len(result) == 2


def prediction_entries(dataset, results, metric):
    """COCO result entries of every image (the dataset's own conversion)."""
    if metric == 'keypoints':
        if not all(is_pose_result(r) for r in results):
            raise ValueError('--metric keypoints needs pose results '
                             '(bbox_results, keypoint_results) per image')
        return dataset._kpt2json([r[0] for r in results],
                                 [r[1] for r in results])
    bbox_results = [r[0] if is_pose_result(r) else r for r in results]
    return dataset._det2json(bbox_results)


def coco_evaluator(dataset, metric, entries):
    """A function: image id -> COCOeval of that image alone (evaluated)."""
    if metric == 'keypoints':
        from xtcocotools.coco import COCO as XTCOCO
        from xtcocotools.cocoeval import COCOeval as XTCOCOeval
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = XTCOCO(dataset.ann_file)

        def make(coco_dt):
            return XTCOCOeval(coco_gt, coco_dt, dataset.KEYPOINT_IOU_TYPE,
                              dataset.sigmas, dataset.USE_AREA)
    else:
        coco_gt = dataset.coco

        def make(coco_dt):
            return COCOeval(coco_gt, coco_dt, 'bbox')

    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(entries) if entries else None

    def evaluate(img_id):
        if coco_dt is None:
            return None
        coco_eval = make(coco_dt)
        coco_eval.params.imgIds = [img_id]
        coco_eval.params.catIds = dataset.cat_ids
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
        return coco_eval

    return coco_gt, evaluate


def per_image_ap(dataset, results, metric):
    """COCO AP @[.50:.95] of each image alone.

    Returns:
        list[float | None]: Per dataset image, None without ground truth.
    """
    entries = prediction_entries(dataset, results, metric)
    coco_gt, evaluate = coco_evaluator(dataset, metric, entries)
    aps = []
    for img_id in dataset.img_ids:
        gt_ids = coco_gt.getAnnIds(
            imgIds=[img_id], catIds=dataset.cat_ids, iscrowd=False)
        if not gt_ids:
            aps.append(None)
            continue
        coco_eval = evaluate(img_id)
        if coco_eval is None:  # no predictions anywhere
            aps.append(0.0)
            continue
        # [IoU thresholds, recall, class, area 'all', largest maxDets]
        precision = coco_eval.eval['precision'][:, :, :, 0, -1]
        valid = precision > -1
        aps.append(float(precision[valid].mean()) if valid.any() else 0.0)
    return aps


def rank(aps, topk):
    """(best, worst): indices of the ``topk`` highest and lowest APs."""
    ranked = sorted((i for i, ap in enumerate(aps) if ap is not None),
                    key=lambda i: (aps[i], -i))
    return ranked[::-1][:topk], ranked[:topk]


def draw_pair(dataset, index, result, score_thr, out_file):
    """Ground truth (left) and predictions (right) of one image."""
    info = dataset.data_infos[index]
    image = mmcv.imread(osp.join(dataset.img_prefix, info['filename']))
    ann = dataset.get_ann_info(index)
    gt = imshow_det_keypoints(
        image,
        ann['bboxes'],
        ann['labels'],
        ann.get('keypoints'),
        class_names=dataset.CLASSES,
        kpt_score_thr=0,
        skeleton=getattr(dataset, 'skeleton', None))
    bboxes, labels, keypoints = split_result(result)
    pred = imshow_det_keypoints(
        image,
        bboxes,
        labels,
        keypoints,
        class_names=dataset.CLASSES,
        score_thr=score_thr,
        skeleton=getattr(dataset, 'skeleton', None))
    mmcv.imwrite(np.hstack([gt, pred]), out_file)
    return out_file


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.data.test.test_mode = True
    dataset = build_dataset(cfg.data.test)
    results = load_results(args.results, dataset)
    metric = args.metric or ('keypoints' if is_pose_result(results[0]) else
                             'bbox')
    aps = per_image_ap(dataset, results, metric)
    best, worst = rank(aps, args.topk)
    names = [info['filename'] for info in dataset.data_infos]
    for folder, indices in (('best', best), ('worst', worst)):
        print(f'{folder} {len(indices)} by {metric} AP:')
        for position, index in enumerate(indices):
            stem = osp.splitext(osp.basename(names[index]))[0]
            name = f'{position:03d}_{stem}_ap{aps[index]:.3f}.png'
            out_file = osp.join(args.show_dir, folder, name)
            draw_pair(dataset, index, results[index], args.show_score_thr,
                      out_file)
            print(f'  {aps[index]:.3f}  {names[index]}')
    mmcv.dump(
        dict(
            metric=metric,
            per_image_ap={name: ap
                          for name, ap in zip(names, aps)}),
        osp.join(args.show_dir, 'per_image_ap.json'))
    skipped = sum(ap is None for ap in aps)
    print(f'{len(aps) - skipped} images ranked ({skipped} without ground '
          f'truth); drawings in {args.show_dir}')
    return aps


if __name__ == '__main__':
    main(sys.argv[1:])
