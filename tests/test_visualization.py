"""The drawing module (opera.core.visualization), PETR.show_result and
``tools/test.py --show-dir`` on a tiny pose model."""
import pickle
import sys
import types
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from mmcv.parallel import MMDataParallel
from mmcv.runner import save_checkpoint
from mmdet.apis import set_random_seed
from mmdet.datasets import build_dataloader, build_dataset

from conftest import run_in_repo
from drawing_helpers import far_from, inside, subset_annotations
from opera.apis import init_model, single_gpu_test
from opera.core.keypoint import COCO, get_keypoint_layout
from opera.core.visualization import (imshow_det_keypoints, palette,
                                      skeleton_of, split_result)
from opera.datasets import CocoPoseDataset, CrowdPoseDataset
from opera.models.detectors.petr import PETR
from opera.utils import load_config

REPO = Path(__file__).resolve().parents[1]
POSE_CONFIG = str(REPO / 'tests' / 'configs' / 'tiny_petr_sample.py')
NUM_KPTS = 17
H, W = 120, 200
RADIUS, THICKNESS = 3, 2
# A 16-pixel JPEG block, plus its colour upsampling and the keypoint discs:
# how far from a drawing a pixel of a drawn JPEG may still change.
JPEG_MARGIN = 24
# Scores are sigmoids: no result passes this --show-score-thr.
NOTHING_SCORES_ABOVE = 1.01


def person(box, points, score, kpt_scores=None):
    """A person: box [5] and keypoints [K, 3] from ``points`` (index ->
    (x, y)); unlisted keypoints are unlabelled (score 0)."""
    kpts = np.zeros((NUM_KPTS, 3), np.float32)
    for index, (x, y) in points.items():
        kpts[index] = (x, y, 1.0)
    for index, kpt_score in (kpt_scores or {}).items():
        kpts[index, 2] = kpt_score
    return np.array([*box, score], np.float32), kpts


def draw(persons, **kwargs):
    """Draw ``persons`` on a black [H, W] image with small radius/lines."""
    boxes = np.stack([p[0] for p in persons])
    kpts = np.stack([p[1] for p in persons])
    img = np.zeros((H, W, 3), np.uint8)
    out = imshow_det_keypoints(
        img,
        boxes,
        np.zeros(len(persons), np.int64),
        kpts,
        class_names=['person'],
        radius=RADIUS,
        thickness=THICKNESS,
        **kwargs)
    assert not img.any(), 'the input image was modified'
    return out


def test_palette_gives_distinct_cycling_colours():
    colors = palette(12)
    assert len(set(colors[:10])) == 10
    assert colors[10] == colors[0] and colors[11] == colors[1]
    # tab10's first entry (31, 119, 180) as BGR
    assert colors[0] == (180, 119, 31)


def test_skeletons_come_from_the_dataset_definitions():
    coco, crowd = (CocoPoseDataset.KEYPOINT_LAYOUT,
                   CrowdPoseDataset.KEYPOINT_LAYOUT)
    assert skeleton_of(17) == [list(pair) for pair in coco.skeleton]
    assert skeleton_of(14) == [list(pair) for pair in crowd.skeleton]
    assert max(max(pair) for pair in skeleton_of(14)) == 13
    with pytest.warns(UserWarning, match='no skeleton is known for 5'):
        assert skeleton_of(5) == []


def test_split_result_stacks_classes():
    det = [
        np.ones((2, 5), np.float32),
        np.zeros((0, 5), np.float32),
        np.full((1, 5), 2, np.float32)
    ]
    bboxes, labels, kpts = split_result(det)
    assert bboxes.shape == (3, 5) and kpts is None
    assert labels.tolist() == [0, 0, 2]
    assert bboxes[2].tolist() == [2] * 5
    pose = ([np.ones((3, 5), np.float32)], [np.ones((3, 14, 3), np.float32)])
    bboxes, labels, kpts = split_result(pose)
    assert bboxes.shape == (3, 5) and kpts.shape == (3, 14, 3)
    assert labels.tolist() == [0, 0, 0]
    with pytest.raises(TypeError, match='mask results are not drawn'):
        split_result(([np.ones((1, 5))], [[np.zeros((4, 4))]]))


