"""Bad inputs that used to pass silently now stop, naming the culprit.

One group of tests per case of docs/reliability.md ("Nothing silently
wrong"): mmdet geometric steps in a pose pipeline, checkpoints that do not
fit the config at evaluation or inference, ``num_classes`` with an
iteration-based runner, misspelt keys in transformer layer configs, JPEG
files corrupt in the middle, datasets without images and unknown ``--eval``
metrics. Distributed iteration-based training on CPUs is in
tests/test_reliability_dist_iter.py.

Everything runs on the 8-image sample bundled in demo/data/coco_sample and
the tiny test configs.
"""
import json
import logging
import os
import os.path as osp
import shutil
import sys

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmdet.apis import set_random_seed
from mmdet.datasets import build_dataset

from conftest import REPO_ROOT, data_path, load_tool

import mmcv_custom
import opera  # noqa: F401  (registers modules)
from opera.apis import init_model, train_model
from opera.datasets import AnnotationError, ImageFileError, data_checks
from opera.datasets.pipelines import KeypointPipelineError
from opera.models import build_detector

pytestmark = pytest.mark.usefixtures('single_thread')

SAMPLE = osp.join(REPO_ROOT, 'demo', 'data', 'coco_sample')
IMAGES = osp.join(SAMPLE, 'images')
DET_ANN = osp.join(SAMPLE, 'annotations', 'instances_sample.json')
POSE_ANN = osp.join(SAMPLE, 'annotations', 'person_keypoints_sample.json')
CONFIGS = osp.join(REPO_ROOT, 'tests', 'configs')
DET_CONFIG = osp.join(CONFIGS, 'tiny_h_deformable_detr.py')
POSE_CONFIG = osp.join(CONFIGS, 'tiny_petr_sample.py')
# tools/test.py runs the tiny detection config on the sample with these.
DET_SAMPLE_OPTIONS = [
    f'data.test.ann_file={DET_ANN}', f'data.test.img_prefix={IMAGES}/'
]
LOAD_KEYPOINTS = [
    dict(type='LoadImageFromFile'),
    dict(
        type='opera.LoadAnnotations',
        with_bbox=True,
        with_keypoint=True,
        with_area=True)
]
SCALE = (320, 256)


def build(dataset_type, ann_file, pipeline=(), img_prefix=IMAGES, **kwargs):
    return build_dataset(
        dict(
            type=dataset_type,
            ann_file=ann_file,
            img_prefix=img_prefix,
            pipeline=list(pipeline),
            **kwargs))


def edited_json(tmp_path, ann_file, edit):
    """Write ``ann_file`` after ``edit(data)``; returns the new path."""
    with open(ann_file) as f:
        data = json.load(f)
    edit(data)
    path = tmp_path / 'edited.json'
    path.write_text(json.dumps(data))
    return str(path)


# ------------------------------------------ 1. keypoints and geometry


@pytest.mark.parametrize('step, advice', [
    (dict(type='Resize', img_scale=SCALE, keep_ratio=True),
     "use type='opera.Resize' instead"),
    (dict(type='RandomFlip', flip_ratio=0.5),
     "use type='opera.RandomFlip' instead"),
    (dict(type='RandomCrop', crop_size=(200, 200)),
     "use type='opera.RandomCrop' instead"),
    (dict(type='RandomAffine'), "use type='opera.RandomAffine' instead"),
    (dict(type='Expand'), 'opera has no keypoint-aware Expand'),
    (dict(type='DefaultFormatBundle'),
     "use type='opera.DefaultFormatBundle' instead"),
])
def test_step_that_leaves_keypoints_behind_is_refused(step, advice):
    with pytest.raises(KeypointPipelineError) as error:
        build('opera.CocoPoseDataset', POSE_ANN, LOAD_KEYPOINTS + [step])
    message = str(error.value)
    # mmcv's builder prefixes the class that failed.
    assert message.startswith(
        f'CocoPoseDataset: {POSE_ANN}: pipeline[2] mmdet.datasets.')
    assert f'.{step["type"]} comes after pipeline[1] (LoadAnnotations) ' \
        'loads keypoints' in message
    assert advice in message


