"""Checks of COCO-format annotation files and image files.

Bad data should stop a run with one message that names the file and the
problem, at start-up where possible, instead of a ``KeyError`` deep inside
pycocotools or a data-loader worker, or a silent change of what is trained
on. What is checked, and which problems stop a run and which are skipped
with a count in the log, is listed in docs/reliability.md.
"""
import io
import math
import os
import warnings

import mmcv
import numpy as np
from PIL import Image

try:  # optional: without it, corrupt JPEG data goes undetected (warned)
    import simplejpeg
except ImportError:
    simplejpeg = None

# Keys every image and every category entry of a COCO json must have.
IMAGE_KEYS = ('id', 'file_name', 'width', 'height')
CATEGORY_KEYS = ('id', 'name')
BBOX_LENGTH = 4  # x, y, w, h
# Markers that a complete JPEG / PNG file starts and ends with. A JPEG may
# carry a few bytes after its end marker, so the end is searched for in the
# last TAIL_BYTES.
JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'
PNG_START, PNG_END = b'\x89PNG\r\n\x1a\n', b'IEND\xaeB`\x82'
TAIL_BYTES = 256
# JPEG data is checked by decoding it as small as libjpeg-turbo can (1/8 of
# each side, at least this many pixels): the entropy decoding, where
# corruption shows, is complete, and the pixels are not needed.
JPEG_CHECK_MIN_SIZE = 1
# An Exif segment sits in the first APP1 marker, right after the start.
EXIF_MARKER, EXIF_SEARCH_BYTES = b'Exif\x00\x00', 64
EXIF_ORIENTATION_TAG = 0x0112
# Examples named in a message about many entries.
MAX_EXAMPLES = 5
# Annotations checked per numpy array (bounds the memory used).
CHECK_CHUNK = 10000
# numpy dtype kinds of numbers: signed, unsigned, float (not bool, str).
NUMBER_KINDS = 'iuf'


class AnnotationError(ValueError):
    """An annotation file is malformed or inconsistent."""


class ImageFileError(OSError):
    """An image file is missing, truncated or cannot be decoded."""


def examples(items):
    """The first few of ``items`` as text, with the total if there are
    more."""
    items = list(items)
    text = ', '.join(str(item) for item in items[:MAX_EXAMPLES])
    if len(items) > MAX_EXAMPLES:
        text += f', ... ({len(items)} in all)'
    return text


def check_coco_dict(data, ann_file, classes, ann_keys,
                    with_annotations=True):
    """Check a loaded COCO json; raise at the first problem found.

    Args:
        data (dict): The json content.
        ann_file (str): Its path, for the messages.
        classes (Sequence[str]): Class names the dataset trains on; each
            must be a category name.
        ann_keys (Sequence[str]): Keys every annotation must have.
        with_annotations (bool): Whether an 'annotations' list is required
            (image-info files for test servers have none).

    Raises:
        AnnotationError: Naming the file, the entry and the problem.
    """
    if not isinstance(data, dict):
        _fail(ann_file, f'expected a JSON object with "images", '
              f'"annotations" and "categories", got a {type(data).__name__}')
    sections = ['images', 'categories']
    if with_annotations or 'annotations' in data:
        sections.append('annotations')
    for section in sections:
        if not isinstance(data.get(section), list):
            _fail(ann_file, f'no "{section}" list at the top level')
    img_ids = _check_entries(data['images'], IMAGE_KEYS, 'image', ann_file)
    cat_ids = _check_entries(data['categories'], CATEGORY_KEYS, 'category',
                             ann_file)
    _check_classes(data['categories'], classes, ann_file)
    annotations = data.get('annotations', [])
    _check_entries(annotations, ann_keys, 'annotation', ann_file)
    for index, ann in enumerate(annotations):
        problem = _reference_problem(ann, img_ids, cat_ids)
        if problem is not None:
            fail_on_annotation(ann_file, index, ann, problem)
    check_number_lists(annotations, 'bbox', BBOX_LENGTH, ann_file)


def fail_on_annotation(ann_file, index, ann, problem):
    """Raise AnnotationError about annotation #``index`` of the file."""
    _fail(ann_file, f'annotation #{index} (id {ann["id"]}, image id '
          f'{ann["image_id"]}): {problem}')


def _fail(ann_file, message):
    raise AnnotationError(f'{ann_file}: {message}')


def _check_entries(entries, keys, kind, ann_file):
    """Every entry is an object with ``keys`` and a unique id; return the
    set of ids."""
    ids = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            _fail(ann_file, f'{kind} #{index} is not a JSON object')
        missing = [key for key in keys if key not in entry]
        if missing:
            _fail(ann_file, f'{kind} #{index} (id {entry.get("id")}) has no '
                  f'{", ".join(repr(key) for key in missing)}')
        if entry['id'] in ids:
            _fail(ann_file, f'{kind} id {entry["id"]} is used twice')
        ids.add(entry['id'])
    return ids


