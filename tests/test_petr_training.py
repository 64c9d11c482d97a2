"""PETR and H-PETR learn on coco_mini persons; tools/test.py evaluates them.

One tiny PETR is overfitted on two images with one large person each; the
same trained weights then go through ``tools/test.py`` (keypoint AP,
``--format-only`` json, batch 2 against batch 1).
"""
import contextlib
import io
import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmcv.parallel import MMDataParallel
from mmcv.runner import save_checkpoint
from mmdet.datasets import build_dataloader, build_dataset

from conftest import (REPO_ROOT, data_path, subset_annotations,
                      train_iterations)

import opera  # noqa: F401
from opera.apis import single_gpu_test
from opera.models import build_detector
from opera.utils import load_config

TINY_PETR_SAMPLE = f'{REPO_ROOT}/tests/configs/tiny_petr_sample.py'
# One large person each, 16 and 15 visible keypoints.
IMAGE_IDS = (463557, 535506)
POSE_LOSSES = ('cls', 'kpt', 'oks')
HYBRID_OPTIONS = {
    'model.bbox_head.num_query_one2many': 20,
    'model.bbox_head.k_one2many': 2,
}


pytestmark = pytest.mark.usefixtures('single_thread')


def coco_mini_options(tmp_dir):
    root = data_path('coco_mini')
    ann_file = subset_annotations(
        f'{root}/annotations/person_keypoints_train2017.json', IMAGE_IDS,
        tmp_dir / 'persons.json')
    options = {}
    for split in ('train', 'val', 'test'):
        options[f'data.{split}.ann_file'] = ann_file
        options[f'data.{split}.img_prefix'] = f'{root}/train2017/'
    return options


def build(options):
    cfg = load_config(TINY_PETR_SAMPLE, options)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    return cfg, model


def keypoint_ap(model, cfg):
    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    loader = build_dataloader(dataset, 2, 0, dist=False, shuffle=False)
    with contextlib.redirect_stdout(io.StringIO()):
        results = single_gpu_test(MMDataParallel(model).eval(), loader)
        return dataset.evaluate(results, metric='keypoints')['keypoints_mAP']


def mean(values):
    return sum(values) / len(values)


@pytest.fixture(scope='module')
def trained_petr(tmp_path_factory):
    """Tiny PETR before and after 40 iterations on the two images."""
    tmp_dir = tmp_path_factory.mktemp('petr')
    options = coco_mini_options(tmp_dir)
    cfg, model = build(options)
    untrained_ap = keypoint_ap(model, cfg)
    train_iterations(model, cfg, 40, POSE_LOSSES)
    checkpoint = tmp_dir / 'petr.pth'
    save_checkpoint(model, str(checkpoint))
    return dict(
        cfg=cfg,
        options=options,
        untrained_ap=untrained_ap,
        trained_ap=keypoint_ap(model, cfg),
        checkpoint=str(checkpoint),
        tmp_dir=tmp_dir)


def test_petr_overfitting_raises_keypoint_ap(trained_petr):
    # Measured (seed 0, one thread): AP 0.0 untrained, 0.95 after 40
    # iterations, 1.0 after 80.
    assert trained_petr['untrained_ap'] < 0.05
    assert trained_petr['trained_ap'] >= 0.6


def run_test_py(trained_petr, batch_size, *extra):
    options = dict(trained_petr['options'])
    options['data.test_dataloader.samples_per_gpu'] = batch_size
    cfg_options = [f'{key}={value}' for key, value in options.items()]
    command = [
        sys.executable, f'{REPO_ROOT}/tools/test.py', TINY_PETR_SAMPLE,
        trained_petr['checkpoint'], *extra, '--cfg-options', *cfg_options
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_test_py_eval_keypoints_format_only_and_batch_two(trained_petr):
    tmp_dir = trained_petr['tmp_dir']
    stdout = run_test_py(trained_petr, 1, '--eval', 'keypoints', '--out',
                         str(tmp_dir / 'batch1.pkl'))
    printed = float(re.search(r'^keypoints_mAP: ([\d.]+)$', stdout,
                              re.M).group(1))
    assert printed == pytest.approx(trained_petr['trained_ap'], abs=1e-3)

    prefix = tmp_dir / 'results'
    run_test_py(trained_petr, 2, '--format-only', '--eval-options',
                f'jsonfile_prefix={prefix}', '--out',
                str(tmp_dir / 'batch2.pkl'))
    with open(f'{prefix}.keypoints.json') as f:
        entries = json.load(f)
    assert {e['image_id'] for e in entries} == set(IMAGE_IDS)
    for entry in entries:
        assert entry['category_id'] == 1
        assert len(entry['keypoints']) == 17 * 3
        assert 0 <= entry['score'] <= 1

    with open(tmp_dir / 'batch1.pkl', 'rb') as f:
        batch1 = pickle.load(f)
    with open(tmp_dir / 'batch2.pkl', 'rb') as f:
        batch2 = pickle.load(f)
    assert len(batch1) == len(batch2) == len(IMAGE_IDS)
    for (boxes1, kpts1), (boxes2, kpts2) in zip(batch1, batch2):
        np.testing.assert_allclose(boxes1[0], boxes2[0], atol=1e-3)
        np.testing.assert_allclose(kpts1[0], kpts2[0], atol=1e-3)
    # The json holds what the model returned for the first image.
    with open(trained_petr['options']['data.test.ann_file']) as f:
        first_id = json.load(f)['images'][0]['id']
    first = [e for e in entries if e['image_id'] == first_id]
    np.testing.assert_allclose(
        sorted(e['score'] for e in first), np.sort(batch2[0][0][0][:, 4]),
        atol=1e-5)


def test_h_petr_short_training_lowers_both_branches(tmp_path):
    options = {**coco_mini_options(tmp_path), **HYBRID_OPTIONS}
    cfg, model = build(options)
    assert len(model.bbox_head.query_groups.groups) == 2
    history = train_iterations(model, cfg, 20, POSE_LOSSES)
    for branch in ('one2one', 'one2many'):
        first = mean([h[branch] for h in history[:4]])
        last = mean([h[branch] for h in history[-4:]])
        assert last < 0.7 * first, (branch, [h[branch] for h in history])