def test_step_inside_a_wrapper_is_found():
    resize = dict(type='Resize', img_scale=SCALE, keep_ratio=True)
    auto_augment = dict(
        type='AutoAugment',
        policies=[[dict(resize, type='opera.Resize')], [resize]])
    with pytest.raises(KeypointPipelineError) as error:
        build('opera.CocoPoseDataset', POSE_ANN,
              LOAD_KEYPOINTS + [auto_augment])
    assert ('pipeline[2].policies[1][0] mmdet.datasets.pipelines.'
            'transforms.Resize comes after') in str(error.value)


def recipe_pipelines(config):
    """(train, test) pipelines of a dataset config of the recipes."""
    data = Config.fromfile(osp.join(REPO_ROOT, config)).data
    train = data.train.datasets[0] if 'datasets' in data.train else data.train
    return train.pipeline, data.test.pipeline


@pytest.mark.parametrize('config', [
    'configs/_base_/datasets/coco_keypoint.py',
    'configs/_base_/datasets/crowdpose_keypoint.py',
    'tests/configs/tiny_petr_sample.py',
])
def test_recipe_pipelines_are_accepted(config):
    train, test = recipe_pipelines(config)
    assert len(build('opera.CocoPoseDataset', POSE_ANN, train)) == 8
    # The test pipelines use mmdet's Resize / RandomFlip: no keypoints are
    # loaded, predictions are mapped back by the scale factor.
    dataset = build('opera.CocoPoseDataset', POSE_ANN, test, test_mode=True)
    assert len(dataset) == 8


