"""Your own keypoints and your own classes by config alone
(docs/custom_datasets.md), and OCHuman's COCO-format files."""
import contextlib
import importlib.util
import io
import json

import numpy as np
import pytest
import torch
from mmcv.parallel import MMDataParallel
from mmdet.datasets import (ConcatDataset, RepeatDataset, build_dataloader,
                            build_dataset)
from pycocotools import mask as mask_utils

from conftest import (REPO_ROOT, data_path, subset_annotations,
                      train_iterations)

import opera  # noqa: F401
from opera.apis import single_gpu_test
from opera.core.keypoint import COCO
from opera.models import build_detector
from opera.utils import load_config

pytestmark = pytest.mark.usefixtures('single_thread')

FIVE_CONFIG = f'{REPO_ROOT}/tests/configs/tiny_petr_5_keypoints.py'
THREE_CLASSES_CONFIG = f'{REPO_ROOT}/tests/configs/tiny_detr_3_classes.py'
# coco_mini images with one large person each (16 and 15 COCO keypoints).
PERSON_IMAGES = (463557, 535506)
# The 5 keypoints of the config, taken from COCO's nose, wrists, ankles.
FROM_COCO = [0, 9, 10, 15, 16]
NAMES = ['head', 'left_hand', 'right_hand', 'left_foot', 'right_foot']
SIGMAS = np.array([0.05, 0.06, 0.06, 0.08, 0.08])
# person, car and dog boxes (and others) on 4 images.
DETECTION_IMAGES = (790, 30752, 125870, 231460)


def five_keypoint_json(path):
    """coco_mini persons of PERSON_IMAGES with 5 keypoints each."""
    root = data_path('coco_mini')
    with open(f'{root}/annotations/person_keypoints_train2017.json') as f:
        coco = json.load(f)
    annotations = []
    for ann in coco['annotations']:
        if ann['image_id'] not in PERSON_IMAGES:
            continue
        kpts = np.array(ann['keypoints']).reshape(17, 3)[FROM_COCO]
        annotations.append(
            dict(
                ann,
                keypoints=kpts.reshape(-1).tolist(),
                num_keypoints=int((kpts[:, 2] > 0).sum())))
    data = dict(
        images=[im for im in coco['images'] if im['id'] in PERSON_IMAGES],
        annotations=annotations,
        categories=[
            dict(
                id=1,
                name='person',
                supercategory='person',
                keypoints=NAMES,
                skeleton=[[1, 2], [1, 3], [1, 4], [1, 5]])
        ])
    with open(path, 'w') as f:
        json.dump(data, f)
    return data


@pytest.fixture(scope='module')
def five(tmp_path_factory):
    """The config pointed at a 5-keypoint json written from coco_mini."""
    tmp_dir = tmp_path_factory.mktemp('limbs5')
    data = five_keypoint_json(tmp_dir / 'limbs5.json')
    options = {}
    for split in ('train', 'val', 'test'):
        options[f'data.{split}.ann_file'] = str(tmp_dir / 'limbs5.json')
        options[f'data.{split}.img_prefix'] = (
            data_path('coco_mini') + '/train2017/')
    return dict(cfg=load_config(FIVE_CONFIG, options), data=data)


def test_own_layout_reaches_the_dataset_and_the_model(five):
    dataset = build_dataset(five['cfg'].data.test, dict(test_mode=True))
    assert dataset.num_keypoints == 5
    assert dataset.keypoint_names == tuple(NAMES)
    np.testing.assert_array_equal(dataset.sigmas, SIGMAS)
    assert dataset.flip_pairs == [[1, 2], [3, 4]]
    info = dataset.get_ann_info(0)
    assert info['keypoints'].shape == (len(info['bboxes']), 5, 3)
    head = build_detector(five['cfg'].model).bbox_head
    assert head.num_keypoints == 5 and head.fc_hm.out_features == 5
    assert head.criterion.loss_oks.sigmas == tuple(SIGMAS)
    assert head.criterion.assigner.oks_cost.sigmas == tuple(SIGMAS)


