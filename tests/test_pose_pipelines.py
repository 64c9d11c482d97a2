"""Keypoint-aware pipelines: flip, resize, crop, rotation and the full recipe.

Coordinate convention under test: continuous pixel coordinates, pixel
``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``; a horizontal flip maps
``x -> w - x`` like mmdet's boxes. The "dot" tests draw one bright pixel at
a keypoint, transform image and keypoint together, and check that the
dot's new centre (intensity-weighted) is where the keypoint went.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.parallel import DataContainer
from mmdet.datasets import build_dataset
from mmdet.datasets.pipelines import Compose

from conftest import REPO_ROOT, data_path

import opera  # noqa: F401  (registers modules)
from opera.core.keypoint import flip_keypoints, visible_keypoint_bboxes
from opera.datasets import CocoPoseDataset
from opera.datasets.pipelines import (RandomAffine, RandomCrop, RandomFlip,
                                      Resize)

K = 17
NAMES = CocoPoseDataset.KEYPOINT_LAYOUT.keypoint_names
FLIP_PAIRS = [list(p) for p in CocoPoseDataset.KEYPOINT_LAYOUT.flip_pairs]


def make_results(img, keypoints, bboxes, areas=None):
    """Pipeline results as the dataset + LoadAnnotations produce them."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    n = len(keypoints)
    if areas is None:
        areas = np.full(n, 100.0)
    return dict(
        img=img,
        img_shape=img.shape,
        ori_shape=img.shape,
        img_fields=['img'],
        bbox_fields=['gt_bboxes'],
        keypoint_fields=['gt_keypoints'],
        area_fields=['gt_areas'],
        flip_pairs=FLIP_PAIRS,
        gt_bboxes=np.asarray(bboxes, dtype=np.float32).reshape(n, 4),
        gt_labels=np.zeros(n, dtype=np.int64),
        gt_keypoints=keypoints,
        gt_areas=np.asarray(areas, dtype=np.float32))


def person(points, k=K):
    """[K, 3] keypoints: ``points`` maps index -> (x, y); others unlabelled."""
    keypoints = np.zeros((k, 3), dtype=np.float32)
    for index, (x, y) in points.items():
        keypoints[index] = (x, y, 2)
    return keypoints


def dot_results(height, width, pixel):
    """A black image with one white pixel and one keypoint at its centre."""
    img = np.zeros((height, width, 3), dtype=np.float32)
    col, row = pixel
    img[row, col] = 255
    centre = (col + 0.5, row + 0.5)
    return make_results(img, [person({0: centre})],
                        [[col - 2, row - 2, col + 3, row + 3]])


def dot_centre(img):
    """Intensity-weighted centre of the image, continuous coordinates."""
    weight = img[..., 0].astype(np.float64)
    rows, cols = np.indices(weight.shape)
    total = weight.sum()
    return np.array([(weight * cols).sum() / total + 0.5,
                     (weight * rows).sum() / total + 0.5])


def assert_dot_follows_keypoint(results, tol=0.2):
    keypoint = results['gt_keypoints'][0, 0]
    assert keypoint[2] > 0
    np.testing.assert_allclose(
        dot_centre(results['img']), keypoint[:2], atol=tol)


@pytest.fixture
def rotate_by_max(monkeypatch):
    """Make every uniform draw return its upper bound (angle = +max)."""
    monkeypatch.setattr(np.random, 'uniform', lambda low, high: high)


def test_flip_twice_is_identity():
    img = np.random.RandomState(0).rand(40, 60, 3).astype(np.float32)
    keypoints = [person({1: (10.5, 5.5), 2: (20.0, 6.0), 9: (59.0, 39.0)})]
    results = make_results(img.copy(), keypoints, [[5, 2, 30, 39]])
    flip = RandomFlip(flip_ratio=1.0)
    once = flip(dict(results, img=img.copy()))
    once.pop('flip')
    once.pop('flip_direction')
    twice = flip(once)
    np.testing.assert_array_equal(twice['img'], img)
    np.testing.assert_allclose(twice['gt_bboxes'], [[5, 2, 30, 39]])
    np.testing.assert_allclose(twice['gt_keypoints'], keypoints)