# ------------------------------ 2. strict loading for evaluation/inference


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Randomly initialised tiny detection and pose weights, saved."""
    folder = tmp_path_factory.mktemp('weights')
    paths = {}
    for name, config in [('det', DET_CONFIG), ('pose', POSE_CONFIG)]:
        set_random_seed(0)
        paths[name] = str(folder / f'{name}.pth')
        save_checkpoint(init_model(config), paths[name])
    return paths


def edited_checkpoint(path, out_path, drop, add):
    """Save the weights of ``path`` without key ``drop``, plus ``add``."""
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    state = checkpoint['state_dict']
    del state[drop]
    state[add] = torch.zeros(1)
    torch.save(checkpoint, out_path)
    return str(out_path)


def run_test_tool(monkeypatch, *args):
    """``main()`` of tools/test.py with ``args``, in this process; its
    process-wide settings (start method, thread counts) are left alone."""
    tool = load_tool('tools/test.py')
    monkeypatch.setattr(tool, 'setup_multi_processes', lambda cfg: None)
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', *map(str, args)])
    tool.main()


def test_test_tool_refuses_a_detection_checkpoint_for_a_pose_config(
        checkpoints, monkeypatch, capsys):
    with pytest.raises(ValueError) as error:
        run_test_tool(monkeypatch, POSE_CONFIG, checkpoints['det'], '--eval',
                      'keypoints')
    message = str(error.value)
    assert message.startswith(f'{checkpoints["det"]} does not fit the model')
    assert ('bbox_head.cls_branches.0.weight: checkpoint (80, 256), model '
            '(1, 256)') in message
    assert 'task/s' not in capsys.readouterr().out, 'inference ran'


def test_test_tool_names_a_truncated_checkpoint(checkpoints, tmp_path,
                                                monkeypatch, capsys):
    data = open(checkpoints['det'], 'rb').read()
    path = tmp_path / 'truncated.pth'
    path.write_bytes(data[:len(data) - 100])
    with pytest.raises(mmcv_custom.CheckpointReadError) as error:
        run_test_tool(monkeypatch, DET_CONFIG, path, '--eval', 'bbox',
                      '--cfg-options', *DET_SAMPLE_OPTIONS)
    assert str(error.value).startswith(
        f'cannot read checkpoint {path}: a zip archive cut short at '
        f'{len(data) - 100} bytes (no end record)')
    assert 'task/s' not in capsys.readouterr().out, 'inference ran'


def test_init_model_names_missing_and_unexpected_keys(checkpoints, tmp_path):
    dropped = 'bbox_head.kpt_branches.0.0.weight'
    path = edited_checkpoint(checkpoints['pose'], tmp_path / 'partial.pth',
                             dropped, 'bbox_head.extra')
    with pytest.raises(ValueError) as error:
        init_model(POSE_CONFIG, path)
    message = str(error.value)
    assert message.startswith(f'{path} and the model do not have the same')
    assert f'1 missing from the checkpoint (left at their initial values): ' \
        f'{dropped}' in message
    assert '1 unexpected (ignored): bbox_head.extra' in message
    assert '--non-strict' in message
    # Explicitly partial: the other weights are those of the file.
    model = init_model(POSE_CONFIG, path, strict=False)
    reference = torch.load(checkpoints['pose'], weights_only=False)
    weight = 'bbox_head.kpt_branches.0.2.weight'
    assert torch.equal(model.state_dict()[weight],
                       reference['state_dict'][weight])


def test_demo_refuses_a_checkpoint_with_missing_keys(checkpoints, tmp_path):
    dropped = 'bbox_head.kpt_branches.0.0.weight'
    path = edited_checkpoint(checkpoints['pose'], tmp_path / 'partial.pth',
                             dropped, 'bbox_head.extra')
    demo = load_tool('demo/image_demo.py')
    image = osp.join(IMAGES, '000000214704.jpg')
    args = [image, POSE_CONFIG, path, '--out-file', str(tmp_path / 'o.png')]
    with pytest.raises(ValueError, match=dropped):
        demo.main(args)
    assert not (tmp_path / 'o.png').exists()
    demo.main(args + ['--non-strict'])
    assert mmcv.imread(str(tmp_path / 'o.png')).shape == (424, 640, 3)


def not_an_image(path):
    path.write_text('not an image')
    return str(path)


def test_demo_names_a_file_that_is_not_an_image(tmp_path):
    bad = not_an_image(tmp_path / 'notes.jpg')
    demo = load_tool('demo/image_demo.py')
    # Checked before the model is built: the checkpoint is never read.
    with pytest.raises(demo.DemoInputError) as error:
        demo.main([bad, DET_CONFIG, str(tmp_path / 'no_such.pth')])
    assert str(error.value) == (
        f'{bad}: not a readable image (12 bytes that OpenCV cannot decode)')


def test_demo_folder_draws_the_other_images_and_counts_failures(
        checkpoints, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    for name in ('000000214704.jpg', '000000418049.jpg'):
        shutil.copy(osp.join(IMAGES, name), folder / name)
    bad = not_an_image(folder / '000000300000.jpg')
    out_dir = tmp_path / 'drawn'
    demo = load_tool('demo/image_demo.py')
    with pytest.raises(demo.DemoInputError) as error:
        demo.main([str(folder), DET_CONFIG, checkpoints['det'], '--out-file',
                   str(out_dir)])
    assert str(error.value).startswith(
        f'1 of 3 images in {folder} could not be read')
    assert f'{bad}: not a readable image' in str(error.value)
    assert sorted(os.listdir(out_dir)) == [
        '000000214704.png', '000000418049.png'
    ]


def write_video(path, num_frames):
    """An mp4 of ``num_frames`` 64x48 frames of rising grey levels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (64, 48))
    for index in range(num_frames):
        writer.write(np.full((48, 64, 3), 20 * index, np.uint8))
    writer.release()
    return str(path)


