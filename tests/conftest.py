"""Shared test fixtures: paths to the test data and small model inputs."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmcv.runner import build_optimizer
from mmdet.datasets import build_dataloader, build_dataset

# mmcv config files, not test modules (tiny_petr_flip_test.py matches
# pytest's *_test.py and is not plain Python: it uses {{_base_.*}}).
collect_ignore_glob = ['configs/*']

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The COCO / CrowdPose samples of the repository (tests/data/README.md).
TEST_DATA = osp.join(REPO_ROOT, 'tests', 'data')
TOOL_TIMEOUT_S = 300


def load_tool(relative_path):
    """Import a script of the repository (``tools/train.py``) as a module."""
    path = osp.join(REPO_ROOT, relative_path)
    spec = importlib.util.spec_from_file_location('tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_path(*parts):
    """Path of a file or folder under tests/data.

    The data is part of the repository, so a missing path is an error of
    the checkout (or a misspelt name), never a reason to skip.

    Raises:
        FileNotFoundError: If the path does not exist.
    """
    path = osp.join(TEST_DATA, *parts)
    if not osp.exists(path):
        raise FileNotFoundError(
            f'test data missing: {path} (tests/data is part of the '
            'repository; see tests/data/README.md)')
    return path


@pytest.fixture(scope='module')
def single_thread():
    """One intra-op thread for a module (``pytestmark =
    pytest.mark.usefixtures('single_thread')``): on a small shared CPU
    machine torch's thread pool fights other processes and tiny models run
    up to 25x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def detection_inputs(batch_shapes, pad_to=None, num_boxes=(3, 0), seed=0):
    """Images, metas and random boxes/labels for a detector's forward.

    Args:
        batch_shapes (list[tuple[int, int]]): (h, w) of each image before
            padding; the batch is padded to the largest (or ``pad_to``).
        num_boxes (tuple[int]): Ground-truth boxes per image (0 allowed).

    Returns:
        dict: ``img`` [bs, 3, H, W], ``img_metas``, ``gt_bboxes`` (list of
        [n, 4] xyxy in pixels), ``gt_labels`` (list of [n]).
    """
    gen = torch.Generator().manual_seed(seed)
    pad_h = max(h for h, _ in batch_shapes)
    pad_w = max(w for _, w in batch_shapes)
    if pad_to is not None:
        pad_h, pad_w = pad_to
    img = torch.zeros(len(batch_shapes), 3, pad_h, pad_w)
    metas, boxes, labels = [], [], []
    for i, (h, w) in enumerate(batch_shapes):
        img[i, :, :h, :w] = torch.randn(3, h, w, generator=gen)
        metas.append(
            dict(
                img_shape=(h, w, 3),
                ori_shape=(h, w, 3),
                pad_shape=(pad_h, pad_w, 3),
                batch_input_shape=(pad_h, pad_w),
                scale_factor=torch.ones(4).numpy(),
                flip=False,
                filename=f'image_{i}.jpg'))
        n = num_boxes[i % len(num_boxes)]
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.6
        wh = (torch.rand(n, 2, generator=gen) * 0.3 + 0.05) * torch.tensor(
            [w, h])
        boxes.append(torch.cat([xy, xy + wh], dim=1))
        labels.append(torch.randint(0, 80, (n, ), generator=gen))
    return dict(img=img, img_metas=metas, gt_bboxes=boxes, gt_labels=labels)


def pose_inputs(batch_shapes,
                num_persons=(0, 3),
                seed=0,
                num_keypoints=17):
    """Detection inputs plus persons (label 0): keypoints [n, K, 3] inside
    each box, all visible except for the first person of an image, which
    has none; areas [n] of the boxes."""
    inputs = detection_inputs(batch_shapes, num_boxes=num_persons, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    keypoints, areas = [], []
    for boxes in inputs['gt_bboxes']:
        num = boxes.size(0)
        low, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]
        xy = low + torch.rand(num, num_keypoints, 2, generator=gen) * size
        visible = torch.full((num, num_keypoints, 1), 2.)
        visible[:1] = 0
        keypoints.append(torch.cat([xy, visible], -1))
        areas.append(size[:, 0].prod(-1))
    inputs['gt_labels'] = [torch.zeros_like(l) for l in inputs['gt_labels']]
    inputs['gt_keypoints'] = keypoints
    inputs['gt_areas'] = areas
    return inputs