def test_flip_swaps_left_and_right_and_mirrors_x():
    width = 60
    img = np.zeros((40, width, 3), dtype=np.float32)
    left_eye, right_eye = NAMES.index('left_eye'), NAMES.index('right_eye')
    nose = NAMES.index('nose')
    keypoints = [person({left_eye: (10.0, 5.0), right_eye: (14.0, 6.0),
                         nose: (12.0, 8.0)})]
    out = RandomFlip(flip_ratio=1.0)(
        make_results(img, keypoints, [[8, 4, 16, 10]]))
    flipped = out['gt_keypoints'][0]
    # The point that was the left eye is now labelled right eye, at w - x.
    np.testing.assert_allclose(flipped[right_eye], [width - 10.0, 5.0, 2])
    np.testing.assert_allclose(flipped[left_eye], [width - 14.0, 6.0, 2])
    np.testing.assert_allclose(flipped[nose], [width - 12.0, 8.0, 2])
    # Unlabelled keypoints stay (0, 0, 0).
    assert not flipped[NAMES.index('left_ankle')].any()
    np.testing.assert_allclose(out['gt_bboxes'], [[44, 4, 52, 10]])


def test_flip_refuses_pairs_other_than_the_datasets():
    """Pairs given to RandomFlip may restate the dataset's (its layout's),
    not contradict them: COCO swaps eyes 1 <-> 2, these pairs do not."""
    img = np.zeros((40, 60, 3), dtype=np.float32)
    keypoints = [person({1: (10.0, 5.0), 2: (14.0, 6.0)})]
    results = make_results(img, keypoints, [[8, 4, 16, 10]])
    with pytest.raises(ValueError, match=r"flip_pairs=\[\[3, 4\]\]\) differs "
                       r"from the dataset's flip pairs \[\[1, 2\], "):
        RandomFlip(flip_ratio=1.0, flip_pairs=[[3, 4]])(dict(results))
    same = RandomFlip(flip_ratio=1.0, flip_pairs=FLIP_PAIRS)(dict(results))
    np.testing.assert_allclose(same['gt_keypoints'][0, 1:3],
                               [[46, 6, 2], [50, 5, 2]])
    # Without a dataset the transform's own pairs are used.
    results.pop('flip_pairs')
    own = RandomFlip(flip_ratio=1.0, flip_pairs=[[3, 4]])(results)
    np.testing.assert_allclose(own['gt_keypoints'][0, 1:3],
                               [[50, 5, 2], [46, 6, 2]])


def test_flip_directions_swap_only_for_mirrors():
    keypoints = person({1: (10, 5), 2: (14, 6)})[None]
    img_shape = (40, 60, 3)
    pairs = FLIP_PAIRS
    vertical = flip_keypoints(keypoints, img_shape, pairs, 'vertical')
    np.testing.assert_allclose(vertical[0, 1:3], [[14, 34, 2], [10, 35, 2]])
    diagonal = flip_keypoints(keypoints, img_shape, pairs, 'diagonal')
    np.testing.assert_allclose(diagonal[0, 1:3], [[50, 35, 2], [46, 34, 2]])


def test_box_of_visible_keypoints_ignores_unlabelled():
    keypoints = np.stack([person({3: (10, 20), 7: (30, 5)}), person({})])
    np.testing.assert_allclose(
        visible_keypoint_bboxes(keypoints), [[10, 5, 30, 20], [0, 0, 0, 0]])
    as_tensor = visible_keypoint_bboxes(torch.from_numpy(keypoints))
    assert isinstance(as_tensor, torch.Tensor)
    assert as_tensor.tolist() == [[10, 5, 30, 20], [0, 0, 0, 0]]


