"""Hybrid detectors learn: overfitting a few coco_mini images on the CPU."""
import contextlib
import io
import json

import torch
from mmcv.parallel import MMDataParallel
from mmcv.runner import build_optimizer
from mmdet.apis import single_gpu_test
from mmdet.datasets import build_dataloader, build_dataset

from conftest import REPO_ROOT, shared_data

import opera  # noqa: F401
from opera.models import build_detector
from opera.utils import load_config

TINY_HYBRID = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'
R50_HYBRID = (f'{REPO_ROOT}/configs/hdetr/'
              'h_deformable_detr_r50_two_stage_12ep.py')
# Two coco_mini images with one large object each (classes 11 and 23).
IMAGE_IDS = (194322, 249346)


def subset_annotations(tmp_path, image_ids):
    root = shared_data('coco_mini')
    with open(f'{root}/annotations/instances_train2017.json') as f:
        full = json.load(f)
    subset = dict(
        full,
        images=[im for im in full['images'] if im['id'] in image_ids],
        annotations=[
            a for a in full['annotations'] if a['image_id'] in image_ids
        ])
    path = tmp_path / 'subset.json'
    path.write_text(json.dumps(subset))
    return root, str(path)


def setup(config, tmp_path, options=()):
    root, ann_file = subset_annotations(tmp_path, IMAGE_IDS)
    cfg = load_config(
        config, {
            'data_root': root,
            'data.train.ann_file': ann_file,
            'data.test.ann_file': ann_file,
            'model.backbone.init_cfg': None,
            **dict(options)
        })
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    return cfg, model


def train(model, cfg, num_iters):
    """Plain AdamW steps (the config's optimizer and grad clip).

    Returns:
        list[dict]: Per iteration, the one-to-one and one-to-many sums of
        the last decoder layer's losses.
    """
    dataset = build_dataset(cfg.data.train)
    loader = build_dataloader(dataset, 2, 0, dist=False, shuffle=False)
    optimizer = build_optimizer(model, cfg.optimizer)
    max_norm = cfg.optimizer_config.grad_clip.max_norm
    history = []
    model.train()
    while len(history) < num_iters:
        for data in loader:
            losses = model(**{k: v.data[0] for k, v in data.items()})
            total = sum(v for k, v in losses.items() if 'loss' in k)
            optimizer.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            history.append({
                branch: sum(losses[f'loss_{part}{suffix}'].item()
                            for part in ('cls', 'bbox', 'iou'))
                for branch, suffix in (('one2one', ''),
                                       ('one2many', '_one2many'))
            })
    return history


def box_ap(model, cfg):
    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    loader = build_dataloader(dataset, 2, 0, dist=False, shuffle=False)
    with contextlib.redirect_stdout(io.StringIO()):
        results = single_gpu_test(MMDataParallel(model).eval(), loader)
        return dataset.evaluate(results, **cfg.evaluation)['bbox_mAP']


def mean(values):
    return sum(values) / len(values)


def test_tiny_hybrid_detector_overfits_two_images(tmp_path):
    cfg, model = setup(TINY_HYBRID, tmp_path, {'optimizer.lr': 1e-3})
    for hook_only in ('save_best', 'interval'):
        cfg.evaluation.pop(hook_only, None)
    untrained = box_ap(model, cfg)
    history = train(model, cfg, num_iters=60)
    trained = box_ap(model, cfg)
    # Measured (2 CPU cores, seed 0): AP 0.0 untrained, 0.65 after 50
    # iterations, 1.0 after 100; over 60 iterations the one-to-many
    # losses fall by about 10%, the one-to-one ones by more.
    assert untrained < 0.05
    assert trained >= 0.5
    for branch in ('one2one', 'one2many'):
        first = mean([h[branch] for h in history[:5]])
        last = mean([h[branch] for h in history[-5:]])
        assert last < 0.95 * first, (branch, first, last)


def test_r50_hybrid_config_short_training_lowers_both_branches(tmp_path):
    """The real R50 H-Deformable-DETR recipe, small images, 8 steps."""
    scale = [(416, 320)]
    cfg, model = setup(
        R50_HYBRID, tmp_path, {
            'data.train.pipeline.3.policies': [[
                dict(type='Resize', img_scale=scale, keep_ratio=True)
            ]],
            'data.train.pipeline.2.flip_ratio': 0.0
        })
    history = train(model, cfg, num_iters=8)
    for branch in ('one2one', 'one2many'):
        first = mean([h[branch] for h in history[:2]])
        last = mean([h[branch] for h in history[-2:]])
        assert last < first, (branch, [h[branch] for h in history])