def targets_of(inputs):
    """The ground truth of ``detection_inputs`` / ``pose_inputs`` as the
    heads' ``loss`` and the criteria take it: the ``gt_*`` lists."""
    return {name: value for name, value in inputs.items()
            if name.startswith('gt_')}


def matched_targets(gt_inds, num_gts):
    """Which untiled target each query is matched to, -1 for background.

    Args:
        gt_inds (Tensor): [Q] ``AssignResult.gt_inds``: 0 background, else
            1 + a tiled index ``c * num_gts + j`` (copy ``c`` of target
            ``j``).
        num_gts (int): Distinct targets.
    """
    return torch.where(gt_inds > 0, (gt_inds - 1) % max(num_gts, 1), -1)


def run_in_repo(command, **env):
    """Run ``command`` from the repository root with this checkout first on
    PYTHONPATH, one OpenMP thread and the extra environment ``env``.

    Returns:
        subprocess.CompletedProcess: With text stdout and stderr.
    """
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1', **env)
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S)


def subset_annotations(ann_file, image_ids, out_path):
    """Write the COCO json ``ann_file`` restricted to ``image_ids``."""
    with open(ann_file) as f:
        full = json.load(f)
    subset = dict(
        full,
        images=[im for im in full['images'] if im['id'] in image_ids],
        annotations=[
            a for a in full['annotations'] if a['image_id'] in image_ids
        ])
    with open(out_path, 'w') as f:
        json.dump(subset, f)
    return str(out_path)


BRANCHES = (('one2one', ''), ('one2many', '_one2many'), ('dn', '_dn'))


def train_iterations(model, cfg, num_iters, loss_parts, branches=BRANCHES):
    """Plain training steps with the config's optimizer and grad clip, on
    ``cfg.data.train`` in file order, 2 images per batch.

    Args:
        loss_parts (tuple[str]): Loss names summed per branch, e.g.
            ('cls', 'bbox', 'iou'): the one-to-one branch sums
            ``loss_{part}`` (the last decoder layer), the one-to-many branch
            ``loss_{part}_one2many`` and the denoising group
            ``loss_{part}_dn`` (when the model has them).
        branches (tuple[tuple]): (branch, loss suffix) or (branch, loss
            suffix, its own loss parts) recorded (those the model has).

    Returns:
        list[dict]: Per iteration, the sum of each branch's losses.
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
                            for part in parts)
                for branch, suffix, *own in branches
                for parts in own or [loss_parts]
                if f'loss_{parts[0]}{suffix}' in losses
            })
            if len(history) == num_iters:
                break
    return history


def run_with_avx2_onednn(module, function, *args):
    """Run ``module.function(*args)`` (a tests/ module) in a child process
    whose oneDNN is pinned to AVX2: the reference fixtures' kernels (oneDNN's
    AVX-512 kernels round differently, which keyed weights amplify). The
    pin must be set before oneDNN's first convolution, hence the process of
    its own. Returns the ``subprocess.CompletedProcess``."""
    tests_dir = osp.join(REPO_ROOT, 'tests')
    env = dict(
        os.environ,
        ONEDNN_MAX_CPU_ISA='AVX2',
        PYTHONPATH=os.pathsep.join([REPO_ROOT, tests_dir]))
    arguments = ', '.join(repr(arg) for arg in args)
    code = f'import {module} as t; t.{function}({arguments})'
    return subprocess.run([sys.executable, '-c', code],
                          cwd=tests_dir,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
