"""Flip test of PETR (Opera's ``PETR.aug_test``): each image and its mirror,
the mirror's persons mapped back and both sets merged by an NMS."""
import contextlib
import io
import pickle
import re
import sys

import numpy as np
import pytest
import torch
from mmcv.parallel import MMDataParallel
from mmcv.runner import save_checkpoint
from mmdet.datasets import build_dataloader, build_dataset

from conftest import REPO_ROOT, data_path, run_in_repo

import opera  # noqa: F401
from opera.apis import single_gpu_test
from opera.core.keypoint import COCO, flip_keypoints, get_keypoint_layout
from opera.core.keypoint.aug_merge import (keypoints_mapping_back,
                                           merge_aug_poses, oks_nms)
from opera.models import build_detector
from opera.utils import load_config

pytestmark = pytest.mark.usefixtures('single_thread')

TINY_PETR = f'{REPO_ROOT}/tests/configs/tiny_petr.py'
TINY_FLIP = f'{REPO_ROOT}/tests/configs/tiny_petr_flip_test.py'
TINY_H_PETR = f'{REPO_ROOT}/tests/configs/tiny_h_petr.py'
# top, left arm, right arm: a mirror swaps the arms.
THREE = get_keypoint_layout(
    dict(
        name='three',
        keypoint_names=['top', 'left_arm', 'right_arm'],
        sigmas=[0.1, 0.1, 0.1],
        flip_pairs=[[1, 2]],
        skeleton=[[0, 1], [0, 2]]))


def meta(flip, direction='horizontal', img_shape=(100, 200, 3), scale=1.):
    return dict(
        img_shape=img_shape,
        ori_shape=img_shape,
        pad_shape=img_shape,
        scale_factor=np.full(4, scale, np.float32),
        flip=flip,
        flip_direction=direction if flip else None)


def test_mapping_back_mirrors_in_the_image_width_and_swaps_pairs():
    keypoints = torch.tensor([[[50., 20.], [10., 30.], [150., 40.]]])
    index = THREE.flip_index()
    mapped = keypoints_mapping_back(keypoints, meta(True, scale=0.5), index)
    # x -> 200 - x, then left/right swapped, then / 0.5.
    expected = [[[300., 40.], [100., 80.], [380., 60.]]]
    assert mapped.tolist() == expected
    vertical = keypoints_mapping_back(keypoints, meta(True, 'vertical'), index)
    assert vertical.tolist() == [[[50., 80.], [150., 60.], [10., 70.]]]
    diagonal = keypoints_mapping_back(keypoints, meta(True, 'diagonal'), index)
    assert diagonal.tolist() == [[[150., 80.], [190., 70.], [50., 60.]]]
    plain = keypoints_mapping_back(keypoints, meta(False, scale=0.5), index)
    assert plain.tolist() == (keypoints * 2).tolist()
    with pytest.raises(ValueError, match="direction 'sideways'"):
        keypoints_mapping_back(keypoints, meta(True, 'sideways'), index)


def run(scores, keypoints):
    """A head's result of one image: boxes [m, 5] (score column only
    read), labels [m], keypoints [m, K, 3]."""
    keypoints = torch.tensor(keypoints)
    boxes = torch.zeros(len(scores), 5)
    boxes[:, 4] = torch.tensor(scores)
    ones = torch.ones(keypoints.shape[:2] + (1, ))
    return boxes, torch.zeros(len(scores), dtype=torch.long), torch.cat(
        [keypoints, ones], -1)


# Plain run: P1 with box [0, 0, 10, 10], P2 with box [100, 50, 120, 70].
PLAIN = run([.9, .5], [[[5., 0.], [0., 10.], [10., 5.]],
                       [[110., 50.], [100., 70.], [120., 60.]]])
# Flipped run (image width 200): Q1 maps back to [[5, 0], [0, 8], [10, 4]]
# (box [0, 0, 10, 8], IoU 0.8 with P1), Q3 to [[55, 0], [50, 10], [60, 5]].
FLIPPED = run([.8, .7], [[[195., 0.], [190., 4.], [200., 8.]],
                         [[145., 0.], [140., 5.], [150., 10.]]])
MAPPED = {
    'P1': [[5., 0.], [0., 10.], [10., 5.]],
    'P2': [[110., 50.], [100., 70.], [120., 60.]],
    'Q1': [[5., 0.], [0., 8.], [10., 4.]],
    'Q3': [[55., 0.], [50., 10.], [60., 5.]],
}


