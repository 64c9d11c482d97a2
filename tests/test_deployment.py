"""ONNX export of the one-to-one inference graph and the ONNX Runtime
backend: same results as PyTorch on real images, any batch size, the same
AP through tools/test.py, clear errors for wrong files.

Tiny random-init models (tests/configs/) exported at 256 x 320; the images
are two of tests/data/coco_val_tiny through the config's test pipeline
resized to that size.
"""
import importlib.util
import json
import logging
import os
import re
import shutil
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmcv.runner import save_checkpoint

from conftest import REPO_ROOT, data_path, load_tool, run_in_repo

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from opera.apis import (InferenceGraph, ONNXRuntimeDetector,  # noqa: E402
                        export_onnx, graph_results, init_model, prepare_batch)
from opera.apis.onnx_backend import fixed_size_pipeline  # noqa: E402
from opera.core.visualization import split_result  # noqa: E402

pytestmark = pytest.mark.usefixtures('single_thread')

CONFIGS = dict(
    detection=f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py',
    pose=f'{REPO_ROOT}/tests/configs/tiny_petr.py')
INPUT_SIZE = (256, 320)
IMAGES = ('000000000785.jpg', '000000040083.jpg')
# Tolerances of the issue: boxes and keypoints in pixels, scores.
BOX_TOL, SCORE_TOL, KEYPOINT_TOL = 1e-3, 1e-4, 1e-3
PERSON_AREA = 64. * 64.


def build(kind, **cfg_options):
    """A seeded random-init model with its test pipeline fixed to
    INPUT_SIZE."""
    torch.manual_seed(0)
    model = init_model(CONFIGS[kind], None, 'cpu', cfg_options or None)
    model.cfg.data.test.pipeline = fixed_size_pipeline(
        model.cfg.data.test.pipeline, INPUT_SIZE)
    return model


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """kind -> (model, .onnx path), both kinds exported once."""
    folder = tmp_path_factory.mktemp('onnx')
    models = {}
    for kind in CONFIGS:
        model = build(kind)
        path = str(folder / f'{kind}.onnx')
        export_onnx(model, path, INPUT_SIZE, config=CONFIGS[kind])
        models[kind] = (model, path)
    return models


def real_batch(model):
    images = [data_path('coco_val_tiny', name) for name in IMAGES]
    return prepare_batch(model.cfg, images)


def pytorch_results(model, img, img_metas):
    with torch.no_grad():
        return model(
            return_loss=False, rescale=True, img=[img], img_metas=[img_metas])


def assert_results_close(ours, theirs):
    """Same detections (or persons) in the same order, within the
    tolerances, per image."""
    assert len(ours) == len(theirs)
    for result, other in zip(ours, theirs):
        (boxes, labels, kpts), (boxes_2, labels_2, kpts_2) = (
            split_result(result), split_result(other))
        assert len(boxes) > 0
        np.testing.assert_array_equal(labels, labels_2)
        np.testing.assert_allclose(boxes[:, :4], boxes_2[:, :4], rtol=0,
                                   atol=BOX_TOL)
        np.testing.assert_allclose(boxes[:, 4], boxes_2[:, 4], rtol=0,
                                   atol=SCORE_TOL)
        if kpts is not None:
            np.testing.assert_allclose(kpts, kpts_2, rtol=0,
                                       atol=KEYPOINT_TOL)


@pytest.mark.parametrize('kind', ['detection', 'pose'])
def test_pipeline_gives_the_export_size(exported, kind):
    model, _ = exported[kind]
    img, img_metas = real_batch(model)
    assert img.shape == (2, 3, *INPUT_SIZE)
    for meta in img_metas:
        assert meta['img_shape'][:2] == INPUT_SIZE
        # Real images of other sizes: the boxes go back through the scale.
        assert meta['ori_shape'][:2] != INPUT_SIZE


