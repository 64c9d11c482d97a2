"""tools/quickstart.sh end to end on a shortened schedule: both runs learn
(box AP on their training image rises), the plot of both runs and the PNG
drawings are written, and the two APs are printed side by side."""
import glob
import json
import os.path as osp
import re

import cv2

from conftest import REPO_ROOT, run_in_repo, subset_annotations

SAMPLE = osp.join(REPO_ROOT, 'demo', 'data', 'coco_sample')
# One image: a person filling the frame and a pair of scissors.
IMAGE_ID = 551757
EPOCHS = 10  # one iteration each: 1 image, 2 per batch
RUNS = ('H-Deformable-DETR', 'Deformable-DETR')
DRAWN = ['000000418049.png', '000000551757.png']
# Measured (seed 0, --deterministic, one thread): box AP on the image after
# 5 / 10 iterations 0.0 / 0.35 (H-Deformable-DETR) and 0.0 / 0.40
# (Deformable-DETR), the same in two runs; the threshold leaves room for
# other thread counts and machines.
MIN_AP = 0.2


def val_records(run_dir):
    """The evaluation records of the run's JSON log, in order."""
    (path, ) = glob.glob(osp.join(run_dir, '*.log.json'))
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r.get('mode') == 'val']


def short_schedule(ann_file, epochs):
    """--cfg-options: train and evaluate on ``ann_file`` for ``epochs``
    epochs, evaluating half way and at the end."""
    return [
        f'data.{split}.ann_file={ann_file}'
        for split in ('train', 'val', 'test')
    ] + [
        f'runner.max_epochs={epochs}', f'evaluation.interval={epochs // 2}',
        f'checkpoint_config.interval={epochs}'
    ]


def test_quickstart_short_schedule_learns_and_draws(tmp_path):
    ann_file = subset_annotations(
        osp.join(SAMPLE, 'annotations', 'instances_sample.json'),
        (IMAGE_ID, ), tmp_path / 'one_image.json')
    work_dir = tmp_path / 'quickstart'
    options = short_schedule(ann_file, EPOCHS) + ['log_config.interval=1']
    done = run_in_repo(['bash', 'tools/quickstart.sh',
                        str(work_dir)] + options)
    assert done.returncode == 0, done.stderr[-3000:]

    aps = {}
    for run in RUNS:
        records = val_records(work_dir / run)
        assert [r['epoch'] for r in records] == [EPOCHS // 2, EPOCHS], run
        curve = [r['bbox_mAP'] for r in records]
        aps[run] = curve[-1]
        assert aps[run] >= MIN_AP and aps[run] > curve[0], (run, curve)
    # The table printed last: one row per run with its final box AP.
    for run in RUNS:
        row = re.search(rf'^{run} +(\S+) +(\S+)$', done.stdout, re.M)
        assert row is not None, (run, done.stdout[-2000:])
        assert float(row.group(2)) == aps[run]

    curves = cv2.imread(str(work_dir / 'curves.png'))
    assert curves is not None and curves.std() > 10, 'blank or no plot'
    # Two panels (loss, AP) of 8 x 3 inches at matplotlib's 100 dpi.
    assert curves.shape[:2] == (600, 800)
    # Each model's results on the quick start's 2 images, as PNGs.
    for run in RUNS:
        drawn = sorted(glob.glob(str(work_dir / 'drawn' / run / '*.png')))
        assert [osp.basename(p) for p in drawn] == DRAWN, run
        for drawn_path in drawn:
            name = osp.basename(drawn_path)[:-4] + '.jpg'
            image = cv2.imread(osp.join(SAMPLE, 'images', name))
            drawing = cv2.imread(drawn_path)
            # The image at its own size (boxes drawn only above score 0.3,
            # which 10 iterations do not always reach).
            assert drawing.shape == image.shape, drawn_path


# Pose (--pose): one image, a person with all 17 keypoints visible.
POSE_IMAGE_ID = 183872
POSE_EPOCHS = 30  # one iteration each
POSE_RUNS = ('H-PETR', 'PETR')
POSE_DRAWN = ['000000030752.png', '000000183872.png']
# Measured (seed 0, --deterministic, one thread): keypoint AP on the image
# after 15 / 30 iterations 0.05 / 0.45 (H-PETR) and 0.0 / 0.50 (PETR); the
# threshold leaves room for other thread counts and machines.
MIN_POSE_AP = 0.2


def test_quickstart_pose_short_schedule_learns_and_draws(tmp_path):
    ann_file = subset_annotations(
        osp.join(SAMPLE, 'annotations', 'person_keypoints_quickstart.json'),
        (POSE_IMAGE_ID, ), tmp_path / 'one_person.json')
    work_dir = tmp_path / 'quickstart_pose'
    options = short_schedule(ann_file, POSE_EPOCHS)
    done = run_in_repo(['bash', 'tools/quickstart.sh', '--pose',
                        str(work_dir)] + options)
    assert done.returncode == 0, done.stderr[-3000:]
    for run in POSE_RUNS:
        curve = [r['keypoints_mAP'] for r in val_records(work_dir / run)]
        assert len(curve) == 2, run
        assert curve[-1] >= MIN_POSE_AP and curve[-1] > curve[0], (run,
                                                                  curve)
        row = re.search(rf'^{run} +(\S+) +(\S+)$', done.stdout, re.M)
        assert row is not None and float(row.group(2)) == curve[-1], run
        drawn = sorted(glob.glob(str(work_dir / 'drawn' / run / '*.png')))
        assert [osp.basename(p) for p in drawn] == POSE_DRAWN, run
    curves = cv2.imread(str(work_dir / 'curves.png'))
    assert curves is not None and curves.std() > 10, 'blank or no plot'