def _check_classes(categories, classes, ann_file):
    """Each class name must be a category name: mmdet would silently drop
    the others and shift every label after them."""
    names = {category['name'] for category in categories}
    missing = [name for name in classes if name not in names]
    if missing:
        _fail(ann_file, f'classes {examples(missing)} are not among the '
              f'category names ({examples(sorted(names))})')


def _reference_problem(ann, img_ids, cat_ids):
    """Why an annotation's image or category id is unknown, or None."""
    if ann['image_id'] not in img_ids:
        return f'image_id {ann["image_id"]} is not in "images"'
    if ann['category_id'] not in cat_ids:
        return (f'category_id {ann["category_id"]} is not in "categories" '
                f'(ids {examples(sorted(cat_ids))})')
    return None


def check_number_lists(annotations, key, length, ann_file):
    """``ann[key]`` is a list of ``length`` finite numbers wherever present.

    Checked a chunk of annotations at a time with numpy; only a chunk that
    fails is walked one by one to name the culprit.

    Raises:
        AnnotationError: Naming the first bad annotation.
    """
    indices = [i for i, ann in enumerate(annotations) if key in ann]
    for start in range(0, len(indices), CHECK_CHUNK):
        chunk = indices[start:start + CHECK_CHUNK]
        if _all_finite_rows([annotations[i][key] for i in chunk], length):
            continue
        for index in chunk:
            problem = _number_list_problem(annotations[index][key], key,
                                           length)
            if problem is not None:
                fail_on_annotation(ann_file, index, annotations[index],
                                   problem)


def keypoints_outside(annotations, images, num_keypoints, margin):
    """Find visible keypoints outside their image by more than ``margin``.

    A keypoint (x, y, v) with v > 0 is outside when x < -margin x W,
    x > (1 + margin) x W, or likewise for y and H, W x H being its image's
    size. The keypoint lists must already be checked
    (:func:`check_number_lists`).

    Args:
        annotations (list[dict]): COCO annotations with ``keypoints``.
        images (dict): Image id -> image entry (``width``, ``height``).
        num_keypoints (int): K.
        margin (float): Allowed distance outside, as a fraction of the
            image's width / height.

    Returns:
        list[tuple[int, int]]: (annotation index, first keypoint index
        outside) for each annotation that has one, in file order.
    """
    indices = [i for i, ann in enumerate(annotations) if 'keypoints' in ann]
    found = []
    for start in range(0, len(indices), CHECK_CHUNK):
        chunk = indices[start:start + CHECK_CHUNK]
        # [n, K, 3] keypoints and [n, 1, 2] image sizes (W, H).
        kpts = np.array([annotations[i]['keypoints'] for i in chunk],
                        dtype=np.float64).reshape(-1, num_keypoints, 3)
        sizes = np.array([[
            images[annotations[i]['image_id']]['width'],
            images[annotations[i]['image_id']]['height']
        ] for i in chunk], dtype=np.float64)[:, None, :]
        xy = kpts[..., :2]
        outside = ((xy < -margin * sizes) | (xy > (1 + margin) * sizes))
        outside = outside.any(-1) & (kpts[..., 2] > 0)  # [n, K]
        for row in np.flatnonzero(outside.any(-1)):
            found.append((chunk[row], int(np.argmax(outside[row]))))
    return found


def _all_finite_rows(rows, length):
    """Whether ``rows`` are all lists of ``length`` finite numbers."""
    try:
        array = np.array(rows)
    except ValueError:  # rows of different lengths
        return False
    return (array.ndim == 2 and array.shape[1] == length
            and array.dtype.kind in NUMBER_KINDS
            and bool(np.isfinite(array).all()))


def _number_list_problem(values, name, length):
    """Why ``values`` is not a list of ``length`` finite numbers, or None."""
    if not isinstance(values, list):
        return f'{name} is a {type(values).__name__}, not a list'
    if len(values) != length:
        return f'{name} has {len(values)} values, expected {length}'
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f'{name} holds {value!r}, not a number'
        if not math.isfinite(value):
            return f'{name} holds {value}'
    return None


def image_where(path, context=''):
    """An image file and where it comes from, as messages name it."""
    return f'{path} ({context})' if context else path


def unreadable_image(where, error):
    """The ImageFileError for a file that cannot be opened (OSError)."""
    return ImageFileError(f'{where}: image file not found or unreadable '
                          f'({error.strerror})')


def check_image_file(path, context=''):
    """Raise if the image at ``path`` is missing, empty, truncated or
    corrupt.

    JPEG files are decoded at 1/8 of their size with libjpeg-turbo in its
    strict mode (``simplejpeg``), which fails where OpenCV and PIL only print
    a libjpeg warning ("Corrupt JPEG data: premature end of data segment")
    and return an image that is grey from the damage on. Complete PNG files
    cost two small reads (first and last bytes); other files, and PNG files
    without their end marker, are decoded once with PIL to tell a truncated
    file from a valid one.

    Args:
        path (str): Local image path.
        context (str): Where the image comes from, e.g. ``"image id 3 of
            ann.json"``, added to the message.

    Raises:
        ImageFileError: Naming the file and the problem.
    """
    where = image_where(path, context)
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise unreadable_image(where, error) from error
    if size == 0:
        raise ImageFileError(f'{where}: image file is empty')
    with open(path, 'rb') as f:
        head = f.read(len(PNG_START))
        if head.startswith(JPEG_START) and simplejpeg is not None:
            f.seek(0)
            _check_jpeg_data(f.read(), where)
            return
        f.seek(max(size - TAIL_BYTES, 0))
        tail = f.read()
    if head.startswith(JPEG_START):
        _warn_no_strict_jpeg()
    if _has_end_marker(head, tail):
        return
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(f'{where}: image file is truncated or corrupt '
                             f'({error})') from error


