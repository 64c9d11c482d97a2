"""Draw a model's detections or poses on an image, a folder or a video.

    python demo/image_demo.py INPUT CONFIG CHECKPOINT [--out-file OUT]
        [--device cpu] [--score-thr 0.3] [--kpt-score-thr 0.3]
        [--backend pytorch|onnxruntime]

INPUT is an image file, a folder of images or a video file. Detection
models draw boxes with class names and scores; pose models draw each person
(box, score, keypoints and limbs) in its own colour. Without ``--out-file``
the result goes to ``work_dirs/demo/`` (an image ``<name>.png``, a folder
``<folder>/``, a video ``<name>.mp4``). Runs on CPU. With ``--backend
onnxruntime`` CHECKPOINT is an .onnx file of
``tools/deployment/pytorch2onnx.py``, run by ONNX Runtime on CPU (images are
resized to its input size; see docs/deployment.md).

Each input is read and checked before the model sees it; a file that is
not a readable image stops the demo naming it. In a folder the other images
are still drawn, and the run then ends with an error counting the failures.
A video that cannot be opened, or ends before the frame count in its header,
is an error too.
"""
import argparse
import os
import os.path as osp

import cv2
import mmcv
from mmcv import DictAction
from mmdet.apis import inference_detector

import opera  # noqa: F401  (fills the registries)
from opera.apis import init_model
from opera.core.visualization import imshow_det_keypoints, split_result

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')
DEFAULT_OUT_DIR = 'work_dirs/demo'
# MPEG-4 part 2: written by every OpenCV build, read by common players.
VIDEO_FOURCC = 'mp4v'
# With --show, each video frame stays up this long (ms) and playback runs on.
FRAME_WAIT_MS = 1