def test_flip_moves_keypoint_with_its_pixel():
    out = RandomFlip(flip_ratio=1.0)(dot_results(30, 50, pixel=(7, 12)))
    # The dot keypoint is index 0 (nose), which has no flip partner.
    assert_dot_follows_keypoint(out, tol=1e-6)


def test_resize_moves_keypoint_with_its_pixel_and_scales_areas():
    results = dot_results(40, 64, pixel=(20, 9))
    results['gt_areas'] = np.array([50.0], dtype=np.float32)
    out = Resize(img_scale=(104, 60), keep_ratio=False)(results)
    scale_x, scale_y = out['scale_factor'][:2]
    assert (scale_x, scale_y) == pytest.approx((104 / 64, 60 / 40))
    assert_dot_follows_keypoint(out)
    np.testing.assert_allclose(out['gt_areas'], [50.0 * scale_x * scale_y],
                               rtol=1e-6)


def test_resize_keep_ratio_multiscale_range_options():
    img = np.zeros((100, 200, 3), dtype=np.float32)
    results = make_results(img, [person({0: (100, 50)})], [[90, 40, 110, 60]])
    out = Resize(
        img_scale=[(400, 1400), (1400, 1400)],
        multiscale_mode='range',
        keep_ratio=True)(results)
    h, w = out['img_shape'][:2]
    assert max(h, w) <= 1400 and 400 <= min(h, w)
    np.testing.assert_allclose(out['gt_keypoints'][0, 0, :2],
                               [100 * w / 200, 50 * h / 100], rtol=1e-5)


def test_crop_moves_keypoint_with_its_pixel():
    np.random.seed(3)
    out = RandomCrop(crop_size=(50, 70))(dot_results(60, 80, pixel=(40, 30)))
    assert out['img'].shape[:2] == (50, 70)
    assert_dot_follows_keypoint(out, tol=1e-6)


def test_crop_drops_lost_keypoints_and_instances_keeps_areas(monkeypatch):
    monkeypatch.setattr(np.random, 'randint', lambda low, high: high - 1)
    img = np.zeros((60, 80, 3), dtype=np.float32)
    keypoints = [
        person({0: (40, 30), 1: (3, 3)}),  # loses keypoint 1
        person({0: (4, 4)}),  # loses everything
    ]
    results = make_results(img, keypoints, [[2, 2, 50, 40], [1, 1, 8, 8]],
                           areas=[900, 30])
    out = RandomCrop(crop_size=(50, 70))(results)  # offset (10, 10)
    assert len(out['gt_keypoints']) == len(out['gt_bboxes']) == 1
    assert len(out['gt_labels']) == len(out['gt_areas']) == 1
    np.testing.assert_allclose(out['gt_keypoints'][0, 0], [30, 20, 2])
    assert not out['gt_keypoints'][0, 1].any()
    np.testing.assert_allclose(out['gt_bboxes'], [[0, 0, 40, 30]])
    # Areas are not changed by the crop (PETR reference behaviour).
    np.testing.assert_allclose(out['gt_areas'], [900])


def test_crop_without_persons_is_redrawn_unless_allowed(monkeypatch):
    monkeypatch.setattr(np.random, 'randint', lambda low, high: high - 1)

    def results():
        img = np.zeros((60, 80, 3), dtype=np.float32)
        return make_results(img, [person({0: (4, 4)})], [[1, 1, 8, 8]])

    assert RandomCrop(crop_size=(50, 70))(results()) is None
    out = RandomCrop(crop_size=(50, 70), allow_negative_crop=True)(results())
    assert out['gt_keypoints'].shape == (0, K, 3)


def test_rotation_moves_keypoint_with_its_pixel(rotate_by_max):
    out = RandomAffine(max_rotate_degree=30, border_val=(0, 0, 0))(
        dot_results(60, 80, pixel=(55, 18)))
    # The keypoint really moved (30 degrees about the centre (40, 30)).
    assert np.abs(out['gt_keypoints'][0, 0, :2] - (55.5, 18.5)).max() > 5
    assert_dot_follows_keypoint(out)