@pytest.mark.parametrize('kind', ['detection', 'pose'])
def test_graph_and_shared_postprocessing_are_the_pytorch_path(
        exported, kind):
    """InferenceGraph + graph_results (what the ONNX backend runs around
    ONNX Runtime) give exactly the detector's own simple_test."""
    model, _ = exported[kind]
    img, img_metas = real_batch(model)
    with torch.no_grad():
        outputs = InferenceGraph(model)(img)
    ours = graph_results(model, outputs, img_metas, rescale=True)
    for result, other in zip(ours, pytorch_results(model, img, img_metas)):
        for a, b in zip(split_result(result), split_result(other)):
            if a is not None:
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('kind', ['detection', 'pose'])
def test_onnxruntime_matches_pytorch_on_real_images(exported, kind):
    model, path = exported[kind]
    img, img_metas = real_batch(model)
    runtime = ONNXRuntimeDetector(path, model)
    with torch.no_grad():
        onnx_results = runtime(
            return_loss=False, rescale=True, img=[img], img_metas=[img_metas])
    assert_results_close(onnx_results, pytorch_results(model, img, img_metas))
    # The raw graph outputs too (every query for detection).
    with torch.no_grad():
        torch_outputs = InferenceGraph(model)(img)
    for name, ours, theirs in zip(runtime.output_names, runtime.run_graph(img),
                                  torch_outputs):
        assert ours.shape == tuple(theirs.shape), name
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-4,
                                   err_msg=name)


@pytest.mark.parametrize('kind', ['detection', 'pose'])
def test_batch_of_two_equals_one_by_one(exported, kind):
    model, path = exported[kind]
    img, img_metas = real_batch(model)
    runtime = ONNXRuntimeDetector(path, model)
    batched = runtime.simple_test(img, img_metas, rescale=True)
    single = [
        runtime.simple_test(img[i:i + 1], img_metas[i:i + 1], rescale=True)[0]
        for i in range(2)
    ]
    assert_results_close(batched, single)
    # The two images differ, so batching did not copy one into the other.
    assert not np.allclose(
        split_result(batched[0])[0], split_result(batched[1])[0])


def test_export_needs_gridsample_opset(exported, tmp_path):
    model, _ = exported['detection']
    with pytest.raises(ValueError, match='opset 15 has no GridSample'):
        export_onnx(model, str(tmp_path / 'old.onnx'), INPUT_SIZE, opset=15)


def test_missing_corrupt_and_foreign_files_fail_clearly(exported, tmp_path):
    model, path = exported['detection']
    missing = tmp_path / 'nowhere.onnx'
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ONNXRuntimeDetector(str(missing), model)

    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(open(path, 'rb').read()[:5000])
    with pytest.raises(ValueError,
                       match=re.escape(str(corrupt)) + '.*not a readable'):
        ONNXRuntimeDetector(str(corrupt), model)

    pose_model, pose_path = exported['pose']
    with pytest.raises(ValueError, match='exported from another model') as e:
        ONNXRuntimeDetector(pose_path, model)
    message = str(e.value)
    assert pose_path in message and 'tiny_petr.py' in message
    assert 'kind pose in the file, detection in the config' in message

    # Same architecture family, other number of classes / queries.
    other = build('detection', **{'model.bbox_head.num_classes': 1})
    with pytest.raises(ValueError, match='num_classes 80 in the file, 1 in'):
        ONNXRuntimeDetector(path, other)
    fewer = build('pose', **{'model.test_cfg.max_per_img': 3})
    with pytest.raises(ValueError, match='max_per_img 5 in the file, 3 in'):
        ONNXRuntimeDetector(pose_path, fewer)


def test_wrong_input_size_fails_clearly(exported):
    model, path = exported['detection']
    runtime = ONNXRuntimeDetector(path, model)
    with pytest.raises(ValueError, match=r'takes 256x320 images, got \(256, '
                       r'352\)'):
        runtime.run_graph(torch.zeros(1, 3, 256, 352))


# tools/test.py with both backends ------------------------------------------