def test_flipping_swaps_the_own_pairs(five):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='opera.LoadAnnotations', with_bbox=True, with_keypoint=True,
             with_area=True),
        dict(type='opera.RandomFlip', flip_ratio=1.0),
    ]
    flipped = build_dataset(dict(five['cfg'].data.train, pipeline=pipeline))
    plain = build_dataset(dict(five['cfg'].data.train, pipeline=pipeline[:2]))
    for i in range(len(plain)):
        before, after = plain[i], flipped[i]
        width = before['img_shape'][1]
        kpts, mirrored = before['gt_keypoints'], after['gt_keypoints']
        for left, right in ((1, 2), (3, 4), (2, 1), (4, 3)):
            labelled = kpts[:, right, 2] > 0
            np.testing.assert_allclose(mirrored[labelled, left, 0],
                                       width - kpts[labelled, right, 0])
            np.testing.assert_allclose(mirrored[labelled, left, 1:],
                                       kpts[labelled, right, 1:])
        labelled = kpts[:, 0, 2] > 0
        np.testing.assert_allclose(mirrored[labelled, 0, 0],
                                   width - kpts[labelled, 0, 0])


def test_tiny_petr_trains_on_the_own_keypoints(five):
    torch.manual_seed(0)
    model = build_detector(five['cfg'].model)
    model.init_weights()
    history = train_iterations(model, five['cfg'], 3, ('cls', 'kpt', 'oks'))
    assert len(history) == 3
    assert all(np.isfinite(step['one2one']) for step in history)
    dataset = build_dataset(five['cfg'].data.test, dict(test_mode=True))
    loader = build_dataloader(dataset, 2, 0, dist=False, shuffle=False)
    with contextlib.redirect_stdout(io.StringIO()):
        results = single_gpu_test(MMDataParallel(model.eval()), loader)
        metrics = dataset.evaluate(results, metric='keypoints')
    assert results[0][1][0].shape == (5, 5, 3)  # max_per_img x K x 3
    assert 0 <= metrics['keypoints_mAP'] <= 1


def ground_truth_results(dataset, data, shift=None):
    """The dataset's own persons as results; ``shift(ann)`` [K] moves every
    keypoint of a person right by that many pixels."""
    results = []
    for img_id in dataset.img_ids:
        anns = [
            a for a in data['annotations']
            if a['image_id'] == img_id and a['num_keypoints'] > 0
            and not a['iscrowd']
        ]
        kpts = np.array([a['keypoints'] for a in anns],
                        np.float32).reshape(-1, dataset.num_keypoints, 3)
        if shift is not None:
            kpts[..., 0] += np.array([shift(a) for a in anns]).reshape(
                kpts.shape[:2])
        kpts[..., 2] = 1
        boxes = np.array([a['bbox'] + [1.] for a in anns],
                         np.float32).reshape(-1, 5)
        boxes[:, 2:4] += boxes[:, :2]
        results.append(([boxes], [kpts]))
    return results


def keypoints_ap(dataset, results):
    with contextlib.redirect_stdout(io.StringIO()):
        return dataset.evaluate(results, metric='keypoints')['keypoints_mAP']


def test_keypoint_ap_uses_the_own_sigmas(five):
    dataset = build_dataset(five['cfg'].data.test, dict(test_mode=True))
    data = five['data']
    assert keypoints_ap(dataset, ground_truth_results(dataset, data)) == 1.0
    # A shift of 2 sigma_k sqrt(area) puts every keypoint at e = 1/2:
    # OKS = exp(-1/2) = 0.607 for every person, a match at the OKS
    # thresholds 0.50, 0.55, 0.60 of ten -> AP 0.3 with these sigmas only.
    shifted = ground_truth_results(
        dataset, data, lambda ann: 2 * SIGMAS * np.sqrt(ann['area']))
    assert keypoints_ap(dataset, shifted) == pytest.approx(0.3, abs=1e-6)


# COCO's keypoints with every sigma doubled: a layout of its own.
WIDE = dict(
    COCO.to_dict(), name='coco_wide', sigmas=[2 * s for s in COCO.sigmas])


@pytest.mark.parametrize('dataset_type', [
    'opera.CocoPoseDataset', 'opera.CrowdPoseDataset', 'opera.OCHumanDataset'
])
def test_keypoint_facts_as_dataset_arguments_are_refused(dataset_type):
    """Only a layout states sigmas, flip pairs, ...: an argument beside it
    would be a second source the model is not checked against."""
    for key in ('sigmas', 'flip_pairs', 'skeleton', 'keypoint_names'):
        with pytest.raises(TypeError) as error:
            build_dataset(
                dict(type=dataset_type, ann_file='persons.json', pipeline=[],
                     **{key: [0.05]}))
        message = str(error.value)
        assert f"(ann_file='persons.json') takes no {key}: " in message
        assert "print(opera.core.keypoint.get_keypoint_layout('" in message
        assert 'keypoint_layout= to the datasets and to model.bbox_head' in (
            message)