def merge(nms, max_per_img=10, score_thr=0.):
    test_cfg = dict(max_per_img=max_per_img, score_thr=score_thr, nms=nms)
    return merge_aug_poses([PLAIN, FLIPPED], [meta(False), meta(True)],
                           THREE, test_cfg)


def check_merged(merged, names, scores):
    boxes, labels, keypoints = merged
    expected = torch.tensor([MAPPED[name] for name in names])
    assert torch.equal(keypoints[..., :2], expected)
    assert torch.equal(keypoints[..., 2], torch.ones(len(names), 3))
    assert torch.equal(boxes[:, :2], expected.amin(1))
    assert torch.equal(boxes[:, 2:4], expected.amax(1))
    assert boxes[:, 4].tolist() == pytest.approx(scores, abs=1e-6)
    assert labels.tolist() == [0] * len(names)


def test_merge_with_soft_nms_as_opera():
    # Linear soft-NMS: Q1 overlaps P1 with IoU 80 / 100 > 0.5 -> its score
    # .8 becomes .8 * (1 - .8); the others do not overlap.
    merged = merge(dict(type='soft_nms', iou_threshold=0.5))
    check_merged(merged, ['P1', 'Q3', 'P2', 'Q1'], [.9, .7, .5, .16])
    check_merged(
        merge(dict(type='soft_nms', iou_threshold=0.5), max_per_img=3),
        ['P1', 'Q3', 'P2'], [.9, .7, .5])
    check_merged(
        merge(dict(type='soft_nms', iou_threshold=0.5), score_thr=0.6),
        ['P1', 'Q3', 'Q1'], [.9, .7, .16])


def test_merge_with_hard_nms_drops_the_overlapping_copy():
    check_merged(
        merge(dict(type='nms', iou_threshold=0.5)), ['P1', 'Q3', 'P2'],
        [.9, .7, .5])


def test_merge_with_oks_nms_compares_poses():
    # OKS(Q1 | P1): area 100, (2 * .1)^2 = .04; keypoint 1 is 2 px off,
    # keypoint 2 1 px: e = 4 / 8 and 1 / 8 -> OKS 0.8297. No score decay.
    oks = (1 + np.exp(-0.5) + np.exp(-0.125)) / 3
    check_merged(
        merge(dict(type='oks_nms', oks_thr=oks - 1e-3)), ['P1', 'Q3', 'P2'],
        [.9, .7, .5])
    check_merged(
        merge(dict(type='oks_nms', oks_thr=oks + 1e-3)),
        ['P1', 'Q1', 'Q3', 'P2'], [.9, .8, .7, .5])


def test_oks_nms_keeps_overlapping_persons_that_box_nms_drops():
    # Two persons in one box (a hug): the same rectangle, other keypoints.
    first = [[0., 0.], [100., 100.], [0., 100.]]
    second = [[100., 0.], [0., 100.], [100., 100.]]
    keypoints = torch.tensor([first, second])
    kept = oks_nms(keypoints, torch.tensor([.9, .8]), THREE.sigmas, 0.5)
    assert kept.tolist() == [0, 1]
    boxes, _, _ = merge_aug_poses(
        [run([.9, .8], [first, second])], [meta(False)], THREE,
        dict(max_per_img=10, nms=dict(type='nms', iou_threshold=0.5)))
    assert len(boxes) == 1


def test_merge_needs_an_nms_config():
    with pytest.raises(KeyError, match='set test_cfg.nms'):
        merge_aug_poses([PLAIN], [meta(False)], THREE, dict(max_per_img=5))


def tiny_petr(config=TINY_PETR, **test_cfg):
    cfg = load_config(config, {'model.backbone.init_cfg': None})
    cfg.model.test_cfg.update(test_cfg)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    return model.eval()


