"""Drawing of boxes, labels, keypoints and limbs onto an image.

Everything is drawn with OpenCV straight onto a copy of the image, so pixels
away from the drawn boxes, labels, limbs and keypoints keep their exact
values (mmdet's matplotlib renderer resamples the whole image) and a video
frame takes milliseconds. Coordinates are continuous pixel coordinates: the
point ``(x, y)`` lies in pixel ``(floor(x), floor(y))``.
"""
import cv2
import matplotlib
import mmcv
import numpy as np

from .skeleton import skeleton_of

# A qualitative colormap: neighbouring entries are easy to tell apart, so
# persons drawn one after another get clearly different colours.
COLORMAP = 'tab10'
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_COLOR = (255, 255, 255)
TEXT_THICKNESS = 1
# Space in pixels between a label's text and the edge of its background.
TEXT_PADDING = 2


def palette(num_colors, colormap=COLORMAP):
    """``num_colors`` distinct colours, cycling through a colormap.

    Args:
        num_colors (int): How many colours.
        colormap (str): A matplotlib colormap with a colour list.

    Returns:
        list[tuple[int, int, int]]: BGR colours in [0, 255].
    """
    colors = matplotlib.colormaps[colormap].colors
    return [
        tuple(int(round(255 * c)) for c in colors[i % len(colors)][::-1])
        for i in range(num_colors)
    ]


def split_result(result):
    """Stack a model's per-class results into per-instance arrays.

    Args:
        result (list | tuple): A detector's ``bbox_results`` (a list over
            classes of [n_c, 5] arrays ``(x1, y1, x2, y2, score)``) or a
            pose model's ``(bbox_results, keypoint_results)``, whose second
            part lists [n_c, K, 3] arrays ``(x, y, score)``.

    Returns:
        tuple: ``bboxes`` [n, 5], ``labels`` [n] (int64) and ``keypoints``
        [n, K, 3] (None for a detector's result).
    """
    bbox_results, keypoint_results = (
        result if isinstance(result, tuple) else (result, None))
    bboxes = np.vstack(bbox_results).reshape(-1, 5)
    labels = np.concatenate([
        np.full(len(boxes), label, dtype=np.int64)
        for label, boxes in enumerate(bbox_results)
    ])
    if keypoint_results is None:
        return bboxes, labels, None
    if not all(
            isinstance(kpts, np.ndarray) and kpts.ndim == 3
            for kpts in keypoint_results):
        raise TypeError('the second part of a result tuple must list '
                        '[n, K, 3] keypoint arrays, one per class (mask '
                        'results are not drawn here)')
    return bboxes, labels, np.concatenate(keypoint_results)


def _pixel(x, y):
    """The integer pixel that holds the continuous point ``(x, y)``."""
    return int(np.floor(x)), int(np.floor(y))


def draw_boxes(img,
               bboxes,
               labels,
               colors,
               class_names=None,
               thickness=2,
               font_size=13):
    """Draw boxes and their ``"name score"`` labels, in place.

    Args:
        img (np.ndarray): [H, W, 3] uint8 BGR image, modified.
        bboxes (np.ndarray): [n, 4] ``(x1, y1, x2, y2)`` or [n, 5] with a
            score, which the label then shows.
        labels (np.ndarray): [n] class indices.
        colors (list[tuple]): n BGR colours, one per box.
        class_names (Sequence[str], optional): Names by class index;
            ``"class i"`` when absent.
        thickness (int): Box line width in pixels.
        font_size (int): Label text height in pixels.
    """
    font_scale = cv2.getFontScaleFromHeight(FONT, font_size, TEXT_THICKNESS)
    for box, label, color in zip(bboxes, labels, colors):
        top_left, bottom_right = _pixel(*box[:2]), _pixel(*box[2:4])
        cv2.rectangle(img, top_left, bottom_right, color, thickness)
        text = class_names[label] if class_names else f'class {label}'
        if len(box) == 5:
            text += f' {box[4]:.2f}'
        _draw_label(img, text, top_left, color, font_scale)


