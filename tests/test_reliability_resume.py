"""A training run killed mid-epoch (SIGKILL) and restarted with
``--auto-resume`` ends with the same weights as a run never interrupted.

tools/train.py trains the tiny H-Deformable-DETR for 2 epochs of 4
iterations (4 sample images at most 160x128, one per batch, shuffled, random
flips) with
``--seed 0 --deterministic``. One run is killed during epoch 2, after
``epoch_1.pth`` was written, and resumed from it: epoch 2 must replay with the
same shuffle and flips (opera.ResumableEpochBasedRunner seeds each epoch).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import subset_annotations

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / 'demo' / 'data' / 'coco_sample'
NUM_IMAGES = 4
MAX_EPOCHS = 2
TIMEOUT_S = 300
POLL_S = 0.05
# Logged by the text logger after the first iteration of epoch 2.
KILL_AFTER = re.compile(rf'Epoch \[2\]\[1/{NUM_IMAGES}\]')

CONFIG = """
_base_ = ['{base}']
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=(160, 128), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=1),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])
]
data = dict(
    samples_per_gpu=1,
    train=dict(
        ann_file='{ann_file}', img_prefix='{images}',
        pipeline=train_pipeline))
runner = dict(max_epochs={max_epochs})
checkpoint_config = dict(interval=1)
log_config = dict(interval=1)
"""


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    """The tiny detection config on 4 sample images."""
    folder = tmp_path_factory.mktemp('resume_config')
    full_ann = SAMPLE / 'annotations' / 'instances_sample.json'
    with open(full_ann) as f:
        images = json.load(f)['images'][:NUM_IMAGES]
    ann_file = subset_annotations(full_ann, {image['id'] for image in images},
                                  folder / 'ann.json')
    path = folder / 'tiny_resume.py'
    path.write_text(
        CONFIG.format(
            base=REPO / 'tests' / 'configs' / 'tiny_h_deformable_detr.py',
            ann_file=ann_file,
            images=SAMPLE / 'images',
            max_epochs=MAX_EPOCHS))
    return path


def train_command(config, work_dir, *extra):
    return [
        sys.executable, 'tools/train.py', str(config), '--work-dir',
        str(work_dir), '--seed', '0', '--deterministic', '--no-validate',
        *extra
    ]


def start(command):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


def finish(process):
    output, _ = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, output[-5000:]
    return output


def log_text(work_dir):
    return ''.join(p.read_text() for p in Path(work_dir).glob('*.log'))


def kill_during_epoch_2(process, work_dir):
    """SIGKILL ``process`` once it has logged epoch 2's first iteration."""
    deadline = time.time() + TIMEOUT_S
    while not KILL_AFTER.search(log_text(work_dir)):
        assert process.poll() is None, process.communicate()[0][-5000:]
        assert time.time() < deadline, 'epoch 2 never started'
        time.sleep(POLL_S)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_killed_and_resumed_run_matches_uninterrupted_run(config, tmp_path):
    full_dir, killed_dir = tmp_path / 'full', tmp_path / 'killed'
    full = start(train_command(config, full_dir))
    killed = start(train_command(config, killed_dir))
    kill_during_epoch_2(killed, killed_dir)
    assert killed.returncode == -signal.SIGKILL
    # Killed mid-epoch: epoch 1 is complete, epoch 2 is not.
    assert (killed_dir / 'epoch_1.pth').is_file()
    assert not (killed_dir / 'epoch_2.pth').exists()
    assert os.readlink(killed_dir / 'latest.pth') == 'epoch_1.pth'

    resumed = finish(start(train_command(config, killed_dir,
                                         '--auto-resume')))
    finish(full)
    assert 'resumed epoch 1, iter 4' in log_text(killed_dir), resumed[-3000:]
    expected = torch.load(full_dir / f'epoch_{MAX_EPOCHS}.pth')
    actual = torch.load(killed_dir / f'epoch_{MAX_EPOCHS}.pth')
    assert actual['meta']['iter'] == expected['meta']['iter'] == \
        MAX_EPOCHS * NUM_IMAGES
    assert expected['state_dict'].keys() == actual['state_dict'].keys()
    for name, weight in expected['state_dict'].items():
        assert torch.equal(actual['state_dict'][name], weight), name
