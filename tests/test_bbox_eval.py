"""COCO box evaluation reproduces pycocotools' known answers.

mmdet's ``CocoDataset.evaluate`` uses maxDets (100, 300, 1000) by default, so
its bbox_mAP is taken at up to 1000 detections per image. Our dataset configs
pass ``proposal_nums=(1, 10, 100)``, the standard COCO setting that the
published models report (our models output at most 100 per image anyway).
"""
import json
from collections import defaultdict

import numpy as np
import pytest
from mmcv import Config
from mmdet.datasets import build_dataset

from conftest import REPO_ROOT, data_path

import opera  # noqa: F401

STANDARD = dict(proposal_nums=(1, 10, 100))


def load_dataset(ann_file):
    return build_dataset(
        dict(
            type='CocoDataset',
            ann_file=ann_file,
            img_prefix='',
            pipeline=[],
            test_mode=True))


def to_mmdet_results(dataset, coco_results):
    """COCO-format detections -> per image, per class [n, 5] xyxy+score.

    float64 on purpose: the fixture's coordinates have many decimals and some
    IoUs sit on a threshold; rounding them to float32 moves the AP from
    0.5046 to 0.5041. The evaluator itself keeps the precision it is given.
    """
    by_image = defaultdict(list)
    for det in coco_results:
        by_image[det['image_id']].append(det)
    label_of = {cat_id: i for i, cat_id in enumerate(dataset.cat_ids)}
    results = []
    for img_id in dataset.img_ids:
        per_class = [np.zeros((0, 5)) for _ in dataset.cat_ids]
        rows = defaultdict(list)
        for det in by_image[img_id]:
            x, y, w, h = det['bbox']
            rows[label_of[det['category_id']]].append(
                [x, y, x + w, y + h, det['score']])
        for label, boxes in rows.items():
            per_class[label] = np.array(boxes, np.float64)
        results.append(per_class)
    return results


def ground_truth_as_results(dataset):
    coco = dataset.coco
    return [
        dict(image_id=a['image_id'], category_id=a['category_id'],
             bbox=a['bbox'], score=1.0)
        for a in coco.loadAnns(coco.getAnnIds(iscrowd=False))
    ]


@pytest.fixture(scope='module')
def val2014():
    gt = data_path('eval_fixtures', 'instances_val2014_100.json')
    preds = data_path('eval_fixtures',
                      'instances_val2014_fakebbox100_results.json')
    dataset = load_dataset(gt)
    with open(preds) as f:
        return dataset, to_mmdet_results(dataset, json.load(f))


def test_standard_coco_ap_on_val2014_fixture(val2014):
    dataset, results = val2014
    metrics = dataset.evaluate(results, metric='bbox', **STANDARD)
    assert metrics['bbox_mAP'] == pytest.approx(0.5046, abs=5e-5)  # 0.505
    assert metrics['bbox_mAP_50'] == pytest.approx(0.697, abs=5e-4)
    assert metrics['bbox_mAP_75'] == pytest.approx(0.573, abs=5e-4)
    assert metrics['bbox_mAP_s'] == pytest.approx(0.586, abs=5e-4)
    assert metrics['bbox_mAP_m'] == pytest.approx(0.519, abs=5e-4)
    assert metrics['bbox_mAP_l'] == pytest.approx(0.501, abs=5e-4)


def test_float32_boxes_give_the_float32_answer(val2014):
    """Models output float32 boxes; on this fixture that alone gives 0.5041.

    The fixture has at most 39 detections per image, so maxDets (100 or
    mmdet's 1000) does not change its AP; float32 rounding does.
    """
    dataset, results = val2014
    results32 = [[r.astype(np.float32) for r in img] for img in results]
    assert dataset.evaluate(results, metric='bbox')['bbox_mAP'] == \
        pytest.approx(0.5046, abs=5e-5)
    metrics = dataset.evaluate(results32, metric='bbox', **STANDARD)
    assert metrics['bbox_mAP'] == pytest.approx(0.5041, abs=5e-5)


def test_ground_truth_fed_back_scores_one(val2014):
    dataset, _ = val2014
    results = to_mmdet_results(dataset, ground_truth_as_results(dataset))
    metrics = dataset.evaluate(results, metric='bbox', **STANDARD)
    assert metrics['bbox_mAP'] == pytest.approx(1.0)


def test_person_detections_on_val_tiny():
    dataset = load_dataset(data_path('coco_val_tiny', 'test_coco.json'))
    with open(data_path('coco_val_tiny',
                        'test_coco_det_AP_H_56.json')) as f:
        dets = [dict(d, category_id=1) for d in json.load(f)]
    metrics = dataset.evaluate(
        to_mmdet_results(dataset, dets), metric='bbox', **STANDARD)
    assert metrics['bbox_mAP'] == pytest.approx(0.7891, abs=5e-5)


def test_dataset_configs_evaluate_at_100_detections():
    cfg = Config.fromfile(
        f'{REPO_ROOT}/configs/_base_/datasets/coco_detection.py')
    assert tuple(cfg.evaluation.proposal_nums) == (1, 10, 100)