def write_ground_truth(model, kind, out_file):
    """An annotation file of the two images whose ground truth is the
    PyTorch model's 5 best detections (persons): AP far from 0, and it moves
    with any change of the ONNX results."""
    img, img_metas = real_batch(model)
    results = pytorch_results(model, img, img_metas)
    coco = mmcv.load(
        data_path('coco_mini', 'annotations', 'instances_train2017.json'))
    categories = coco['categories'] if kind == 'detection' else [
        dict(id=1, name='person', supercategory='person')
    ]
    images, annotations = [], []
    for img_id, (meta, result) in enumerate(zip(img_metas, results), 1):
        height, width = meta['ori_shape'][:2]
        images.append(
            dict(
                id=img_id,
                file_name=meta['ori_filename'],
                height=height,
                width=width))
        boxes, labels, keypoints = split_result(result)
        for rank in np.argsort(-boxes[:, 4])[:5]:
            x1, y1, x2, y2 = (float(v) for v in boxes[rank, :4])
            ann = dict(
                id=len(annotations) + 1,
                image_id=img_id,
                category_id=categories[labels[rank]]['id'],
                bbox=[x1, y1, x2 - x1, y2 - y1],
                area=(x2 - x1) * (y2 - y1),
                iscrowd=0)
            if keypoints is not None:
                kpts = keypoints[rank].copy()
                kpts[:, 2] = 2
                # OKS scale: a random-init model puts all keypoints of a
                # person on one point (box area 0, OKS undefined).
                ann.update(
                    keypoints=[float(v) for v in kpts.reshape(-1)],
                    num_keypoints=len(kpts),
                    area=PERSON_AREA)
            annotations.append(ann)
    with open(out_file, 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=categories), f)


def fixed_size_config(kind, ann_file, out_file):
    """A config file: the tiny config on the two images, its test pipeline
    at INPUT_SIZE (what the ONNX backend uses), 2 images per batch."""
    image_dir = data_path('coco_val_tiny')
    dataset = 'opera.CocoPoseDataset' if kind == 'pose' else 'CocoDataset'
    cfg = mmcv.Config.fromfile(CONFIGS[kind])
    pipeline = fixed_size_pipeline(cfg.data.test.pipeline, INPUT_SIZE)
    out_file.write_text(f'_base_ = [{CONFIGS[kind]!r}]\n'
                        f'data = dict(samples_per_gpu=2, workers_per_gpu=0, '
                        f'test=dict(type={dataset!r}, ann_file={ann_file!r}, '
                        f'img_prefix={image_dir + "/"!r}, '
                        f'pipeline={pipeline!r}))\n')
    return str(out_file)


def metric_lines(stdout, metric):
    lines = re.findall(rf'^{metric}_mAP\w*: .*$', stdout, re.MULTILINE)
    assert lines, f'no {metric}_mAP in output:\n{stdout[-3000:]}'
    return lines


@pytest.mark.parametrize('kind,metric', [('detection', 'bbox'),
                                         ('pose', 'keypoints')])
def test_tools_test_gives_the_same_ap_with_both_backends(
        exported, tmp_path, kind, metric):
    model, onnx_file = exported[kind]
    checkpoint = str(tmp_path / 'model.pth')
    save_checkpoint(model, checkpoint)
    ann_file = str(tmp_path / 'gt.json')
    write_ground_truth(model, kind, ann_file)
    config = fixed_size_config(kind, ann_file, tmp_path / 'config.py')
    outputs = {}
    for backend, weights in (('pytorch', checkpoint),
                             ('onnxruntime', onnx_file)):
        out = str(tmp_path / f'{backend}.pkl')
        proc = run_in_repo([
            sys.executable, 'tools/test.py', config, weights, '--backend',
            backend, '--eval', metric, '--out', out
        ])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        outputs[backend] = (metric_lines(proc.stdout, metric), mmcv.load(out))
    (torch_ap, torch_results), (onnx_ap, onnx_results) = (
        outputs['pytorch'], outputs['onnxruntime'])
    assert onnx_ap == torch_ap
    mean_ap = float(torch_ap[0].split(': ')[1])
    assert mean_ap > 0.3, torch_ap
    assert_results_close(onnx_results, torch_results)


