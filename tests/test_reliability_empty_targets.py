"""Batches without usable targets train with finite losses and gradients.

The tiny H-Deformable-DETR and H-PETR (both matching branches) take a few
optimizer steps on batches with images without objects or persons, persons
whose keypoints are all invisible, tiny and zero-width boxes; then on a
batch from the dataset pipeline (images resized to fit 160x128) with a
crowd-only image and an image without annotations.
"""
import copy
import json
import os.path as osp

import pytest
import torch
from mmcv import Config
from mmcv.parallel import collate, scatter
from mmcv.runner import build_optimizer
from mmdet.datasets import build_dataset

from conftest import REPO_ROOT, detection_inputs, pose_inputs

import opera  # noqa: F401  (registers modules)
from opera.models import build_detector

STEPS = 3
SHAPES = [(96, 128), (80, 128)]
SMALL_SCALE = (160, 128)  # dataset images: long side <= 160, short <= 128
CONFIGS = dict(
    detection=osp.join(REPO_ROOT, 'tests', 'configs',
                       'tiny_h_deformable_detr.py'),
    pose=osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py'))
SAMPLE = osp.join(REPO_ROOT, 'demo', 'data', 'coco_sample')


@pytest.fixture(scope='module', autouse=True)
def cpu_settings():
    """Flush denormal floats to zero, as tools/train.py does on the CPU
    (Adam's tiny second moments otherwise make steps many times slower),
    and use one thread: these models are too small to gain from more, and
    a second thread competing for a busy core makes every step slower."""
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)


@pytest.fixture(scope='module')
def models():
    """{task: (config, freshly initialised model)}, built once."""
    built = {}
    for task, path in CONFIGS.items():
        cfg = Config.fromfile(path)
        torch.manual_seed(0)
        model = build_detector(cfg.model)
        model.init_weights()
        built[task] = (cfg, model)
    return built


def zero_width(inputs, image=0, person=0):
    """Make one box zero pixels wide (its keypoints on one vertical line)."""
    box = inputs['gt_bboxes'][image][person]
    box[2] = box[0]
    if 'gt_keypoints' in inputs:
        inputs['gt_keypoints'][image][person, :, 0] = box[0]
        inputs['gt_keypoints'][image][person, :, 2] = 2
    return inputs


def tiny_box(inputs, image=0, person=0):
    """Make one object half a pixel wide and high (area 0.25 px^2)."""
    inputs['gt_bboxes'][image][person] = torch.tensor([10., 10., 10.5, 10.5])
    if 'gt_keypoints' in inputs:
        inputs['gt_keypoints'][image][person, :, :2] = 10.25
        inputs['gt_keypoints'][image][person, :, 2] = 2
        inputs['gt_areas'][image][person] = 0.25
    return inputs


def all_invisible(inputs):
    for keypoints in inputs['gt_keypoints']:
        keypoints[..., 2] = 0
    return inputs


CASES = {
    'detection': {
        'no objects': lambda: detection_inputs(SHAPES, num_boxes=(0, 0)),
        'one image without objects':
        lambda: detection_inputs(SHAPES, num_boxes=(3, 0)),
        'zero-width box':
        lambda: zero_width(detection_inputs(SHAPES, num_boxes=(2, 1))),
        'tiny box':
        lambda: tiny_box(detection_inputs(SHAPES, num_boxes=(2, 0))),
    },
    'pose': {
        'no persons': lambda: pose_inputs(SHAPES, num_persons=(0, 0)),
        'one image without persons':
        lambda: pose_inputs(SHAPES, num_persons=(3, 0)),
        'all keypoints invisible':
        lambda: all_invisible(pose_inputs(SHAPES, num_persons=(2, 1))),
        'zero-width box':
        lambda: zero_width(pose_inputs(SHAPES, num_persons=(2, 1)),
                           person=1),
        'tiny box':
        lambda: tiny_box(pose_inputs(SHAPES, num_persons=(2, 0)), person=1),
    },
}


def train_steps(cfg, model, batches):
    """Optimizer steps (config optimizer and grad clip) on ``batches``;
    checks every loss and gradient on the way. Returns the trained model.
    """
    model = copy.deepcopy(model).train()
    optimizer = build_optimizer(model, cfg.optimizer)
    before = [p.detach().clone() for p in model.parameters()]
    for step, inputs in enumerate(batches):
        losses = model.forward_train(**inputs)
        assert any(name.endswith('_one2many') for name in losses)
        for name, value in losses.items():
            assert torch.isfinite(value).all(), (step, name, value)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        optimizer.zero_grad()
        total.backward()
        for name, param in model.named_parameters():
            if param.grad is not None:
                assert torch.isfinite(param.grad).all(), (step, name)
        torch.nn.utils.clip_grad_norm_(model.parameters(),
                                       cfg.optimizer_config.grad_clip.max_norm)
        optimizer.step()
    changed = [
        not torch.equal(old, new.detach())
        for old, new in zip(before, model.parameters())
    ]
    assert any(changed), 'no parameter was updated'
    for param in model.parameters():
        assert torch.isfinite(param).all()
    return model


@pytest.mark.parametrize(
    'task, case', [(t, c) for t, cases in CASES.items() for c in cases])
def test_hard_batches_train_with_finite_losses(models, task, case):
    cfg, model = models[task]
    train_steps(cfg, model, [CASES[task][case]() for _ in range(STEPS)])


def crowd_and_empty_annotations(tmp_path, ann_name, crowd_image,
                                empty_image):
    """The sample json with every object of ``crowd_image`` a crowd and
    ``empty_image`` without annotations; returns its path."""
    with open(osp.join(SAMPLE, 'annotations', ann_name)) as f:
        data = json.load(f)
    data['annotations'] = [
        a for a in data['annotations'] if a['image_id'] != empty_image
    ]
    for ann in data['annotations']:
        if ann['image_id'] == crowd_image:
            ann['iscrowd'] = 1
    path = tmp_path / ann_name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize('task, ann_name, sample_cfg', [
    ('detection', 'instances_sample.json', 'tiny_h_deformable_detr.py'),
    ('pose', 'person_keypoints_sample.json', 'tiny_petr_sample.py'),
])
def test_crowd_only_and_unannotated_images_train(tmp_path, models, task,
                                                 ann_name, sample_cfg):
    crowd_image, empty_image = 214704, 69468
    cfg, model = models[task]
    data_cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'tests', 'configs', sample_cfg)).data.train
    for transform in data_cfg.pipeline:
        if transform['type'].endswith('Resize'):
            transform['img_scale'] = SMALL_SCALE
    data_cfg.update(
        type=cfg.data.train.type,
        ann_file=crowd_and_empty_annotations(tmp_path, ann_name, crowd_image,
                                             empty_image),
        img_prefix=osp.join(SAMPLE, 'images'),
        # Keep them: pose training would otherwise drop both images.
        filter_empty_gt=False)
    dataset = build_dataset(data_cfg)
    items = [dataset[dataset.img_ids.index(i)]
             for i in (crowd_image, empty_image)]
    for item in items:
        assert item['gt_bboxes'].data.shape == (0, 4)
    batch = scatter(collate(items, samples_per_gpu=2), [-1])[0]
    train_steps(cfg, model, [batch] * STEPS)