@pytest.fixture(scope='module')
def coco_persons(tmp_path_factory):
    """coco_mini's persons of PERSON_IMAGES, 17 COCO keypoints: the json
    data and datasets of the plain and the wide layout."""
    ann_file = str(tmp_path_factory.mktemp('persons') / 'persons.json')
    subset_annotations(
        data_path('coco_mini') + '/annotations/person_keypoints_train2017'
        '.json', set(PERSON_IMAGES), ann_file)
    with open(ann_file) as f:
        data = json.load(f)
    datasets = {
        name: build_dataset(
            dict(type='opera.CocoPoseDataset', keypoint_layout=layout,
                 ann_file=ann_file, pipeline=[],
                 img_prefix=data_path('coco_mini') + '/train2017/'),
            dict(test_mode=True))
        for name, layout in (('coco', 'coco'), ('wide', WIDE))
    }
    return dict(data=data, **datasets)


def test_keypoint_ap_uses_the_sigmas_of_the_dataset_layout(coco_persons):
    data, plain, wide = (coco_persons[k] for k in ('data', 'coco', 'wide'))
    np.testing.assert_array_equal(wide.sigmas, 2 * plain.sigmas)
    # Every labelled keypoint moved by 2 sigma_wide sqrt(area): with the
    # wide sigmas e = 1/2, OKS = exp(-1/2) = 0.607 (a match at the OKS
    # thresholds 0.50, 0.55, 0.60 of ten -> AP 0.3); with COCO's half as
    # large sigmas e = 2, OKS = exp(-2) = 0.135 (no match -> AP 0).
    shifted = ground_truth_results(
        wide, data, lambda ann: 2 * wide.sigmas * np.sqrt(ann['area']))
    assert keypoints_ap(wide, shifted) == pytest.approx(0.3, abs=1e-6)
    assert keypoints_ap(plain, shifted) == 0.0
    assert keypoints_ap(wide, ground_truth_results(wide, data)) == 1.0


def test_training_check_compares_the_dataset_layout(coco_persons):
    from opera.apis.train import check_keypoint_layout
    cfg = load_config(f'{REPO_ROOT}/tests/configs/tiny_petr.py')
    plain_model = build_detector(cfg.model)
    with pytest.raises(ValueError, match="layout 'coco_wide' .*"
                       "keypoint_layout 'coco' .*differ in sigmas"):
        check_keypoint_layout(plain_model, coco_persons['wide'], 'training')
    check_keypoint_layout(plain_model, coco_persons['coco'], 'training')
    # Inside wrappers too (the CrowdPose config trains on a concatenation).
    wrapped = RepeatDataset(
        ConcatDataset([coco_persons['coco'], coco_persons['wide']]), 2)
    with pytest.raises(ValueError, match="layout 'coco_wide'"):
        check_keypoint_layout(plain_model, wrapped, 'training')
    cfg.model.bbox_head.keypoint_layout = WIDE
    wide_model = build_detector(cfg.model)
    # Sigmas are no parameters: a 'coco' checkpoint loads into this model.
    assert ({k: v.shape for k, v in wide_model.state_dict().items()} ==
            {k: v.shape for k, v in plain_model.state_dict().items()})
    assert wide_model.bbox_head.criterion.loss_oks.sigmas == tuple(
        WIDE['sigmas'])
    check_keypoint_layout(wide_model, coco_persons['wide'], 'training')
    with pytest.raises(ValueError, match="layout 'coco' .*keypoint_layout "
                       "'coco_wide' .*differ in sigmas"):
        check_keypoint_layout(wide_model, coco_persons['coco'], 'validation')


def test_test_py_refuses_a_model_of_another_layout(coco_persons):
    """tools/test.py checks the layouts as training does, before it reads
    the checkpoint (here a missing file, never reached)."""
    spec = importlib.util.spec_from_file_location(
        'test_py', f'{REPO_ROOT}/tools/test.py')
    test_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_py)
    cfg = load_config(f'{REPO_ROOT}/tests/configs/tiny_petr.py')
    with pytest.raises(ValueError, match=r"the test dataset \(.*persons"
                       r"\.json\) has keypoint layout 'coco_wide'"):
        test_py.load_model(cfg, 'missing.pth', coco_persons['wide'])