def image_and_metas(seed, shape=(64, 96)):
    """A random image, its mirror and their metas (2x resize)."""
    img = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(
        seed))
    h, w = shape
    metas = []
    for flip in (False, True):
        metas.append(
            dict(
                meta(flip, img_shape=(h, w, 3), scale=2.),
                ori_shape=(h // 2, w // 2, 3)))
    return [img, img.flip(-1)], metas


def test_aug_test_is_the_union_of_both_runs_mapped_back():
    # An NMS that suppresses nothing: the result is the top max_per_img of
    # both runs, the flipped one unflipped by the dataset pipeline's
    # flip_keypoints (an independent implementation).
    model = tiny_petr(max_per_img=5, nms=dict(type='nms', iou_threshold=1.))
    (img, mirrored), (plain_meta, flip_meta) = image_and_metas(0)
    with torch.no_grad():
        merged = model.aug_test([img, mirrored], [[plain_meta], [flip_meta]],
                                rescale=True)
        plain = model.simple_test(img, [dict(plain_meta)], rescale=True)[0]
        flipped = model.simple_test(
            mirrored, [dict(flip_meta, flip=False)], rescale=True)[0]
    unflipped = flip_keypoints(flipped[1][0], flip_meta['ori_shape'],
                               COCO.flip_pairs)
    scores = np.concatenate([plain[0][0][:, 4], flipped[0][0][:, 4]])
    keypoints = np.concatenate([plain[1][0], unflipped])
    order = np.argsort(-scores, kind='stable')[:5]
    boxes, kpts = merged[0][0][0], merged[0][1][0]
    assert boxes.shape == (5, 5) and kpts.shape == (5, 17, 3)
    np.testing.assert_allclose(boxes[:, 4], scores[order], atol=1e-6)
    np.testing.assert_allclose(kpts, keypoints[order], atol=1e-4)
    np.testing.assert_allclose(boxes[:, :2], kpts[..., :2].min(1), atol=1e-4)
    # Both runs contribute (the scores of the two runs differ).
    assert 0 < sum(i >= 5 for i in order) < 5


@pytest.mark.parametrize('config', [TINY_PETR, TINY_H_PETR],
                         ids=['petr', 'h_petr'])
def test_batch_of_two_equals_one_by_one_and_forward_routes_to_aug_test(
        config):
    model = tiny_petr(
        config,
        max_per_img=5,
        score_thr=0.,
        nms=dict(type='soft_nms', iou_threshold=0.5))
    inputs = [image_and_metas(seed) for seed in (1, 2)]
    imgs = [torch.cat([x[0][run] for x in inputs]) for run in (0, 1)]
    metas = [[x[1][run] for x in inputs] for run in (0, 1)]
    with torch.no_grad():
        batch = model(
            img=imgs, img_metas=metas, return_loss=False, rescale=True)
        single = [
            model.aug_test(x[0], [[x[1][0]], [x[1][1]]], rescale=True)[0]
            for x in inputs
        ]
    assert len(batch) == 2
    for (boxes, kpts), (boxes1, kpts1) in zip(batch, single):
        np.testing.assert_allclose(boxes[0], boxes1[0], atol=1e-5)
        np.testing.assert_allclose(kpts[0], kpts1[0], atol=1e-4)
        assert len(boxes[0]) == 5


def test_test_py_eval_keypoints_with_a_flip_test_config(tmp_path):
    root = data_path('coco_val_tiny')
    options = {'model.backbone.init_cfg': None}
    for split in ('val', 'test'):
        options[f'data.{split}.ann_file'] = f'{root}/test_coco.json'
        options[f'data.{split}.img_prefix'] = f'{root}/'
    cfg = load_config(TINY_FLIP, options)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    checkpoint = tmp_path / 'tiny.pth'
    save_checkpoint(model, str(checkpoint))
    out = tmp_path / 'flip.pkl'
    done = run_in_repo([
        sys.executable, 'tools/test.py', TINY_FLIP,
        str(checkpoint), '--eval', 'keypoints', '--out',
        str(out), '--cfg-options', 'data.test_dataloader.samples_per_gpu=2',
        *[f'{k}={v}' for k, v in options.items()]
    ])
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r'^keypoints_mAP: [\d.]+$', done.stdout, re.M)
    with open(out, 'rb') as f:
        saved = pickle.load(f)

    # In process: the data loader gives both runs, the model merges them.
    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    loader = build_dataloader(dataset, 2, 0, dist=False, shuffle=False)
    assert len(next(iter(loader))['img']) == 2  # image and its flip
    with contextlib.redirect_stdout(io.StringIO()):
        results = single_gpu_test(MMDataParallel(model.eval()), loader)
    assert len(saved) == len(results) == 4
    for (boxes, kpts), (boxes_ref, kpts_ref) in zip(saved, results):
        assert kpts[0].shape == (5, 17, 3)
        np.testing.assert_allclose(boxes[0], boxes_ref[0], atol=1e-4)
        np.testing.assert_allclose(kpts[0], kpts_ref[0], atol=1e-3)