def parse_args(argv=None):
    """Parse the command line (``argv``, or ``sys.argv`` when None)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('input', help='image file, image folder or video')
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        'checkpoint',
        help='model weights, or the .onnx file with --backend onnxruntime')
    parser.add_argument(
        '--backend',
        choices=['pytorch', 'onnxruntime'],
        default='pytorch',
        help='what runs the network')
    parser.add_argument(
        '--out-file',
        help='where to write: an image file for an image, a folder for a '
        'folder, a video file for a video (default: under '
        f'{DEFAULT_OUT_DIR}/)')
    parser.add_argument(
        '--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='draw only instances scoring above this')
    parser.add_argument(
        '--kpt-score-thr',
        type=float,
        default=0.3,
        help='draw only keypoints scoring above this (pose models)')
    parser.add_argument(
        '--show', action='store_true', help='also show each result')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.test_cfg.max_per_img=20')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help='load a checkpoint that lacks some of the model keys (they '
        'keep their initial values) or has extra ones; by default missing '
        'or unexpected keys stop the demo')
    args = parser.parse_args(argv)
    if args.backend == 'onnxruntime' and (args.device != 'cpu'
                                          or args.non_strict):
        parser.error('--backend onnxruntime runs on CPU with the weights of '
                     'the .onnx file: --device and --non-strict are for the '
                     'pytorch backend')
    return args


class DemoInputError(ValueError):
    """An input file the demo cannot read; the message names it."""


def read_image(path):
    """Read an image file as a BGR [H, W, 3] uint8 array.

    Raises:
        DemoInputError: OpenCV cannot decode the file (not an image, or
            truncated before its pixel data).
    """
    image = mmcv.imread(path)
    if image is None:
        raise DemoInputError(
            f'{path}: not a readable image ({osp.getsize(path)} bytes that '
            'OpenCV cannot decode)')
    return image


def input_kind(path):
    """'image', 'folder' or 'video' by what ``path`` is; raises if none."""
    if osp.isdir(path):
        return 'folder'
    if not osp.isfile(path):
        raise FileNotFoundError(f'demo input not found: {path}')
    extension = osp.splitext(path)[1].lower()
    if extension in IMAGE_EXTENSIONS:
        return 'image'
    if extension in VIDEO_EXTENSIONS:
        return 'video'
    raise ValueError(f'{path}: unknown input type {extension!r}; use an '
                     f'image ({", ".join(IMAGE_EXTENSIONS)}), a video '
                     f'({", ".join(VIDEO_EXTENSIONS)}) or a folder')


def default_output(path, kind):
    """Where a result goes without ``--out-file``."""
    name = osp.splitext(osp.basename(osp.normpath(path)))[0]
    suffix = dict(image='.png', folder='', video='.mp4')[kind]
    return osp.join(DEFAULT_OUT_DIR, name + suffix)


def draw(model, image, args, out_file=None, wait_time=0):
    """Run ``model`` on a BGR image and draw its result.

    Args:
        model (nn.Module): From :func:`opera.apis.init_model`.
        image (np.ndarray): [H, W, 3] uint8 BGR.
        args (argparse.Namespace): Thresholds and ``show``.
        out_file (str, optional): Also write the drawn image there.
        wait_time (int): With ``--show``, milliseconds to show the image
            (0: until a key press).

    Returns:
        np.ndarray: The drawn [H, W, 3] image.
    """
    bboxes, labels, keypoints = split_result(inference_detector(model, image))
    # A pose model draws the limbs of its own keypoint layout.
    layout = getattr(getattr(model, 'bbox_head', None), 'keypoint_layout',
                     None)
    return imshow_det_keypoints(
        image,
        bboxes,
        labels,
        keypoints,
        class_names=model.CLASSES,
        score_thr=args.score_thr,
        kpt_score_thr=args.kpt_score_thr,
        skeleton=None if layout is None else layout.skeleton,
        show=args.show,
        wait_time=wait_time,
        out_file=out_file)


def run_folder(model, folder, out_dir, args):
    """Draw every image of ``folder`` (not recursive) into ``out_dir``."""
    names = sorted(
        name for name in os.listdir(folder)
        if osp.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
    if not names:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) '
                                f'in {folder}')
    failures = []
    for name in mmcv.track_iter_progress(names):
        out_file = osp.join(out_dir, osp.splitext(name)[0] + '.png')
        try:
            image = read_image(osp.join(folder, name))
        except DemoInputError as error:
            # One bad file should not cost the drawings of the others.
            print(f'\nskipped {error}')
            failures.append(str(error))
            continue
        draw(model, image, args, out_file)
    if failures:
        raise DemoInputError(
            f'{len(failures)} of {len(names)} images in {folder} could not '
            'be read (the others were drawn into '
            f'{out_dir}):\n  ' + '\n  '.join(failures))


def run_video(model, video_path, out_file, args):
    """Draw every frame of a video into a video at the same frame rate.

    Raises:
        DemoInputError: The video cannot be opened, or fewer frames could
            be read than its header announces (what was read is written).
    """
    video = open_video(video_path)
    mmcv.mkdir_or_exist(osp.dirname(osp.abspath(out_file)))
    writer = cv2.VideoWriter(out_file, cv2.VideoWriter_fourcc(*VIDEO_FOURCC),
                             video.fps, (video.width, video.height))
    num_written = 0
    try:
        for frame in mmcv.track_iter_progress(video):
            writer.write(draw(model, frame, args, wait_time=FRAME_WAIT_MS))
            num_written += 1
    finally:
        writer.release()
    if num_written < len(video):
        raise DemoInputError(
            f'{video_path}: only {num_written} of its {len(video)} frames '
            f'could be read (truncated?); those are in {out_file}')


def open_video(path):
    """An ``mmcv.VideoReader`` whose first frame decodes.

    Raises:
        DemoInputError: OpenCV cannot open the file or decode a frame.
    """
    video = mmcv.VideoReader(path)
    if not video.opened or len(video) == 0 or video.get_frame(0) is None:
        raise DemoInputError(
            f'{path}: not a readable video ({osp.getsize(path)} bytes; '
            'OpenCV cannot open it or decode its first frame)')
    return video


def main(argv=None):
    """Run the demo as the command line describes; return the output."""
    args = parse_args(argv)
    kind = input_kind(args.input)
    out = args.out_file or default_output(args.input, kind)
    # A single image is read before the model is built (seconds).
    image = read_image(args.input) if kind == 'image' else None
    if args.backend == 'onnxruntime':
        from opera.apis.onnx_backend import init_onnx_model
        model = init_onnx_model(args.config, args.checkpoint,
                                args.cfg_options)
    else:
        model = init_model(
            args.config,
            args.checkpoint,
            args.device,
            args.cfg_options,
            strict=not args.non_strict)
    if kind == 'image':
        draw(model, image, args, out)
    elif kind == 'folder':
        run_folder(model, args.input, out, args)
    else:
        run_video(model, args.input, out, args)
    print(f'\nwrote {out}')
    return out


if __name__ == '__main__':
    main()