def test_thresholds_select_persons_keypoints_and_limbs():
    # COCO limbs used: 5-7 (left upper arm), 7-9 (left forearm),
    # 11-13 (left thigh).
    shown = person(
        (40, 40, 150, 110), {
            5: (60.5, 60.2),
            7: (100.9, 60.7),
            9: (140, 60),
            11: (60, 95),
            13: (100, 95)
        },
        0.9,
        kpt_scores={9: 0.1})
    hidden = person((165, 60, 195, 100), {5: (170, 70), 7: (190, 90)}, 0.2)
    out = draw([shown, hidden], score_thr=0.3, kpt_score_thr=0.3)
    color = np.array(palette(1)[0])
    # Keypoints above the threshold: filled discs centred on their pixel.
    for x, y in [(60, 60), (100, 60), (60, 95), (100, 95)]:
        assert (out[y, x] == color).all(), (x, y)
    # Limbs 5-7 and 11-13 join them; 7-9 ends at a 0.1-score keypoint.
    assert (out[60, 80] == color).all() and (out[95, 80] == color).all()
    assert not out[60, 140].any() and not out[60, 125].any()
    # The box is drawn (its label above it), the person below score_thr
    # not at all.
    assert (out[75, 40] == color).all() and (out[75, 150] == color).all()
    assert (out[39, 40:60] == color).all()
    assert not out[42:, 153:].any()
    assert not out[112:].any()


def test_detection_colours_go_by_class_and_file_is_written(tmp_path):
    boxes = np.array([[10, 30, 60, 80, 0.9], [100, 30, 150, 80, 0.8],
                      [120, 90, 190, 115, 0.05]], np.float32)
    labels = np.array([2, 0, 2])
    out_file = tmp_path / 'det.png'
    out = imshow_det_keypoints(
        np.zeros((H, W, 3), np.uint8),
        boxes,
        labels,
        class_names=['a', 'b', 'c'],
        score_thr=0.1,
        thickness=THICKNESS,
        out_file=str(out_file))
    colors = palette(3)
    assert (out[55, 10] == colors[2]).all()
    assert (out[55, 100] == colors[0]).all()
    assert not out[85:].any(), 'the 0.05-score box was drawn'
    assert (mmcv.imread(str(out_file)) == out).all()


def test_shape_errors_name_the_array():
    with pytest.raises(ValueError, match=r'keypoints must be \[1, K, 3\]'):
        imshow_det_keypoints(
            np.zeros((H, W, 3), np.uint8), np.zeros((1, 5)), np.zeros(1),
            np.zeros((2, 17, 3)))


def test_petr_show_result_draws_pose_results(tmp_path):
    shown = person((40, 40, 150, 110), {5: (60, 60), 7: (100, 60)}, 0.9)
    result = ([shown[0][None]], [shown[1][None]])
    img = np.zeros((H, W, 3), np.uint8)
    out_file = tmp_path / 'petr.png'
    # As mmdet's test loop calls it, with the dataset palette.
    out = PETR.show_result(
        types.SimpleNamespace(
            CLASSES=('person', ),
            bbox_head=types.SimpleNamespace(keypoint_layout=COCO)),
        img,
        result,
        score_thr=0.3,
        bbox_color=[(0, 0, 0)],
        text_color=[(0, 0, 0)],
        mask_color=[(0, 0, 0)],
        out_file=str(out_file))
    expected = imshow_det_keypoints(
        img, *split_result(result), class_names=['person'], score_thr=0.3)
    assert (out == expected).all()
    assert (out[60, 80] == palette(1)[0]).all()
    assert (mmcv.imread(str(out_file)) == out).all()


