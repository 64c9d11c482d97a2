"""CocoPoseDataset / CrowdPoseDataset annotation loading on real data."""
import json
from collections import Counter

import numpy as np
import pytest
from mmdet.datasets import build_dataset

from conftest import data_path

import opera  # noqa: F401  (registers modules)
from opera.core.keypoint import COCO
from opera.datasets import CocoPoseDataset, CrowdPoseDataset


def load_json(path):
    with open(path) as f:
        return json.load(f)


def coco_mini_keypoints():
    return data_path('coco_mini', 'annotations',
                     'person_keypoints_train2017.json')


def build_coco_mini(**kwargs):
    return build_dataset(
        dict(
            type='opera.CocoPoseDataset',
            ann_file=coco_mini_keypoints(),
            img_prefix=data_path('coco_mini', 'train2017'),
            pipeline=[],
            **kwargs))


def test_coco_mini_counts_skip_unposed_and_ignore_crowd():
    anns = load_json(coco_mini_keypoints())['annotations']
    posed = Counter(a['image_id'] for a in anns
                    if a['num_keypoints'] > 0 and not a['iscrowd'])
    crowd = Counter(a['image_id'] for a in anns if a['iscrowd'])
    # Persons without keypoints exist and must not become targets.
    assert any(a['num_keypoints'] == 0 and not a['iscrowd'] for a in anns)

    dataset = build_coco_mini()
    assert isinstance(dataset, CocoPoseDataset)
    assert sorted(dataset.img_ids) == sorted(posed)
    assert len(dataset) == 28
    for idx, img_id in enumerate(dataset.img_ids):
        ann = dataset.get_ann_info(idx)
        assert len(ann['bboxes']) == posed[img_id]
        assert len(ann['bboxes_ignore']) == crowd[img_id]
    total = sum(len(dataset.get_ann_info(i)['bboxes'])
                for i in range(len(dataset)))
    ignored = sum(len(dataset.get_ann_info(i)['bboxes_ignore'])
                  for i in range(len(dataset)))
    assert (total, ignored) == (86, 5)


def test_coco_mini_arrays_shapes_and_values():
    dataset = build_coco_mini()
    ann_by_id = {
        a['id']: a
        for a in load_json(coco_mini_keypoints())['annotations']
    }
    idx = 0
    info = dataset.get_ann_info(idx)
    n = len(info['bboxes'])
    assert info['bboxes'].shape == (n, 4)
    assert info['bboxes'].dtype == np.float32
    assert info['labels'].dtype == np.int64 and (info['labels'] == 0).all()
    assert info['keypoints'].shape == (n, 17, 3)
    assert info['keypoints'].dtype == np.float32
    assert info['areas'].shape == (n, ) and info['areas'].dtype == np.float32
    assert info['bboxes_ignore'].shape[1] == 4

    img_id = dataset.img_ids[idx]
    raw = [
        a for a in ann_by_id.values()
        if a['image_id'] == img_id and a['num_keypoints'] > 0
        and not a['iscrowd']
    ]
    raw_xywh = np.array([a['bbox'] for a in raw])
    top_left, size = raw_xywh[:, :2], raw_xywh[:, 2:]
    raw_xyxy = np.concatenate([top_left, top_left + size], axis=1)
    np.testing.assert_allclose(info['bboxes'], raw_xyxy, rtol=1e-6)
    np.testing.assert_allclose(
        info['keypoints'],
        np.array([a['keypoints'] for a in raw]).reshape(-1, 17, 3))
    np.testing.assert_allclose(info['areas'], [a['area'] for a in raw],
                               rtol=1e-6)


def test_test_mode_keeps_every_image():
    assert len(build_coco_mini(test_mode=True)) == 80


def test_pose_attributes_and_pre_pipeline():
    dataset = build_coco_mini()
    assert dataset.CLASSES == ('person', )
    assert dataset.num_keypoints == 17
    assert len(dataset.sigmas) == 17 and dataset.sigmas[0] == 0.026
    assert dataset.flip_pairs[0] == [1, 2] and len(dataset.flip_pairs) == 8
    names = dataset.keypoint_names
    for left, right in dataset.flip_pairs:
        assert names[left].replace('left', 'right') == names[right]
    results = {}
    dataset.pre_pipeline(results)
    assert results['keypoint_fields'] == [] and results['area_fields'] == []
    assert results['flip_pairs'] == dataset.flip_pairs


def test_bad_flip_pairs_are_rejected():
    with pytest.raises(ValueError, match='out of range'):
        build_coco_mini(keypoint_layout=dict(
            COCO.to_dict(), name='coco_bad', flip_pairs=[[1, 17]]))


def test_crowdpose_tiny_loads_14_keypoints():
    ann_file = data_path('crowdpose_tiny', 'test_crowdpose.json')
    dataset = CrowdPoseDataset(
        ann_file=ann_file,
        img_prefix=data_path('crowdpose_tiny'),
        pipeline=[])
    raw = load_json(ann_file)['annotations']
    expected = sum(a['num_keypoints'] > 0 and not a['iscrowd'] for a in raw)
    assert dataset.num_keypoints == 14 and len(dataset.flip_pairs) == 6
    infos = [dataset.get_ann_info(i) for i in range(len(dataset))]
    assert sum(len(info['bboxes']) for info in infos) == expected
    for info in infos:
        assert info['keypoints'].shape == (len(info['bboxes']), 14, 3)
        widths = info['bboxes'][:, 2] - info['bboxes'][:, 0]
        heights = info['bboxes'][:, 3] - info['bboxes'][:, 1]
        # CrowdPose has no 'area': the box area stands in.
        np.testing.assert_allclose(info['areas'], widths * heights,
                                   rtol=1e-4)
