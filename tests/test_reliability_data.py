"""Bad data stops with one message naming the file and the problem; skipped
annotations are counted in the log (docs/reliability.md).

Every case edits the 8-image sample bundled in demo/data/coco_sample, for
opera's detection dataset (``opera.CocoDataset``, used by
configs/_base_/datasets/coco_detection.py) and the pose datasets.
"""
import json
import logging
import os.path as osp
import shutil

import pytest
import torch
from mmdet.datasets import build_dataset

from conftest import REPO_ROOT

import opera  # noqa: F401  (registers modules)
from opera.datasets import AnnotationError, ImageFileError
from opera.datasets.data_checks import TAIL_BYTES

SAMPLE = osp.join(REPO_ROOT, 'demo', 'data', 'coco_sample')
IMAGES = osp.join(SAMPLE, 'images')
ANN_FILES = {
    'opera.CocoDataset': 'instances_sample.json',
    'opera.CocoPoseDataset': 'person_keypoints_sample.json',
}
DATASET_TYPES = sorted(ANN_FILES)
LOAD = [dict(type='LoadImageFromFile')]


def sample_json(dataset_type):
    with open(osp.join(SAMPLE, 'annotations', ANN_FILES[dataset_type])) as f:
        return json.load(f)


def write_json(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def build(dataset_type, ann_file, img_prefix=IMAGES, pipeline=(), **kwargs):
    return build_dataset(
        dict(
            type=dataset_type,
            ann_file=ann_file,
            img_prefix=img_prefix,
            pipeline=list(pipeline),
            **kwargs))


def build_edited(tmp_path, dataset_type, edit, **kwargs):
    """Build the dataset on the sample json after ``edit(data)``."""
    data = sample_json(dataset_type)
    edit(data)
    return build(dataset_type, write_json(tmp_path, data), **kwargs)


def first_person(data):
    """The first annotation with labelled keypoints (or the first one)."""
    return next((a for a in data['annotations']
                 if a.get('num_keypoints', 1) > 0), data['annotations'][0])


@pytest.mark.parametrize('dataset_type', DATASET_TYPES)
def test_sample_data_passes_the_checks(dataset_type, caplog):
    with caplog.at_level(logging.INFO, logger='opera'):
        dataset = build(dataset_type,
                        osp.join(SAMPLE, 'annotations',
                                 ANN_FILES[dataset_type]))
    assert len(dataset) == 8
    # The sample has no degenerate box: nothing is reported as a problem.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize('dataset_type', DATASET_TYPES)
def test_malformed_json_names_file_and_position(tmp_path, dataset_type):
    path = tmp_path / 'broken.json'
    path.write_text('{"images": [{"id": 1,, "file_name": "a.jpg"}]}')
    with pytest.raises(AnnotationError) as error:
        build(dataset_type, str(path))
    message = str(error.value)
    assert str(path) in message
    assert 'not valid JSON' in message and 'line 1 column 22' in message


def drop_key(section, key):
    def edit(data):
        if section is None:
            del data[key]
        else:
            entry = (first_person(data)
                     if section == 'annotations' else data[section][1])
            del entry[key]
    return edit


@pytest.mark.parametrize('dataset_type', DATASET_TYPES)
@pytest.mark.parametrize('section, key, expected', [
    (None, 'categories', 'no "categories" list at the top level'),
    ('images', 'file_name', "image #1 (id {id}) has no 'file_name'"),
    ('images', 'height', "image #1 (id {id}) has no 'height'"),
    ('annotations', 'bbox', "(id {id}) has no 'bbox'"),
    ('annotations', 'image_id', "(id {id}) has no 'image_id'"),
])
def test_missing_key_names_entry_and_key(tmp_path, dataset_type, section,
                                         key, expected):
    data = sample_json(dataset_type)
    entry = None
    if section == 'images':
        entry = data['images'][1]
    elif section == 'annotations':
        entry = first_person(data)
    with pytest.raises(AnnotationError) as error:
        build_edited(tmp_path, dataset_type, drop_key(section, key))
    message = str(error.value)
    assert str(tmp_path / 'ann.json') + ': ' in message
    assert expected.format(id=entry and entry['id']) in message


def test_pose_annotation_without_keypoints_is_named(tmp_path):
    data = sample_json('opera.CocoPoseDataset')
    ann_id = first_person(data)['id']
    with pytest.raises(AnnotationError, match=f"id {ann_id}.*'keypoints'"):
        build_edited(tmp_path, 'opera.CocoPoseDataset',
                     drop_key('annotations', 'keypoints'))


def cut_keypoints(data):
    del first_person(data)['keypoints'][-3:]


def test_wrong_keypoint_length_stops(tmp_path):
    data = sample_json('opera.CocoPoseDataset')
    person = first_person(data)
    with pytest.raises(AnnotationError) as error:
        build_edited(tmp_path, 'opera.CocoPoseDataset', cut_keypoints)
    message = str(error.value)
    assert f'(id {person["id"]}, image id {person["image_id"]})' in message
    assert 'keypoints has 48 values, expected 51' in message


def test_crowdpose_expects_14_keypoints(tmp_path):
    # COCO's 17-keypoint file read as CrowdPose: 51 values, 42 expected.
    data = sample_json('opera.CocoPoseDataset')
    with pytest.raises(AnnotationError, match='has 51 values, expected 42'):
        build('opera.CrowdPoseDataset', write_json(tmp_path, data))


@pytest.mark.parametrize('dataset_type', DATASET_TYPES)
def test_unknown_category_id_stops(tmp_path, dataset_type):
    def edit(data):
        data['annotations'][3]['category_id'] = 999

    ann_id = sample_json(dataset_type)['annotations'][3]['id']
    with pytest.raises(AnnotationError) as error:
        build_edited(tmp_path, dataset_type, edit)
    assert f'annotation #3 (id {ann_id}' in str(error.value)
    assert 'category_id 999 is not in "categories"' in str(error.value)


@pytest.mark.parametrize('dataset_type', DATASET_TYPES)
def test_unknown_image_id_stops(tmp_path, dataset_type):
    def edit(data):
        data['annotations'][2]['image_id'] = 12345

    with pytest.raises(AnnotationError,
                       match='image_id 12345 is not in "images"'):
        build_edited(tmp_path, dataset_type, edit)


def test_class_missing_from_categories_stops(tmp_path):
    # mmdet would drop 'zebra' and shift every later label by one.
    def edit(data):
        data['categories'] = [
            c for c in data['categories'] if c['name'] != 'zebra'
        ]

    with pytest.raises(AnnotationError,
                       match="classes zebra are not among the category"):
        build_edited(tmp_path, 'opera.CocoDataset', edit)


@pytest.mark.parametrize('bbox, problem', [
    ([10, 10, float('nan'), 20], 'bbox holds nan'),
    ([10, 10, 20], 'bbox has 3 values, expected 4'),
    ([10, '10', 20, 20], "bbox holds '10', not a number"),
])
def test_bad_bbox_values_stop(tmp_path, bbox, problem):
    def edit(data):
        data['annotations'][5]['bbox'] = bbox

    with pytest.raises(AnnotationError, match=f'annotation #5 .*{problem}'):
        build_edited(tmp_path, 'opera.CocoDataset', edit)


def rename_image(data):
    """Point the image of the first person at a file that does not exist;
    return that image's id."""
    image_id = first_person(data)['image_id']
    (image, ) = [im for im in data['images'] if im['id'] == image_id]
    image['file_name'] = 'no_such_image.jpg'
    return image_id


@pytest.mark.parametrize('dataset_type', DATASET_TYPES)
def test_missing_image_files_stop_training_datasets(tmp_path, dataset_type):
    with pytest.raises(ImageFileError) as error:
        build_edited(tmp_path, dataset_type, rename_image)
    message = str(error.value)
    assert str(tmp_path / 'ann.json') in message
    assert 'image files are missing' in message
    assert osp.join(IMAGES, 'no_such_image.jpg') in message


def test_test_mode_dataset_checks_images_when_loaded(tmp_path):
    # Evaluating saved results needs no images: a test-mode dataset builds
    # without them, and stops at the first item it cannot load.
    data = sample_json('opera.CocoDataset')
    image_id = rename_image(data)
    dataset = build('opera.CocoDataset', write_json(tmp_path, data),
                    pipeline=LOAD, test_mode=True)
    index = dataset.img_ids.index(image_id)
    with pytest.raises(ImageFileError, match=f'no_such_image.jpg \\(image '
                       f'id {image_id} of .*\\): image file not found'):
        dataset[index]
    with pytest.raises(ImageFileError, match='1 of 8 image files'):
        dataset.check_image_files()


def one_image_folder(tmp_path, content):
    """A folder holding the first sample image, its bytes replaced by
    ``content(original_bytes)``; returns (folder, image path)."""
    data = sample_json('opera.CocoDataset')
    name = data['images'][0]['file_name']
    folder = tmp_path / 'images'
    folder.mkdir()
    for image in data['images']:
        shutil.copy(osp.join(IMAGES, image['file_name']), folder)
    with open(osp.join(IMAGES, name), 'rb') as f:
        original = f.read()
    (folder / name).write_bytes(content(original))
    return str(folder), str(folder / name)


@pytest.mark.parametrize('content, problem', [
    (lambda b: b[:len(b) // 2], 'truncated or corrupt'),
    (lambda b: b'not an image at all', 'truncated or corrupt'),
    (lambda b: b'', 'image file is empty'),
])
def test_broken_image_stops_when_loaded(tmp_path, content, problem):
    folder, path = one_image_folder(tmp_path, content)
    dataset = build('opera.CocoDataset',
                    osp.join(SAMPLE, 'annotations', ANN_FILES[
                        'opera.CocoDataset']),
                    img_prefix=folder, pipeline=LOAD, test_mode=True)
    assert dataset[1]['img'].ndim == 3  # intact images still load
    with pytest.raises(ImageFileError) as error:
        dataset[0]
    assert str(error.value).startswith(path)
    assert problem in str(error.value)
    assert 'image id 214704 of' in str(error.value)


def test_broken_image_error_reaches_the_main_process(tmp_path):
    folder, path = one_image_folder(tmp_path, lambda b: b[:len(b) // 2])
    dataset = build('opera.CocoDataset',
                    osp.join(SAMPLE, 'annotations', ANN_FILES[
                        'opera.CocoDataset']),
                    img_prefix=folder, pipeline=LOAD, test_mode=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=1, num_workers=1, collate_fn=lambda batch: batch)
    with pytest.raises(ImageFileError) as error:
        next(iter(loader))
    assert 'in DataLoader worker process 0' in str(error.value)
    assert f'{path} (image id 214704' in str(error.value)


def test_jpeg_with_trailing_bytes_is_accepted(tmp_path):
    # Some cameras write data after the JPEG end marker: the image is fine.
    folder, _ = one_image_folder(tmp_path,
                                 lambda b: b + b'\0' * (2 * TAIL_BYTES))
    dataset = build('opera.CocoDataset',
                    osp.join(SAMPLE, 'annotations', ANN_FILES[
                        'opera.CocoDataset']),
                    img_prefix=folder, pipeline=LOAD, test_mode=True)
    assert dataset[0]['img'].shape == (424, 640, 3)


def warnings_of(caplog):
    return [
        r.getMessage() for r in caplog.records
        if r.name == 'opera' and r.levelno == logging.WARNING
    ]


def test_degenerate_boxes_are_skipped_and_counted(tmp_path, caplog):
    thin, outside = 3, 7

    def edit(data):
        data['annotations'][thin]['bbox'][2] = 0.5  # narrower than 1 px
        data['annotations'][outside]['bbox'][:2] = [5000, 5000]

    data = sample_json('opera.CocoDataset')
    ids = [data['annotations'][i]['id'] for i in (thin, outside)]
    with caplog.at_level(logging.INFO, logger='opera'):
        dataset = build_edited(tmp_path, 'opera.CocoDataset', edit)
    (message, ) = warnings_of(caplog)
    assert f'2 of {len(data["annotations"])} annotations skipped: ' \
        'degenerate box' in message
    assert f'ids {ids[0]}, {ids[1]}' in message
    total = sum(len(dataset.get_ann_info(i)['bboxes'])
                for i in range(len(dataset)))
    assert total == len(data['annotations']) - 2


def test_pose_skips_are_counted_by_reason(tmp_path, caplog):
    def edit(data):
        posed = [a for a in data['annotations'] if a['num_keypoints'] > 0]
        posed[0]['area'] = 0
        posed[1]['bbox'][3] = 0.2

    data = sample_json('opera.CocoPoseDataset')
    anns = data['annotations']
    unposed = sum(a['num_keypoints'] == 0 for a in anns)
    with caplog.at_level(logging.INFO, logger='opera'):
        dataset = build_edited(tmp_path, 'opera.CocoPoseDataset', edit)
    messages = warnings_of(caplog)
    assert len(messages) == 2
    assert any('1 of 26 annotations skipped: person with a non-positive '
               'area' in m for m in messages)
    assert any('1 of 26 annotations skipped: degenerate box' in m
               for m in messages)
    infos = [r.getMessage() for r in caplog.records
             if r.levelno == logging.INFO]
    assert any(f'{unposed} of 26 annotations skipped: person without a '
               'labelled keypoint' in m for m in infos)
    persons = sum(len(dataset.get_ann_info(i)['bboxes'])
                  for i in range(len(dataset)))
    assert persons == len(anns) - unposed - 2


def first_visible_keypoint(ann):
    """Index of the first labelled keypoint of ``ann``."""
    return next(k for k in range(len(ann['keypoints']) // 3)
                if ann['keypoints'][3 * k + 2] > 0)


def move_keypoint(data, factor):
    """Put the first visible keypoint of the first person at ``factor`` x
    its image's width; return (annotation index, its id, keypoint index)."""
    ann = first_person(data)
    keypoint = first_visible_keypoint(ann)
    image = next(i for i in data['images'] if i['id'] == ann['image_id'])
    ann['keypoints'][3 * keypoint] = factor * image['width']
    return data['annotations'].index(ann), ann['id'], keypoint


def test_visible_keypoint_far_outside_the_image_is_named(tmp_path):
    data = sample_json('opera.CocoPoseDataset')
    index, ann_id, keypoint = move_keypoint(data, 10)
    assert keypoint == 9  # the sample's first person: left wrist only
    ann = data['annotations'][index]
    image = next(i for i in data['images'] if i['id'] == ann['image_id'])
    ann_file = write_json(tmp_path, data)
    with pytest.raises(AnnotationError) as error:
        build('opera.CocoPoseDataset', ann_file)
    x, y = ann['keypoints'][3 * keypoint:3 * keypoint + 2]
    # mmcv's builder puts the class name first.
    assert str(error.value).startswith(
        f'CocoPoseDataset: {ann_file}: annotation #{index} (id {ann_id}, '
        f'image id {ann["image_id"]}): visible keypoint {keypoint} '
        f'(left_wrist) at ({x}, {y}) is outside its '
        f'{image["width"]}x{image["height"]} image by more than 10% of its '
        'size; 1 annotation(s) have such keypoints '
        f'(ids {ann_id}). Fix them, or set skip_outside_keypoints=True')


def test_keypoint_within_the_margin_is_accepted(tmp_path):
    data = sample_json('opera.CocoPoseDataset')
    move_keypoint(data, 1.09)
    assert len(build('opera.CocoPoseDataset', write_json(tmp_path, data))) \
        == 8


def test_outside_keypoints_are_skipped_and_counted_on_request(
        tmp_path, caplog):
    data = sample_json('opera.CocoPoseDataset')
    _, ann_id, _ = move_keypoint(data, -2)
    reference = build('opera.CocoPoseDataset', write_json(
        tmp_path, sample_json('opera.CocoPoseDataset'), 'reference.json'))
    with caplog.at_level(logging.INFO, logger='opera'):
        dataset = build('opera.CocoPoseDataset', write_json(tmp_path, data),
                        skip_outside_keypoints=True)
    (message, ) = warnings_of(caplog)
    assert ('1 of 26 annotations skipped: person with a visible keypoint '
            f'outside the image (skip_outside_keypoints=True); ids {ann_id}'
            ) in message

    def persons(ds):
        return sum(len(ds.get_ann_info(i)['bboxes']) for i in range(len(ds)))

    # The edited person was alone in its image: the image goes too.
    assert (len(reference), len(dataset)) == (8, 7)
    assert persons(dataset) == persons(reference) - 1


def images_without_targets(data):
    """Make image 183872's two annotations crowd and 551757's two
    degenerate; return their ids."""
    for ann in data['annotations']:
        if ann['image_id'] == 183872:
            ann['iscrowd'] = 1
        if ann['image_id'] == 551757:
            ann['bbox'][:2] = [5000, 5000]
    return [183872, 551757]


@pytest.mark.parametrize('filter_empty_gt, fate, length', [
    (True, 'left out of training (filter_empty_gt=True)', 6),
    (False, 'kept for training as images without objects '
     '(filter_empty_gt=False)', 8),
])
def test_images_without_targets_are_counted_and_left_out_or_kept(
        tmp_path, caplog, filter_empty_gt, fate, length):
    data = sample_json('opera.CocoDataset')
    emptied = images_without_targets(data)
    with caplog.at_level(logging.INFO, logger='opera'):
        dataset = build('opera.CocoDataset', write_json(tmp_path, data),
                        filter_empty_gt=filter_empty_gt)
    infos = [r.getMessage() for r in caplog.records
             if r.levelno == logging.INFO]
    assert any('2 of 8 images have no usable annotation of the classes '
               f'(none, crowd only or skipped only): {fate}' in m
               for m in infos)
    assert len(dataset) == length
    kept = {info['id'] for info in dataset.data_infos}
    assert set(emptied) <= kept if not filter_empty_gt else \
        not set(emptied) & kept


@pytest.mark.parametrize('dataset_type', DATASET_TYPES)
def test_training_set_without_any_usable_annotation_stops(
        tmp_path, dataset_type):
    def all_crowd(data):
        for ann in data['annotations']:
            ann['iscrowd'] = 1

    with pytest.raises(AnnotationError, match='is usable for training'):
        build_edited(tmp_path, dataset_type, all_crowd,
                     filter_empty_gt=False)
