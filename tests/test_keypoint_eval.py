"""Known-answer tests of the keypoint evaluation on tests/data fixtures.

Keypoint AP is computed with xtcocotools; the expected values are the
standard COCOeval ones. The bbox check goes through mmdet's evaluation,
whose ``bbox_mAP`` is taken at 1000 detections per image (on this fixture
there are fewer detections, so it equals the standard value).
"""
import json
import os.path as osp
from collections import defaultdict

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import data_path

import opera  # noqa: F401  (registers modules)
from opera.core.keypoint import bbox_kpt2result, visible_keypoint_bboxes
from opera.datasets import CocoPoseDataset, CrowdPoseDataset

COCO_EXPECTED = dict(
    keypoints_mAP=0.8609,
    keypoints_mAP_50=0.9931,
    keypoints_mAP_75=0.9109,
    keypoints_mAP_m=0.7756,
    keypoints_mAP_l=0.9373,
    keypoints_AR=0.875)
CROWDPOSE_EXPECTED = dict(
    keypoints_mAP=0.7877, keypoints_mAP_50=0.9881, keypoints_mAP_75=0.7314)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def build_eval_dataset(dataset_cls, *ann_parts):
    """A test-mode dataset: no images are needed to evaluate."""
    return dataset_cls(
        ann_file=data_path(*ann_parts),
        img_prefix='no/images/here/',
        pipeline=[],
        test_mode=True)


def to_results(dataset, entries, num_keypoints):
    """COCO keypoint json entries -> per-image (bboxes, keypoints) results.

    Each instance's box is the box of its keypoints, scored with the
    entry's ``score``.
    """
    by_image = defaultdict(list)
    for entry in entries:
        by_image[entry['image_id']].append(entry)
    results = []
    for img_id in dataset.img_ids:
        found = by_image[img_id]
        keypoints = np.array([e['keypoints'] for e in found],
                             dtype=np.float32).reshape(-1, num_keypoints, 3)
        scores = np.array([e['score'] for e in found], dtype=np.float32)
        keypoints_for_box = keypoints.copy()
        keypoints_for_box[..., 2] = 1
        boxes = visible_keypoint_bboxes(keypoints_for_box)
        bboxes = np.concatenate([boxes, scores[:, None]], axis=1)
        results.append(
            bbox_kpt2result(bboxes, np.zeros(len(found), dtype=np.int64),
                            keypoints, 1))
    return results


def assert_metrics(metrics, expected):
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=5e-5), key


@pytest.fixture(scope='module')
def coco_val_tiny():
    return build_eval_dataset(CocoPoseDataset, 'coco_val_tiny',
                              'test_coco.json')


@pytest.fixture(scope='module')
def coco_preds(coco_val_tiny):
    entries = load_json(
        data_path('eval_fixtures', 'example_coco_preds.json'))
    return to_results(coco_val_tiny, entries, 17)


def test_coco_keypoint_ap_known_answer(coco_val_tiny, coco_preds):
    metrics = coco_val_tiny.evaluate(coco_preds, metric='keypoints')
    assert_metrics(metrics, COCO_EXPECTED)
    assert metrics['keypoints_mAP_copypaste'].startswith('0.861 0.993')


def test_ground_truth_as_predictions_scores_one(coco_val_tiny):
    gt = load_json(coco_val_tiny.ann_file)['annotations']
    entries = [
        dict(image_id=a['image_id'], keypoints=a['keypoints'], score=1.0)
        for a in gt if a['num_keypoints'] > 0
    ]
    metrics = coco_val_tiny.evaluate(
        to_results(coco_val_tiny, entries, 17), metric='keypoints')
    assert metrics['keypoints_mAP'] == pytest.approx(1.0)
    assert metrics['keypoints_AR'] == pytest.approx(1.0)


def test_crowdpose_known_answer():
    dataset = build_eval_dataset(CrowdPoseDataset, 'eval_fixtures',
                                 'example_crowdpose_val.json')
    entries = load_json(
        data_path('eval_fixtures', 'example_crowdpose_preds.json'))
    metrics = dataset.evaluate(to_results(dataset, entries, 14))
    assert_metrics(metrics, CROWDPOSE_EXPECTED)
    for level in ('easy', 'medium', 'hard'):
        assert 0 <= metrics[f'keypoints_mAP_{level}'] <= 1


def test_format_results_json_reloads_with_same_ap(coco_val_tiny, coco_preds,
                                                  tmp_path):
    prefix = str(tmp_path / 'preds')
    result_files, tmp_dir = coco_val_tiny.format_results(coco_preds, prefix)
    assert tmp_dir is None
    assert result_files['keypoints'] == prefix + '.keypoints.json'
    assert osp.isfile(result_files['bbox'])
    entries = load_json(result_files['keypoints'])
    assert set(entries[0]) == {'image_id', 'category_id', 'keypoints', 'score'}
    assert len(entries[0]['keypoints']) == 17 * 3

    coco_gt = COCO(coco_val_tiny.ann_file)
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(entries), 'keypoints')
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    assert coco_eval.stats[0] == pytest.approx(0.8609, abs=5e-5)


def test_bbox_metric_accepts_plain_bbox_results(coco_val_tiny):
    detections = load_json(
        data_path('coco_val_tiny', 'test_coco_det_AP_H_56.json'))
    by_image = defaultdict(list)
    for det in detections:
        x, y, w, h = det['bbox']
        by_image[det['image_id']].append([x, y, x + w, y + h, det['score']])
    results = [[np.array(by_image[i], dtype=np.float32).reshape(-1, 5)]
               for i in coco_val_tiny.img_ids]
    metrics = coco_val_tiny.evaluate(results, metric='bbox')
    assert metrics['bbox_mAP'] == pytest.approx(0.7891, abs=5e-5)
    with pytest.raises(TypeError, match='bbox_results, keypoint_results'):
        coco_val_tiny.evaluate(results, metric='keypoints')


def test_pose_results_give_both_metrics(coco_val_tiny, coco_preds):
    metrics = coco_val_tiny.evaluate(coco_preds, metric=['keypoints', 'bbox'])
    assert 'keypoints_mAP' in metrics and 'bbox_mAP' in metrics


def test_bad_results_and_metrics_raise_clear_errors(coco_val_tiny,
                                                    coco_preds):
    with pytest.raises(KeyError, match='segm'):
        coco_val_tiny.evaluate(coco_preds, metric='segm')
    wrong_k = [([b[0]], [np.zeros((len(b[0]), 14, 3), np.float32)])
               for b, _ in coco_preds]
    with pytest.raises(TypeError, match='unrecognised results'):
        coco_val_tiny.evaluate(wrong_k)
    with pytest.raises(TypeError, match='expected a list of 4'):
        coco_val_tiny.evaluate(coco_preds[:2])
    crowdpose = build_eval_dataset(CrowdPoseDataset, 'eval_fixtures',
                                   'example_crowdpose_val.json')
    with pytest.raises(KeyError, match='bbox'):
        crowdpose.evaluate([], metric='bbox')