@pytest.mark.parametrize('damage', ['junk', 'cut'])
def test_demo_refuses_an_unreadable_video(checkpoints, tmp_path, damage):
    path = tmp_path / 'clip.mp4'
    if damage == 'junk':
        path.write_bytes(b'\0' * 1000)
    else:
        data = open(write_video(path, 6), 'rb').read()
        path.write_bytes(data[:len(data) // 2])
    out_file = tmp_path / 'drawn.mp4'
    demo = load_tool('demo/image_demo.py')
    with pytest.raises(demo.DemoInputError) as error:
        demo.main([str(path), DET_CONFIG, checkpoints['det'], '--out-file',
                   str(out_file)])
    assert str(error.value).startswith(f'{path}: ')
    assert ('not a readable video' in str(error.value)
            or 'frames could be read' in str(error.value))


def test_demo_draws_every_frame_of_a_whole_video(checkpoints, tmp_path):
    out_file = tmp_path / 'drawn.mp4'
    demo = load_tool('demo/image_demo.py')
    demo.main([write_video(tmp_path / 'clip.mp4', 6), DET_CONFIG,
               checkpoints['det'], '--out-file', str(out_file)])
    drawn = mmcv.VideoReader(str(out_file))
    assert (len(drawn), drawn.width, drawn.height) == (6, 64, 48)


# --------------------------- 3. num_classes whatever the runner


def iteration_cfg(tmp_path, max_iters=1, **overrides):
    """The tiny detection config on the sample, 1 image per batch, with
    mmcv's IterBasedRunner."""
    cfg = Config.fromfile(DET_CONFIG)
    cfg.merge_from_dict(
        dict(
            {
                'data.train.ann_file': DET_ANN,
                'data.train.img_prefix': IMAGES + '/',
                'data.samples_per_gpu': 1,
                'runner.type': 'IterBasedRunner',
                'runner.max_iters': max_iters,
                'runner.max_epochs': None,
                'work_dir': str(tmp_path),
                'seed': 0,
            }, **overrides))
    return cfg


def test_num_classes_is_checked_with_an_iteration_runner(tmp_path):
    cfg = iteration_cfg(tmp_path, **{'model.bbox_head.num_classes': 3})
    model = build_detector(cfg.model)
    dataset = build_dataset(cfg.data.train)
    with pytest.raises(ValueError) as error:
        train_model(model, [dataset], cfg, validate=False)
    assert str(error.value) == (
        'model.bbox_head.num_classes is 3, but the training dataset '
        f'({DET_ANN}) has 80 classes (person, bicycle, car, motorcycle, '
        'airplane, ... (80 in all)): set model.bbox_head.num_classes=80, or '
        'the classes of the dataset')
    assert not list(tmp_path.glob('*.pth')), 'nothing was trained'


# ------------------------- 4. misspelt keys in transformer layer configs

ENCODER = 'model.bbox_head.transformer.encoder.transformerlayers'
DECODER = 'model.bbox_head.transformer.decoder.transformerlayers'


@pytest.mark.parametrize('config, override, message', [
    (DET_CONFIG, {f'{ENCODER}.ffn_cfgs.feedforward_channel': 64},
     "transformerlayers.ffn_cfgs: FFN got an unexpected keyword argument "
     "'feedforward_channel' (known: act_cfg, add_identity, add_residual, "
     'dropout, dropout_layer, embed_dims, feedforward_channels, ffn_drop, '
     'init_cfg, num_fcs, type)'),
    (DET_CONFIG, {f'{DECODER}.batch_frist': False},
     "transformerlayers: BaseTransformerLayer got an unexpected keyword "
     "argument 'batch_frist' (known: attn_cfgs, batch_first, "),
    (POSE_CONFIG, {f'{DECODER}.attn_cfgs': {'0': dict(attn_dorp=0.)}},
     "transformerlayers.attn_cfgs[0]: MultiheadAttention got an unexpected "
     "keyword argument 'attn_dorp' (known: add_bias_kv, add_zero_attn, "
     'attn_drop, '),
    (POSE_CONFIG, {
        'model.bbox_head.transformer.refine_decoder.transformerlayers.'
        'ffn_cfgs.ffn_dorp': 0.
    }, "FFN got an unexpected keyword argument 'ffn_dorp'"),
])
def test_misspelt_layer_key_is_named_with_the_known_ones(
        config, override, message):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(override, allow_list_keys=True)
    with pytest.raises(TypeError) as error:
        build_detector(cfg.model)
    assert message in str(error.value)


# ------------------------------------ 5. JPEG corrupt in the middle


def corrupt_copy(tmp_path):
    """The sample images, the first one (id 214704) cut in the middle with
    its end marker kept: OpenCV decodes it with a libjpeg warning only, as
    an image that is grey from the cut on. Returns (folder, its path)."""
    folder = tmp_path / 'images'
    shutil.copytree(IMAGES, folder)
    path = folder / '000000214704.jpg'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] + data[-2:])
    return str(folder), str(path)