def decode_image_checked(data, where, channel_order='bgr'):
    """Decode image bytes to a colour image, checking them in the same
    decode.

    A JPEG is decoded once, at full size, by libjpeg-turbo in its strict
    mode (``simplejpeg``): any libjpeg error or warning is an error, and
    the pixels are those OpenCV gives (the same library, the same islow
    IDCT and fancy upsampling). JPEGs that ``simplejpeg`` cannot decode to
    colour as OpenCV does (CMYK / YCCK, an EXIF orientation to apply) are
    checked strictly at 1/8 size and decoded by OpenCV. Other formats are
    checked as :func:`check_image_file` does and decoded by OpenCV.

    Args:
        data (bytes): The file's content.
        where (str): The file (and where it comes from), for messages.
        channel_order (str): 'bgr' or 'rgb'.

    Returns:
        np.ndarray: [H, W, 3] uint8.

    Raises:
        ImageFileError: Empty, truncated, corrupt or not an image.
    """
    if not data:
        raise ImageFileError(f'{where}: image file is empty')
    if data.startswith(JPEG_START) and simplejpeg is not None:
        image = _decode_jpeg_strictly(data, where, channel_order.upper())
        if image is not None:
            return image
    else:
        if data.startswith(JPEG_START):
            _warn_no_strict_jpeg()
        _check_in_memory(data, where)
    image = mmcv.imfrombytes(data, flag='color', channel_order=channel_order)
    if image is None:
        raise ImageFileError(f'{where}: image file is truncated or corrupt '
                             '(OpenCV cannot decode it)')
    return image


def _decode_jpeg_strictly(data, where, colorspace):
    """Full-size strict decode of JPEG bytes into ``colorspace`` ('BGR' /
    'RGB'); None (after a strict check) where OpenCV must decode."""
    try:
        _, _, source_colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise ImageFileError(f'{where}: image file is truncated or corrupt '
                             f'({error})') from error
    if source_colorspace in ('CMYK', 'YCCK') or _exif_orientation(data) > 1:
        _check_jpeg_data(data, where)
        return None
    try:
        return simplejpeg.decode_jpeg(data, colorspace, strict=True)
    except ValueError as error:
        raise ImageFileError(f'{where}: image file is truncated or corrupt '
                             f'({error})') from error


def _exif_orientation(data):
    """The EXIF orientation of JPEG bytes (1: none), which OpenCV applies.

    Only a file with an Exif (APP1) segment is parsed, by PIL (header only).
    """
    if EXIF_MARKER not in data[:EXIF_SEARCH_BYTES]:
        return 1
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError):
        return 1  # the strict decode names the problem


def _check_in_memory(data, where):
    """:func:`check_image_file`'s end-marker / PIL check on bytes."""
    if _has_end_marker(data[:len(PNG_START)], data[-TAIL_BYTES:]):
        return
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(f'{where}: image file is truncated or corrupt '
                             f'({error})') from error


def _check_jpeg_data(data, where):
    """Decode JPEG bytes strictly (small); raise ImageFileError on any
    libjpeg error or warning."""
    try:
        _, _, source_colorspace, _ = simplejpeg.decode_jpeg_header(data)
        # libjpeg-turbo converts CMYK / YCCK only to CMYK.
        colorspace = ('CMYK' if source_colorspace in ('CMYK', 'YCCK') else
                      'GRAY')
        simplejpeg.decode_jpeg(
            data,
            colorspace,
            min_height=JPEG_CHECK_MIN_SIZE,
            min_width=JPEG_CHECK_MIN_SIZE,
            strict=True)
    except ValueError as error:
        raise ImageFileError(f'{where}: image file is truncated or corrupt '
                             f'({error})') from error


def _warn_no_strict_jpeg():
    """Say once per process that corrupt JPEG data cannot be detected."""
    warnings.warn(
        'simplejpeg is not installed: JPEG files corrupt in the middle are '
        'not detected (pip install simplejpeg)', RuntimeWarning)


def _has_end_marker(head, tail):
    """Whether a JPEG or PNG file ends as a complete one does."""
    if head.startswith(JPEG_START):
        return JPEG_END in tail
    if head.startswith(PNG_START):
        return tail.endswith(PNG_END)
    return False


def missing_files(paths):
    """The paths in ``paths`` that are not files, in order."""
    return [path for path in paths if not os.path.isfile(path)]
