"""tools/analysis_tools/eval_metric.py evaluates a saved results file as
tools/test.py evaluates it."""
import contextlib
import importlib.util
import io
import json
import pickle
import re
import sys

import numpy as np
import pytest
import torch
from mmcv.runner import save_checkpoint

from conftest import REPO_ROOT, data_path, run_in_repo

import opera  # noqa: F401
from opera.models import build_detector
from opera.utils import load_config

CONFIG = f'{REPO_ROOT}/tests/configs/tiny_petr_sample.py'
# A low IoU threshold of the bbox AP, so that an untrained model scores.
EVAL_OPTIONS = ('--eval-options', 'iou_thrs=[0.05]')
COCO_SIGMAS = np.array([
    .026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107,
    .107, .087, .087, .089, .089
])


def eval_metric_main():
    spec = importlib.util.spec_from_file_location(
        'eval_metric', f'{REPO_ROOT}/tools/analysis_tools/eval_metric.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope='module')
def val_tiny_options():
    root = data_path('coco_val_tiny')
    options = {}
    for split in ('val', 'test'):
        options[f'data.{split}.ann_file'] = f'{root}/test_coco.json'
        options[f'data.{split}.img_prefix'] = f'{root}/'
    return options


def cfg_options(options):
    return ['--cfg-options', *[f'{k}={v}' for k, v in options.items()]]


def run_eval_metric(results, metrics, options, extra=()):
    with contextlib.redirect_stdout(io.StringIO()):
        return eval_metric_main()([
            CONFIG,
            str(results), '--eval', *metrics, *extra, *cfg_options(options)
        ])


def test_same_metrics_as_test_py_on_its_results_file(tmp_path,
                                                     val_tiny_options):
    cfg = load_config(CONFIG, val_tiny_options)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    # Untrained, every pose sits on its proposal point (zero-initialised
    # offsets): boxes of no area, AP 0. Offsets of +-2 in logit space for
    # alternate keypoints give boxes that overlap the persons.
    proposal_offsets = model.bbox_head.kpt_branches[-1][-1].bias
    proposal_offsets.data = torch.tensor([2., 2., -2., -2.]).repeat(9)[:34]
    checkpoint = tmp_path / 'tiny.pth'
    save_checkpoint(model, str(checkpoint))
    out = tmp_path / 'results.pkl'
    done = run_in_repo([
        sys.executable, 'tools/test.py', CONFIG,
        str(checkpoint), '--out',
        str(out), '--eval', 'keypoints', 'bbox', *EVAL_OPTIONS,
        *cfg_options(val_tiny_options)
    ])
    assert done.returncode == 0, done.stderr[-3000:]
    printed = {
        name: float(value)
        for name, value in re.findall(r'^((?:keypoints|bbox)_\w+): '
                                      r'([-\d.e]+)$', done.stdout, re.M)
    }
    assert {'keypoints_mAP', 'keypoints_AR', 'bbox_mAP'} <= set(printed)
    assert printed['bbox_mAP'] > 0
    metrics = run_eval_metric(out, ['keypoints', 'bbox'], val_tiny_options,
                              EVAL_OPTIONS)
    for name, value in printed.items():
        assert metrics[name] == pytest.approx(value, abs=1e-12), name


def shifted_ground_truth(ann_file):
    """coco_val_tiny's persons, every keypoint moved right by
    2 sigma_k sqrt(area): OKS exp(-1/2) = 0.607 with every person."""
    with open(ann_file) as f:
        data = json.load(f)
    results = []
    for image in data['images']:
        anns = [
            a for a in data['annotations'] if a['image_id'] == image['id']
            and a['num_keypoints'] > 0 and not a['iscrowd']
        ]
        kpts = np.array([a['keypoints'] for a in anns],
                        np.float32).reshape(-1, 17, 3)
        shift = np.array([2 * COCO_SIGMAS * np.sqrt(a['area'])
                          for a in anns]).reshape(-1, 17)
        kpts[..., 0] += shift
        kpts[..., 2] = 1
        boxes = np.array([a['bbox'] + [1.] for a in anns],
                         np.float32).reshape(-1, 5)
        boxes[:, 2:4] += boxes[:, :2]
        results.append(([boxes], [kpts]))
    return results


def test_known_keypoint_ap_of_a_hand_made_results_file(tmp_path,
                                                       val_tiny_options):
    results = shifted_ground_truth(val_tiny_options['data.test.ann_file'])
    path = tmp_path / 'shifted.pkl'
    with open(path, 'wb') as f:
        pickle.dump(results, f)
    metrics = run_eval_metric(path, ['keypoints'], val_tiny_options)
    # Matched at the OKS thresholds 0.50, 0.55 and 0.60 of ten.
    assert metrics['keypoints_mAP'] == pytest.approx(0.3, abs=1e-6)
    assert metrics['keypoints_mAP_50'] == pytest.approx(1.0)
    assert metrics['keypoints_mAP_75'] == pytest.approx(0.0)


def test_results_of_another_dataset_are_refused(tmp_path, val_tiny_options):
    path = tmp_path / 'short.pkl'
    with open(path, 'wb') as f:
        pickle.dump(shifted_ground_truth(
            val_tiny_options['data.test.ann_file'])[:3], f)
    with pytest.raises(ValueError, match='holds 3 entries.*has 4 images'):
        run_eval_metric(path, ['keypoints'], val_tiny_options)
    with pytest.raises(FileNotFoundError, match='missing.pkl'):
        run_eval_metric(tmp_path / 'missing.pkl', ['keypoints'],
                        val_tiny_options)