def _draw_label(img, text, corner, color, font_scale):
    """Write ``text`` on a ``color`` background at a box's top-left
    ``corner``: above the box when there is room, else just inside it."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale,
                                                 TEXT_THICKNESS)
    label_w = text_w + 2 * TEXT_PADDING
    label_h = text_h + baseline + 2 * TEXT_PADDING
    x = max(corner[0], 0)
    y = corner[1] - label_h if corner[1] >= label_h else max(corner[1], 0)
    cv2.rectangle(img, (x, y), (x + label_w, y + label_h), color, cv2.FILLED)
    cv2.putText(img, text, (x + TEXT_PADDING, y + TEXT_PADDING + text_h), FONT,
                font_scale, TEXT_COLOR, TEXT_THICKNESS, cv2.LINE_AA)


def draw_poses(img,
               keypoints,
               colors,
               skeleton,
               kpt_score_thr=0.3,
               radius=4,
               thickness=2):
    """Draw limbs, then keypoints on top, one colour per person, in place.

    Args:
        img (np.ndarray): [H, W, 3] uint8 BGR image, modified.
        keypoints (np.ndarray): [n, K, 3] ``(x, y, score)``; for ground
            truth the visibility ``v`` is the score (0: not labelled).
        colors (list[tuple]): n BGR colours, one per person.
        skeleton (list[list[int]]): ``[i, j]`` keypoint pairs to join.
        kpt_score_thr (float): Keypoints scoring at most this are not
            drawn, nor are limbs that end at one.
        radius (int): Keypoint disc radius in pixels.
        thickness (int): Limb line width in pixels.
    """
    for person, color in zip(keypoints, colors):
        shown = person[:, 2] > kpt_score_thr
        for i, j in skeleton:
            if shown[i] and shown[j]:
                cv2.line(img, _pixel(*person[i, :2]), _pixel(*person[j, :2]),
                         color, thickness, cv2.LINE_AA)
        for x, y, _ in person[shown]:
            cv2.circle(img, _pixel(x, y), radius, color, cv2.FILLED,
                       cv2.LINE_AA)


def _check_shapes(bboxes, labels, keypoints):
    """Raise a ValueError naming the array whose shape is wrong."""
    if bboxes.ndim != 2 or bboxes.shape[1] not in (4, 5):
        raise ValueError(f'bboxes must be [n, 4] or [n, 5], got '
                         f'{list(bboxes.shape)}')
    if labels.shape != (len(bboxes), ):
        raise ValueError(f'labels must be [{len(bboxes)}] like bboxes, got '
                         f'{list(labels.shape)}')
    if keypoints is not None and (keypoints.ndim != 3
                                  or keypoints.shape[::2] != (len(bboxes), 3)):
        raise ValueError(f'keypoints must be [{len(bboxes)}, K, 3] like '
                         f'bboxes, got {list(keypoints.shape)}')


def imshow_det_keypoints(img,
                         bboxes,
                         labels,
                         keypoints=None,
                         class_names=None,
                         score_thr=0.3,
                         kpt_score_thr=0.3,
                         skeleton=None,
                         thickness=2,
                         radius=4,
                         font_size=13,
                         show=False,
                         win_name='',
                         wait_time=0,
                         out_file=None):
    """Draw instances (boxes, labels and, for persons, poses) on an image.

    With keypoints every instance gets its own colour (persons are all one
    class, so colouring by class would tell them apart by nothing); without,
    every class gets its own colour.

    Args:
        img (str | np.ndarray): Image file or [H, W, 3] BGR array (float
            arrays are clipped to [0, 255]); it is not modified.
        bboxes (np.ndarray): [n, 4] boxes, or [n, 5] with scores.
        labels (np.ndarray): [n] class indices.
        keypoints (np.ndarray, optional): [n, K, 3] ``(x, y, score)``.
        class_names (Sequence[str], optional): Names by class index.
        score_thr (float): Instances scoring at most this are not drawn
            (boxes without scores are always drawn).
        kpt_score_thr (float): See :func:`draw_poses`.
        skeleton (list[list[int]], optional): Limbs; by default the known
            skeleton of K keypoints (see :func:`skeleton_of`).
        thickness (int): Box and limb line width in pixels.
        radius (int): Keypoint disc radius in pixels.
        font_size (int): Label text height in pixels.
        show (bool): Also show the image in a window.
        win_name (str): That window's name.
        wait_time (int): Milliseconds to show it (0: until a key press).
        out_file (str, optional): Write the drawn image there (folders are
            created).

    Returns:
        np.ndarray: The drawn [H, W, 3] uint8 BGR image.
    """
    img = np.clip(mmcv.imread(img), 0, 255).astype(np.uint8)
    _check_shapes(bboxes, labels, keypoints)
    if bboxes.shape[1] == 5:
        keep = bboxes[:, 4] > score_thr
        bboxes, labels = bboxes[keep], labels[keep]
        keypoints = keypoints[keep] if keypoints is not None else None
    if keypoints is None:
        class_colors = palette(int(labels.max()) + 1 if len(labels) else 0)
        colors = [class_colors[label] for label in labels]
    else:
        colors = palette(len(bboxes))
    draw_boxes(img, bboxes, labels, colors, class_names, thickness, font_size)
    if keypoints is not None:
        if skeleton is None:
            skeleton = skeleton_of(keypoints.shape[1])
        draw_poses(img, keypoints, colors, skeleton, kpt_score_thr, radius,
                   thickness)
    if show:
        mmcv.imshow(img, win_name, wait_time)
    if out_file is not None:
        mmcv.imwrite(img, out_file)
    return img