def corrupt_jpeg_error(path):
    """The error for the image of :func:`corrupt_copy` in training."""
    return (f'{path} (image id 214704 of {DET_ANN}): image file is truncated '
            'or corrupt (Corrupt JPEG data: premature end of data segment). '
            'To skip such images in training, set skip_corrupt_images=True '
            'in the dataset config')


def test_jpeg_corrupt_in_the_middle_stops_when_loaded(tmp_path):
    folder, path = corrupt_copy(tmp_path)
    image = mmcv.imread(path)  # what the pipeline would train on
    assert image.shape == (424, 640, 3)
    assert (image[-100:] == 128).mean() > 0.99, 'the lower part is grey'
    dataset = build(
        'opera.CocoDataset', DET_ANN, [dict(type='LoadImageFromFile')],
        img_prefix=folder)
    index = [info['id'] for info in dataset.data_infos].index(214704)
    with pytest.raises(ImageFileError) as error:
        dataset[index]
    assert str(error.value) == corrupt_jpeg_error(path)


def test_corrupt_jpeg_is_skipped_and_counted_on_request(tmp_path, caplog):
    folder, path = corrupt_copy(tmp_path)
    dataset = build(
        'opera.CocoDataset', DET_ANN, [dict(type='LoadImageFromFile')],
        img_prefix=folder, skip_corrupt_images=True)
    index = [info['id'] for info in dataset.data_infos].index(214704)
    with caplog.at_level(logging.WARNING, logger='opera'):
        item = dataset[index]
        dataset[index]
    assert item['filename'] != path  # another image stands in
    (message, ) = [r.getMessage() for r in caplog.records
                   if r.name == 'opera']
    assert message.startswith(f'skipped: {path} (image id 214704 of')
    assert message.endswith('1 of 8 image files skipped so far by this '
                            'process (skip_corrupt_images=True)')
    test_set = build(
        'opera.CocoDataset', DET_ANN, [dict(type='LoadImageFromFile')],
        img_prefix=folder, skip_corrupt_images=True, test_mode=True)
    with pytest.raises(ImageFileError, match='premature end of data'):
        test_set[[i['id'] for i in test_set.data_infos].index(214704)]


def count_decodes(monkeypatch):
    """Count the full and the 1/8-size strict decodes and OpenCV's."""
    counts = dict(strict=0, opencv=0)

    def counted(function, key):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(data_checks.simplejpeg, 'decode_jpeg',
                        counted(data_checks.simplejpeg.decode_jpeg, 'strict'))
    monkeypatch.setattr(mmcv, 'imfrombytes',
                        counted(mmcv.imfrombytes, 'opencv'))
    return counts


def test_opera_loader_decodes_each_image_once_as_opencv_would(monkeypatch):
    opera_set = build('opera.CocoDataset', DET_ANN,
                      [dict(type='opera.LoadImageFromFile')])
    mmdet_set = build('opera.CocoDataset', DET_ANN,
                      [dict(type='LoadImageFromFile')])
    counts = count_decodes(monkeypatch)
    opera_images = [opera_set[i]['img'] for i in range(len(opera_set))]
    assert counts == dict(strict=8, opencv=0)
    mmdet_images = [mmdet_set[i]['img'] for i in range(len(mmdet_set))]
    # The dataset's check (1/8 size) plus OpenCV's decode, per image.
    assert counts == dict(strict=16, opencv=8)
    for ours, theirs in zip(opera_images, mmdet_images):
        assert ours.dtype == np.uint8 and np.array_equal(ours, theirs)