def test_pytorch2onnx_cli_exports_and_verifies(tmp_path):
    out = tmp_path / 'petr.onnx'
    proc = run_in_repo([
        sys.executable, 'tools/deployment/pytorch2onnx.py', CONFIGS['pose'],
        '--out',
        str(out), '--input-size', '128', '160', '--verify', '--image',
        data_path('coco_val_tiny', IMAGES[0])
    ])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert 'input img [batch, 3, 128, 160]' in proc.stdout
    assert 'outputs scores, labels, keypoints' in proc.stdout
    differences = {}
    for batch in ('1', '2'):
        block = proc.stdout.split(f'batch of {batch}:')[1].split('batch of')[0]
        differences[batch] = dict(
            re.findall(r'^  (.+?) +([-0-9.e]+)$', block, re.MULTILINE))
        assert float(differences[batch]['final keypoints (px)']) < KEYPOINT_TOL
        assert float(differences[batch]['final scores']) < SCORE_TOL
    assert set(differences['2']) == {
        'scores', 'labels', 'keypoints', 'final boxes (px)', 'final scores',
        'final keypoints (px)'
    }


def test_onnx_is_imported_only_when_asked_for():
    proc = run_in_repo([
        sys.executable, '-c', 'import sys; import opera.apis; '
        'from opera.apis import init_model; '
        f'init_model({CONFIGS["detection"]!r}); '
        'print(sorted(m for m in ("onnx", "onnxruntime") '
        'if m in sys.modules))'
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == '[]'


def test_image_demo_draws_with_onnxruntime(exported, tmp_path):
    _, path = exported['pose']
    spec = importlib.util.spec_from_file_location(
        'image_demo', f'{REPO_ROOT}/demo/image_demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    image_file = data_path('coco_val_tiny', IMAGES[1])
    out = demo.main([
        image_file, CONFIGS['pose'], path, '--backend', 'onnxruntime',
        '--score-thr', '0', '--kpt-score-thr', '0', '--out-file',
        str(tmp_path / 'drawn.png')
    ])
    image, drawn = mmcv.imread(image_file), mmcv.imread(out)
    # Drawn at the original size, with the 5 persons on it.
    assert drawn.shape == image.shape
    assert (drawn != image).any(-1).mean() > 0.001


def test_fixed_size_pipeline_needs_a_resize_step():
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Normalize')]
    with pytest.raises(ValueError, match='no Resize step .* 256x320'):
        fixed_size_pipeline(pipeline, INPUT_SIZE)
    top_level = fixed_size_pipeline(
        [dict(type='opera.Resize', img_scale=(1333, 800), keep_ratio=True)],
        INPUT_SIZE)
    assert top_level == [
        dict(type='opera.Resize', img_scale=(320, 256), keep_ratio=False)
    ]


def test_onnx_backend_says_once_how_it_resizes(exported, tmp_path, caplog):
    _, path = exported['detection']
    folder = tmp_path / 'images'
    folder.mkdir()
    for name in IMAGES:
        shutil.copy(data_path('coco_val_tiny', name), folder / name)
    demo = load_tool('demo/image_demo.py')
    with caplog.at_level(logging.WARNING, logger='opera'):
        demo.main([
            str(folder), CONFIGS['detection'], path, '--backend',
            'onnxruntime', '--out-file', str(tmp_path / 'drawn')
        ])
    notes = [r.getMessage() for r in caplog.records if 'takes' in
             r.getMessage()]
    assert notes == [
        f'{path} takes 256x320 (HxW) images only: every image is resized '
        'to exactly 320x256 (WxH; aspect ratio not kept, no padding) '
        "instead of the config's test scale, and the results are mapped "
        'back to its original size; accuracy can differ from the PyTorch '
        'model (docs/deployment.md)'
    ]
    assert len(os.listdir(tmp_path / 'drawn')) == 2