def test_petr_show_result_draws_the_limbs_of_its_layout():
    """A 17-keypoint layout other than COCO's: its own limbs are drawn, not
    those of the registered layout of K = 17."""
    arms = get_keypoint_layout(
        dict(COCO.to_dict(), name='coco_arms', skeleton=[[5, 7]]))
    shown = person((40, 40, 150, 110), {5: (60, 60), 7: (100, 60),
                                        6: (60, 100)}, 0.9)
    result = ([shown[0][None]], [shown[1][None]])
    img = np.zeros((H, W, 3), np.uint8)
    model = types.SimpleNamespace(
        CLASSES=('person', ),
        bbox_head=types.SimpleNamespace(keypoint_layout=arms))
    out = PETR.show_result(model, img, result, score_thr=0.3)
    expected = imshow_det_keypoints(
        img, *split_result(result), class_names=['person'], score_thr=0.3,
        skeleton=[[5, 7]])
    assert (out == expected).all()
    assert (out[60, 80] == palette(1)[0]).all()  # limb 5-7
    # COCO joins the left shoulder (5) to the right one (6), this layout
    # does not: the middle of that limb stays black.
    coco_limbs = imshow_det_keypoints(
        img, *split_result(result), class_names=['person'], score_thr=0.3)
    assert (coco_limbs[80, 60] == palette(1)[0]).all()
    assert (out[80, 60] == 0).all()


@pytest.fixture(scope='module')
def pose_checkpoint(tmp_path_factory):
    """A randomly initialised tiny PETR saved as a checkpoint."""
    set_random_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'tiny_petr.pth'
    save_checkpoint(init_model(POSE_CONFIG), str(path))
    return path


def draw_without_results(checkpoint, ann_file, out_dir):
    """What tools/test.py --show-dir writes when nothing passes the score
    threshold: the same images, undrawn (run here, in-process)."""
    cfg = load_config(POSE_CONFIG, {'data.test.ann_file': str(ann_file)})
    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    loader = build_dataloader(
        dataset,
        samples_per_gpu=2,
        workers_per_gpu=0,
        dist=False,
        shuffle=False)
    model = MMDataParallel(init_model(cfg, str(checkpoint)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single_gpu_test(
            model,
            loader,
            out_dir=str(out_dir),
            show_score_thr=NOTHING_SCORES_ABOVE)
    finally:
        torch.set_num_threads(threads)


def test_test_py_show_dir_draws_skeletons(pose_checkpoint, tmp_path):
    subset = tmp_path / 'two_images.json'
    images = subset_annotations(2, subset)
    drawn, plain, results = (tmp_path / 'drawn', tmp_path / 'plain',
                             tmp_path / 'results.pkl')
    # Random weights: every person scores above 0.
    command = [
        sys.executable, 'tools/test.py', POSE_CONFIG, pose_checkpoint,
        '--show-dir', drawn, '--show-score-thr', '0', '--out', results,
        '--cfg-options', f'data.test.ann_file={subset}'
    ]
    proc = run_in_repo(command)
    assert proc.returncode == 0, proc.stderr[-5000:]
    draw_without_results(pose_checkpoint, subset, plain)
    with open(results, 'rb') as f:
        results = pickle.load(f)
    for img_info, (boxes, kpts) in zip(images, results):
        name = img_info['file_name']
        with_pose = mmcv.imread(str(drawn / name)).astype(int)
        without = mmcv.imread(str(plain / name)).astype(int)
        assert with_pose.shape == (img_info['height'], img_info['width'], 3)
        diff = np.abs(with_pose - without).max(-1)
        boxes, kpts = boxes[0], kpts[0]
        assert kpts.shape == (5, NUM_KPTS, 3) and (boxes[:, 4] > 0).all()
        # Every keypoint is drawn (JPEG noise stays below ~20).
        pixels = inside(kpts[..., :2].reshape(-1, 2), diff.shape)
        assert len(pixels) > NUM_KPTS, 'keypoints off the image: weak test'
        for x, y in pixels:
            window = diff[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
            assert window.max() > 30, (name, x, y)
        # Far from the persons and their labels the image is untouched.
        far = far_from(boxes, diff.shape, JPEG_MARGIN)
        assert far.mean() > 0.3, 'the persons cover the image: weak test'
        assert not diff[far].any()