def test_opera_loader_names_a_corrupt_jpeg_as_the_check_did(tmp_path):
    folder, path = corrupt_copy(tmp_path)
    dataset = build(
        'opera.CocoDataset', DET_ANN, [dict(type='opera.LoadImageFromFile')],
        img_prefix=folder)
    index = [info['id'] for info in dataset.data_infos].index(214704)
    with pytest.raises(ImageFileError) as error:
        dataset[index]
    assert str(error.value) == corrupt_jpeg_error(path)
    skipping = build(
        'opera.CocoDataset', DET_ANN, [dict(type='opera.LoadImageFromFile')],
        img_prefix=folder, skip_corrupt_images=True)
    assert skipping[index]['filename'] != path  # another image stands in


# ---------------------------------------------- 6. datasets without images


def no_images(data):
    data['images'], data['annotations'] = [], []


@pytest.mark.parametrize('dataset_type, ann_file', [
    ('opera.CocoDataset', DET_ANN),
    ('opera.CocoPoseDataset', POSE_ANN),
])
@pytest.mark.parametrize('test_mode', [False, True])
def test_file_without_images_stops(tmp_path, dataset_type, ann_file,
                                   test_mode):
    path = edited_json(tmp_path, ann_file, no_images)
    with pytest.raises(AnnotationError) as error:
        build(dataset_type, path, test_mode=test_mode)
    purpose = 'testing' if test_mode else 'training'
    class_name = dataset_type.split('.')[-1]  # mmcv's builder adds it
    assert str(error.value) == (
        f'{class_name}: {path}: "images" is empty: no image for {purpose}')


def test_no_usable_image_after_filtering_stops(tmp_path):
    def unlabel_everyone(data):
        for ann in data['annotations']:
            ann['keypoints'] = [0] * 51
            ann['num_keypoints'] = 0

    path = edited_json(tmp_path, POSE_ANN, unlabel_everyone)
    with pytest.raises(AnnotationError) as error:
        build('opera.CocoPoseDataset', path)
    assert str(error.value).startswith(
        f'CocoPoseDataset: {path}: none of its 8 images can be used for '
        'training: 0 are '
        'smaller than 32 pixels and 8 have no usable annotation of the '
        'classes person')
    assert len(build('opera.CocoPoseDataset', path, test_mode=True)) == 8


def test_iteration_runner_refuses_any_empty_dataset(tmp_path):
    # mmdet's own dataset has no check: its empty training set reaches the
    # data loader, whose sampler for IterBasedRunner would loop forever.
    path = edited_json(tmp_path, DET_ANN, no_images)
    cfg = iteration_cfg(tmp_path, **{'data.train.type': 'mmdet.CocoDataset',
                                     'data.train.ann_file': path})
    dataset = build_dataset(cfg.data.train)
    assert len(dataset) == 0
    with pytest.raises(ValueError) as error:
        train_model(build_detector(cfg.model), [dataset], cfg, validate=False)
    assert str(error.value) == f'the training dataset ({path}) is empty'


# ------------------------------------ 8. --eval checked before inference


def test_unknown_eval_metric_stops_before_inference(checkpoints, monkeypatch,
                                                    capsys):
    with pytest.raises(KeyError) as error:
        run_test_tool(monkeypatch, DET_CONFIG, checkpoints['det'], '--eval',
                      'bbox', 'bboxx', '--cfg-options', *DET_SAMPLE_OPTIONS)
    assert error.value.args[0] == (
        f"CocoDataset ({DET_ANN}) cannot evaluate metric 'bboxx': use bbox, "
        'segm, proposal, proposal_fast')
    assert 'task/s' not in capsys.readouterr().out, 'inference ran'


@pytest.mark.parametrize('dataset_type, ann_file, metrics, allowed', [
    ('opera.CocoPoseDataset', POSE_ANN, ['bbox', 'keypoint'],
     "'keypoint': use keypoints, bbox"),
    ('opera.CrowdPoseDataset', ('crowdpose_tiny', 'test_crowdpose.json'),
     'bbox', "'bbox': use keypoints"),
])
def test_pose_datasets_name_their_metrics(dataset_type, ann_file, metrics,
                                          allowed):
    if isinstance(ann_file, tuple):
        ann_file = data_path(*ann_file)
    dataset = build(dataset_type, ann_file, test_mode=True)
    with pytest.raises(KeyError, match=allowed):
        dataset.check_metrics(metrics)
    dataset.check_metrics('keypoints')