def test_three_coco_classes_train_and_evaluate(tmp_path):
    root = data_path('coco_mini')
    ann_file = tmp_path / 'subset.json'
    subset_annotations(f'{root}/annotations/instances_train2017.json',
                       set(DETECTION_IMAGES), ann_file)
    options = {'data_root': root + '/'}
    for split in ('train', 'val', 'test'):
        options[f'data.{split}.ann_file'] = str(ann_file)
    cfg = load_config(THREE_CLASSES_CONFIG, options)
    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    assert dataset.CLASSES == ('person', 'car', 'dog')
    names = {c['id']: c['name'] for c in dataset.coco.dataset['categories']}
    assert [names[i] for i in dataset.cat_ids] == ['person', 'car', 'dog']

    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    history = train_iterations(model, cfg, 2, ('cls', 'bbox', 'iou'))
    assert all(np.isfinite(step['one2one']) for step in history)
    loader = build_dataloader(dataset, 2, 0, dist=False, shuffle=False)
    with contextlib.redirect_stdout(io.StringIO()):
        results = single_gpu_test(MMDataParallel(model.eval()), loader)
        metrics = dataset.evaluate(results, metric='bbox')
    assert len(results) == len(DETECTION_IMAGES)
    assert [len(r) for r in results] == [3] * len(DETECTION_IMAGES)
    assert 0 <= metrics['bbox_mAP'] <= 1

    # Ground truth of the 3 classes fed back: AP 1 (labels follow CLASSES).
    truth = []
    for i in range(len(dataset)):
        info = dataset.get_ann_info(i)
        truth.append([
            np.hstack([
                info['bboxes'][info['labels'] == label],
                np.ones((int((info['labels'] == label).sum()), 1))
            ]).astype(np.float32) for label in range(3)
        ])
    with contextlib.redirect_stdout(io.StringIO()):
        assert dataset.evaluate(truth, metric='bbox')['bbox_mAP'] == 1.0


def ochuman_json(path):
    """coco_mini persons of PERSON_IMAGES in OCHuman's COCO format: float
    keypoints, an RLE segmentation and an area per person."""
    root = data_path('coco_mini')
    with open(f'{root}/annotations/person_keypoints_train2017.json') as f:
        coco = json.load(f)
    images = [im for im in coco['images'] if im['id'] in PERSON_IMAGES]
    sizes = {im['id']: (im['height'], im['width']) for im in images}
    annotations = []
    for i, ann in enumerate(
            a for a in coco['annotations']
            if a['image_id'] in PERSON_IMAGES and a['num_keypoints'] > 0):
        height, width = sizes[ann['image_id']]
        x, y, w, h = ann['bbox']
        polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        rle = mask_utils.frPyObjects([polygon], height, width)[0]
        rle['counts'] = rle['counts'].decode()
        kpts = np.array(ann['keypoints'], np.float64).reshape(17, 3)
        kpts[kpts[:, 2] > 0, :2] += 0.25  # OCHuman's are not integers
        annotations.append(
            dict(
                id=i + 1,
                image_id=ann['image_id'],
                category_id=1,
                iscrowd=0,
                bbox=ann['bbox'],
                area=float(mask_utils.area(rle)),
                segmentation=rle,
                num_keypoints=ann['num_keypoints'],
                keypoints=kpts.reshape(-1).tolist()))
    data = dict(
        categories=[dict(coco['categories'][0])],
        images=[
            dict(file_name=im['file_name'], width=im['width'],
                 height=im['height'], id=im['id']) for im in images
        ],
        annotations=annotations)
    with open(path, 'w') as f:
        json.dump(data, f)
    return data


def test_ochuman_loads_and_ground_truth_gives_ap_one(tmp_path):
    cfg = load_config(f'{REPO_ROOT}/configs/petr/'
                      'petr_r50_16x2_100e_coco_eval_ochuman_val.py')
    data = ochuman_json(tmp_path / 'ochuman_val.json')
    dataset = build_dataset(
        dict(
            cfg.data.test,
            ann_file=str(tmp_path / 'ochuman_val.json'),
            img_prefix=data_path('coco_mini') + '/train2017/'),
        dict(test_mode=True))
    assert type(dataset).__name__ == 'OCHumanDataset'
    assert dataset.num_keypoints == 17 and dataset.sigmas[0] == 0.026
    infos = [dataset.get_ann_info(i) for i in range(len(dataset))]
    assert sum(len(info['bboxes']) for info in infos) == len(
        data['annotations'])
    first = next(a for a in data['annotations']
                 if a['image_id'] == dataset.img_ids[0])
    np.testing.assert_allclose(infos[0]['keypoints'][0].reshape(-1),
                               first['keypoints'], rtol=1e-6)
    assert infos[0]['areas'][0] == pytest.approx(first['area'])
    assert keypoints_ap(dataset, ground_truth_results(dataset, data)) == 1.0
