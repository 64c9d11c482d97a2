"""Users' tools: the demo, browse_dataset, analyze_logs, the TensorBoard and
wandb logging switches (through tools/train.py) and the evaluation progress
bar. One short training run of the tiny pose config feeds the log tests."""
import importlib.util
import io
import json
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmcv.runner import save_checkpoint
from mmdet.apis import inference_detector, set_random_seed
from mmdet.datasets import build_dataset

from conftest import data_path, run_in_repo
from drawing_helpers import far_from, inside, subset_annotations
from opera.apis import init_model, multi_gpu_test, single_gpu_test
from opera.core.visualization import palette, split_result
from opera.utils import load_config
from opera.utils.trackers import tracker_log_config

REPO = Path(__file__).resolve().parents[1]
POSE_CONFIG = str(REPO / 'tests' / 'configs' / 'tiny_petr_sample.py')
DET_CONFIG = str(REPO / 'tests' / 'configs' / 'tiny_h_deformable_detr.py')
# The training run: 4 sample images, 2 per batch, evaluated every epoch.
EPOCHS, ITERS_PER_EPOCH, NUM_IMAGES = 2, 2, 4
# Pixels around a drawn element that it may cover: keypoint discs, lines.
LINE_MARGIN = 8


def load_tool(relative_path):
    """Import a script of the repository as a module."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """Run torch on one thread: the CI machine is shared and small."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- demo


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Randomly initialised tiny detection and pose models, saved."""
    folder = tmp_path_factory.mktemp('ckpt')
    paths = {}
    for name, config in [('det', DET_CONFIG), ('pose', POSE_CONFIG)]:
        set_random_seed(0)
        paths[name] = str(folder / f'{name}.pth')
        save_checkpoint(init_model(config), paths[name])
    return paths


# Three detections / persons per image keep the drawings apart.
DEMO_OPTIONS = ['--cfg-options', 'model.test_cfg.max_per_img=3']


@pytest.mark.parametrize('kind', ['det', 'pose'])
def test_demo_draws_results_on_an_image(kind, checkpoints, tmp_path,
                                        one_thread):
    image_path = data_path('coco_val_tiny', '000000000785.jpg')
    config = DET_CONFIG if kind == 'det' else POSE_CONFIG
    out_file = tmp_path / 'out.png'
    demo = load_tool('demo/image_demo.py')
    demo.main([
        image_path, config, checkpoints[kind], '--out-file',
        str(out_file), '--score-thr', '0', *DEMO_OPTIONS
    ])
    image = mmcv.imread(image_path)
    drawn = mmcv.imread(str(out_file))
    assert drawn.shape == image.shape
    model = init_model(
        config,
        checkpoints[kind],
        cfg_options={'model.test_cfg.max_per_img': 3})
    bboxes, labels, kpts = split_result(inference_detector(model, image))
    assert len(bboxes) == 3
    changed = (drawn != image).any(-1)
    far = far_from(bboxes, image.shape, LINE_MARGIN)
    assert far.mean() > 0.3, 'the drawings cover the image: weak test'
    assert not changed[far].any(), 'pixels changed away from the results'
    for x1, y1, x2, y2, _ in bboxes.astype(int):  # box edges
        assert changed[(y1 + y2) // 2, max(x1, 0)]
    if kind == 'det':
        assert model.CLASSES[0] == 'person' and len(model.CLASSES) == 80
        return
    assert model.CLASSES == ('person', ) and kpts.shape == (3, 17, 3)
    # Keypoints are drawn last, so the last person's discs show its colour.
    last_color = palette(3)[2]
    for x, y in inside(kpts[2, :, :2], drawn.shape):
        assert (drawn[y, x] == last_color).all(), (x, y)


def test_demo_folder_and_video(checkpoints, tmp_path, one_thread):
    folder = tmp_path / 'images'
    folder.mkdir()
    names = ['000000000785.jpg', '000000040083.jpg']
    for name in names:
        (folder / name).symlink_to(data_path('coco_val_tiny', name))
    demo = load_tool('demo/image_demo.py')
    out_dir = tmp_path / 'drawn'
    demo.main([
        str(folder), POSE_CONFIG, checkpoints['pose'], '--out-file',
        str(out_dir), '--score-thr', '0', *DEMO_OPTIONS
    ])
    for name in names:
        drawn = mmcv.imread(str(out_dir / name.replace('.jpg', '.png')))
        image = mmcv.imread(str(folder / name))
        assert drawn.shape == image.shape and (drawn != image).any()

    video_in, video_out = tmp_path / 'in.mp4', tmp_path / 'out.mp4'
    frame = mmcv.imresize(mmcv.imread(str(folder / names[0])), (160, 112))
    writer = cv2.VideoWriter(
        str(video_in), cv2.VideoWriter_fourcc(*'mp4v'), 5, (160, 112))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    demo.main([
        str(video_in), POSE_CONFIG, checkpoints['pose'], '--out-file',
        str(video_out), '--score-thr', '0', *DEMO_OPTIONS
    ])
    video = mmcv.VideoReader(str(video_out))
    assert (len(video), video.width, video.height) == (3, 160, 112)
    assert np.abs(video[0].astype(int) - frame).mean() > 1


def test_demo_rejects_unknown_inputs(tmp_path):
    demo = load_tool('demo/image_demo.py')
    with pytest.raises(FileNotFoundError, match='demo input not found'):
        demo.input_kind(str(tmp_path / 'missing.jpg'))
    (tmp_path / 'notes.txt').write_text('x')
    with pytest.raises(ValueError, match="unknown input type '.txt'"):
        demo.input_kind(str(tmp_path / 'notes.txt'))


# ------------------------------------------------------ browse_dataset


def test_browse_dataset_draws_the_training_ground_truth(tmp_path):
    browse = load_tool('tools/misc/browse_dataset.py')
    written = browse.main(
        [POSE_CONFIG, '--output-dir',
         str(tmp_path), '--num-images', '3'])
    assert len(written) == 3 and len(list(tmp_path.glob('*.png'))) == 3
    # The tiny config's training pipeline is deterministic (no flip): the
    # same item, built here, is what was drawn.
    cfg = load_config(POSE_CONFIG)
    dataset = build_dataset(browse.without_formatting(cfg.data.train))
    item = dataset[0]
    drawn = mmcv.imread(written[0])
    assert Path(
        written[0]).name == '00000_' + Path(item['ori_filename']).stem + '.png'
    assert drawn.shape == item['img'].shape  # resized to at most 320x256
    assert max(drawn.shape[:2]) <= 320
    changed = (drawn != item['img']).any(-1)
    boxes, kpts = item['gt_bboxes'], item['gt_keypoints']
    assert not changed[far_from(boxes, drawn.shape, LINE_MARGIN)].any()
    colors = palette(len(boxes))
    labelled = kpts[..., 2] > 0
    assert labelled.any()
    # The last person's labelled keypoints are drawn last, in its colour.
    for x, y in inside(kpts[-1][labelled[-1], :2], drawn.shape):
        assert (drawn[y, x] == colors[-1]).all(), (x, y)


# ---------------------------------------- training with both trackers on


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Work dir, wandb dir and stdout of a 2-epoch run of the tiny pose
    config on 4 images with TensorBoard and wandb (offline) switched on."""
    root = tmp_path_factory.mktemp('trackers')
    work_dir, wandb_dir = root / 'work', root / 'wandb_dir'
    wandb_dir.mkdir()
    subset = root / 'four_images.json'
    subset_annotations(NUM_IMAGES, subset)
    # wandb offline, and every wandb file (run, cache, staged artifacts,
    # settings) under the test's folder.
    env = dict(
        WANDB_MODE='offline',
        WANDB_SILENT='true',
        WANDB_DIR=str(wandb_dir),
        WANDB_CACHE_DIR=str(root / 'wandb_cache'),
        WANDB_DATA_DIR=str(root / 'wandb_data'),
        WANDB_CONFIG_DIR=str(root / 'wandb_config'))
    command = [
        sys.executable, 'tools/train.py', POSE_CONFIG, '--work-dir',
        str(work_dir), '--seed', '0', '--cfg-options',
        f'runner.max_epochs={EPOCHS}', f'data.train.ann_file={subset}',
        f'data.val.ann_file={subset}', 'log_config.tensorboard=True',
        'log_config.wandb=True'
    ]
    proc = run_in_repo(command, **env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work_dir, wandb_dir, proc.stdout


def json_log(work_dir):
    """The train and val records of the run's JSON log."""
    (path, ) = work_dir.glob('*.log.json')
    records = [json.loads(line) for line in path.read_text().splitlines()]
    train = [r for r in records if r.get('mode') == 'train']
    val = [r for r in records if r.get('mode') == 'val']
    return path, train, val


def test_text_and_json_logs_and_eval_progress_bar(trained):
    work_dir, _, stdout = trained
    assert len(list(work_dir.glob('*.log'))) == 1
    _, train, val = json_log(work_dir)
    assert len(train) == EPOCHS * ITERS_PER_EPOCH
    assert [r['epoch'] for r in val] == [1, 2]
    assert all(0 <= r['keypoints_mAP'] <= 1 for r in val)
    # mmcv's progress bar, once per evaluation of the images.
    bars = re.findall(rf'\] {NUM_IMAGES}/{NUM_IMAGES}, [0-9.]+ task/s', stdout)
    assert len(bars) == EPOCHS


def test_tensorboard_events_hold_the_logged_values(trained):
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    work_dir = trained[0]
    (events, ) = (work_dir / 'tf_logs').glob('events.out.tfevents.*')
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    _, train, val = json_log(work_dir)
    losses = accumulator.Scalars('train/loss')
    assert [e.step for e in losses] == list(range(1, len(train) + 1))
    np.testing.assert_allclose([e.value for e in losses],
                               [r['loss'] for r in train],
                               rtol=1e-5)
    assert len(accumulator.Scalars('val/keypoints_mAP')) == len(val)


def test_wandb_offline_run_holds_the_logged_values(trained):
    work_dir, wandb_dir, _ = trained
    (run_file, ) = (wandb_dir / 'wandb').glob('offline-run-*/run-*.wandb')
    data = run_file.read_bytes()
    # History items are stored as the key, a few bytes of framing and the
    # JSON value; a framing byte after the value may read as a digit, which
    # changes only digits far below the JSON log's 5 decimals.
    logged = {
        float(v)
        for v in re.findall(rb'train/loss[^_\w][^0-9-]{0,4}(-?[0-9]+\.[0-9]+)',
                            data)
    }
    _, train, val = json_log(work_dir)
    for record in train:  # the JSON log rounds to 5 decimals
        assert any(abs(v - record['loss']) < 1e-4 for v in logged), record
    assert data.count(b'val/keypoints_mAP') >= len(val)


# ------------------------------------------------------- analyze_logs


def test_plot_curve_draws_the_logged_values(trained, tmp_path):
    analyze = load_tool('tools/analysis_tools/analyze_logs.py')
    path, train, val = json_log(trained[0])
    out = tmp_path / 'curves.png'
    fig = analyze.main([
        'plot_curve',
        str(path), '--keys', 'loss', 'keypoints_mAP', '--out',
        str(out)
    ])
    image = mmcv.imread(str(out))
    width, height = analyze.PANEL_SIZE  # inches; two panels stacked
    assert image.shape[:2] == (2 * height * fig.dpi, width * fig.dpi)
    assert image.std() > 10, 'the figure is blank'
    loss_line, map_line = fig.axes[0].lines[0], fig.axes[1].lines[0]
    expected_iters = [(r['epoch'] - 1) * ITERS_PER_EPOCH + r['iter']
                      for r in train]
    assert list(loss_line.get_xdata()) == expected_iters
    assert list(loss_line.get_ydata()) == [r['loss'] for r in train]
    assert list(map_line.get_xdata()) == [1, 2]
    assert list(map_line.get_ydata()) == [r['keypoints_mAP'] for r in val]
    assert fig.axes[1].get_xlabel() == 'epoch'
    with pytest.raises(KeyError, match="'bbox_mAP' is not in the log"):
        analyze.main(['plot_curve', str(path), '--keys', 'bbox_mAP'])


def test_cal_train_time_skips_each_epochs_first_iteration(trained):
    analyze = load_tool('tools/analysis_tools/analyze_logs.py')
    path, train, _ = json_log(trained[0])
    printed = io.StringIO()
    with redirect_stdout(printed):
        (stats, ) = analyze.main(['cal_train_time', str(path)])
    kept = [r['time'] for r in train if r['iter'] > 1]
    assert stats['mean'] == pytest.approx(np.mean(kept))
    epoch_2 = [r['time'] for r in train if r['epoch'] == 2 and r['iter'] > 1]
    assert stats['epochs'][2] == pytest.approx(np.mean(epoch_2))
    assert f'average iter time: {np.mean(kept):.4f} s/iter' in \
        printed.getvalue()


# ------------------------------------------------------ tracker switches


def test_tracker_switches_add_hooks():
    base = dict(interval=5, hooks=[dict(type='TextLoggerHook')])
    assert tracker_log_config(dict(base, tensorboard=False, wandb=False)) \
        == base
    on = tracker_log_config(
        dict(
            base, tensorboard=True, wandb=dict(init_kwargs=dict(project='p'))))
    assert on['hooks'] == [
        dict(type='TextLoggerHook'),
        dict(type='TensorboardLoggerHook'),
        dict(
            type='WandbLoggerHook',
            with_step=False,
            init_kwargs=dict(project='p'))
    ]
    assert 'tensorboard' not in on and 'wandb' not in on
    with pytest.raises(TypeError, match='log_config.wandb must be True'):
        tracker_log_config(dict(base, wandb='yes'))


def test_trackers_are_optional(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *args: None
        if name == 'wandb' else real_find_spec(name, *args))
    base = dict(interval=5, hooks=[dict(type='TextLoggerHook')])
    assert tracker_log_config(dict(base, wandb=False))['hooks'] == \
        base['hooks']
    with pytest.raises(ImportError, match='pip install wandb'):
        tracker_log_config(dict(base, wandb=True))


# ------------------------------------------------ evaluation progress bar


class CountingModel(torch.nn.Module):
    """Returns one empty detection result per image of a batch."""

    def forward(self, img, return_loss=False, rescale=True):
        return [[np.zeros((0, 5), np.float32)] for _ in img]


@pytest.mark.parametrize('loop', [single_gpu_test, multi_gpu_test])
def test_eval_loops_show_a_progress_bar(loop, monkeypatch):
    from mmcv.parallel import MMDataParallel
    printed = io.StringIO()

    class Bar(mmcv.ProgressBar):
        """mmcv's bar, writing where the test can read it."""

        def __init__(self, task_num, **kwargs):
            super().__init__(task_num, file=printed, **kwargs)

    monkeypatch.setattr(mmcv, 'ProgressBar', Bar)
    data = [torch.zeros(3, 4, 4) for _ in range(5)]
    loader = torch.utils.data.DataLoader(
        data, batch_size=2, collate_fn=lambda batch: dict(img=batch))
    results = loop(MMDataParallel(CountingModel()), loader)
    assert len(results) == 5
    assert re.search(r'\] 5/5, [0-9.]+ task/s', printed.getvalue())


# --------------------------------------------------------- print_config


def test_print_config_shows_a_variant(capsys):
    printer = load_tool('tools/misc/print_config.py')
    cfg = printer.main([
        str(REPO / 'configs' / 'petr' /
            'h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py'),
        '--cfg-options', 'model.bbox_head.k_one2many=3',
        'model.bbox_head.num_query_one2many=600', 'log_config.wandb=True'
    ])
    head = cfg.model.bbox_head
    assert (head.num_query, head.num_query_one2many, head.k_one2many) == \
        (300, 600, 3)
    assert (cfg.log_config.wandb, cfg.log_config.tensorboard) == (True, False)
    printed = capsys.readouterr().out
    for text in ['num_query_one2many=600', 'k_one2many=3', 'wandb=True']:
        assert text in printed