def test_rotation_drops_points_and_instances_that_leave(rotate_by_max):
    img = np.zeros((100, 100, 3), dtype=np.float32)
    keypoints = [
        person({0: (2, 2)}),  # the corner leaves the image: dropped
        person({0: (50, 50), 1: (98, 2)}),  # keeps the centre only
    ]
    results = make_results(img, keypoints, [[0, 0, 10, 10], [40, 40, 60, 60]],
                           areas=[20, 400])
    out = RandomAffine(max_rotate_degree=30)(results)
    assert len(out['gt_bboxes']) == len(out['gt_labels']) == 1
    np.testing.assert_allclose(out['gt_areas'], [400])
    np.testing.assert_allclose(out['gt_keypoints'][0, 0], [50, 50, 2],
                               atol=1e-4)
    assert not out['gt_keypoints'][0, 1].any()
    half = 10 * (np.cos(np.pi / 6) + np.sin(np.pi / 6))
    np.testing.assert_allclose(out['gt_bboxes'],
                               [[50 - half, 50 - half, 50 + half, 50 + half]],
                               atol=1e-4)


def test_rotation_losing_every_person_returns_none(rotate_by_max):
    img = np.zeros((100, 100, 3), dtype=np.float32)
    results = make_results(img, [person({0: (2, 2)})], [[0, 0, 10, 10]])
    assert RandomAffine(max_rotate_degree=30)(dict(results)) is None
    out = RandomAffine(max_rotate_degree=30, skip_empty=False)(results)
    assert out['gt_keypoints'].shape == (0, K, 3)


@pytest.fixture(scope='module')
def coco_keypoint_cfg():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'datasets',
                 'coco_keypoint.py'))
    cfg.data.train.ann_file = data_path('coco_mini', 'annotations',
                                        'person_keypoints_train2017.json')
    cfg.data.train.img_prefix = data_path('coco_mini', 'train2017')
    return cfg


def test_full_train_pipeline_on_coco_mini(coco_keypoint_cfg):
    dataset = build_dataset(coco_keypoint_cfg.data.train)
    np.random.seed(0)
    for idx in (0, 1, 0, 1):
        data = dataset[idx]
        assert set(data) == {
            'img', 'img_metas', 'gt_bboxes', 'gt_labels', 'gt_keypoints',
            'gt_areas'
        }
        assert all(isinstance(v, DataContainer) for v in data.values())
        img = data['img'].data
        keypoints = data['gt_keypoints'].data
        n = len(keypoints)
        assert img.ndim == 3 and img.shape[0] == 3
        h, w = img.shape[1:]
        assert max(h, w) <= 1400
        assert n >= 1 and keypoints.shape == (n, K, 3)
        assert data['gt_bboxes'].data.shape == (n, 4)
        assert data['gt_labels'].data.shape == (n, )
        assert data['gt_areas'].data.shape == (n, )
        visible = keypoints[..., 2] > 0
        assert visible.any(dim=1).all()
        xs, ys = keypoints[..., 0][visible], keypoints[..., 1][visible]
        assert (xs >= 0).all() and (xs <= w).all()
        assert (ys >= 0).all() and (ys <= h).all()
        assert data['img_metas'].data['img_shape'][:2] == (h, w)


def test_test_pipeline_builds(coco_keypoint_cfg):
    img_path = data_path('coco_val_tiny', '000000000785.jpg')
    pipeline = Compose(coco_keypoint_cfg.test_pipeline)
    data = pipeline(
        dict(img_info=dict(filename=img_path), img_prefix=None))
    h, w = data['img'][0].data.shape[1:]  # a DataContainer: batches pad
    assert max(h, w) <= 1333 and min(h, w) <= 800
