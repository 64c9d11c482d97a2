"""ONNX Runtime as a detector: an exported graph behind the model interface.

:class:`ONNXRuntimeDetector` takes what a detector takes (the test
pipeline's ``img`` and ``img_metas``) and returns what it returns, so
``tools/test.py`` (its test loop, evaluation, ``--show-dir``) and
``demo/image_demo.py`` (mmdet's ``inference_detector``) run it unchanged.
It runs the network in ONNX Runtime and everything else as the PyTorch path
does: the config's test pipeline before, the head's post-processing after
(:func:`.inference_graph.graph_results`).

The graph has a fixed input size and no padding masks, so the test pipeline
must turn every image into exactly that size: :func:`fixed_size_pipeline`
makes it resize each image to (H, W) (aspect ratio not kept). The detector
logs this once, when it is created (:func:`describe_resize`).

onnxruntime and onnx are imported only here, when a file is loaded.
"""
import copy
import os.path as osp

import torch
import torch.nn as nn

from opera.utils import get_root_logger
from .inference import init_model
from .inference_graph import OUTPUT_NAMES, graph_results
from .onnx_export import CHECKED_IDENTITY, METADATA_PREFIX, model_identity


def read_identity(onnx_file):
    """The ``opera.*`` metadata of an exported file, without the prefix.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable ONNX model, or not exported by opera.
    """
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX model not found: {onnx_file}')
    import onnx
    try:
        model = onnx.load(onnx_file, load_external_data=False)
    except Exception as error:  # protobuf raises its own DecodeError
        raise ValueError(f'{onnx_file} is not a readable ONNX model '
                         f'(corrupt or truncated?): {error}') from error
    identity = {
        prop.key[len(METADATA_PREFIX):]: prop.value
        for prop in model.metadata_props
        if prop.key.startswith(METADATA_PREFIX)
    }
    if 'kind' not in identity or 'input_size' not in identity:
        raise ValueError(
            f'{onnx_file} has no opera metadata (opera.kind, '
            'opera.input_size): export it with '
            'tools/deployment/pytorch2onnx.py')
    return identity


def check_identity(onnx_file, file_identity, detector):
    """Raise unless the file was exported from ``detector``'s model."""
    expected = model_identity(detector)
    wrong = [
        f'{key} {file_identity.get(key, "missing")} in the file, '
        f'{expected[key]} in the config' for key in CHECKED_IDENTITY
        if key in expected and file_identity.get(key) != expected[key]
    ]
    if wrong:
        exported_from = file_identity.get('config', 'another config')
        raise ValueError(
            f'{onnx_file} was exported from another model '
            f'({exported_from}): ' + '; '.join(wrong))


def informative_differences(file_identity, detector):
    """What the file says about itself that the config does not, for a
    warning (not checked: the file may be run with a renamed config or by
    another opera version): its config file name and opera version.

    Returns:
        list[str]: One phrase per entry that differs.
    """
    expected = model_identity(detector)
    config = getattr(getattr(detector, 'cfg', None), 'filename', None)
    if config:
        expected['config'] = osp.basename(config)
    return [
        f'{key} {file_identity[key]} in the file, {expected[key]} here'
        for key in ('config', 'opera_version')
        if key in file_identity and key in expected
        and file_identity[key] != expected[key]
    ]


def input_size_of(onnx_file):
    """(H, W) the file's graph takes."""
    height, width = read_identity(onnx_file)['input_size'].split('x')
    return int(height), int(width)


def fixed_size_pipeline(pipeline, input_size):
    """The test pipeline with every image resized to exactly ``input_size``.

    Args:
        pipeline (list[dict]): A test pipeline with a ``Resize`` step, at
            the top level or inside ``MultiScaleFlipAug``.
        input_size (tuple[int, int]): (H, W).

    Returns:
        list[dict]: A copy; the scale is (W, H) with ``keep_ratio=False``.
    """
    height, width = input_size
    pipeline = copy.deepcopy(pipeline)
    found = False
    for step in pipeline:
        if step['type'] == 'MultiScaleFlipAug':
            # Its Resize steps take the scale from here.
            step.pop('scale_factor', None)
            step['img_scale'] = (width, height)
            resizes = [s for s in step['transforms'] if _is_resize(s)]
        elif _is_resize(step):
            step.pop('scale_factor', None)
            step['img_scale'] = (width, height)
            resizes = [step]
        else:
            continue
        for resize in resizes:
            resize['keep_ratio'] = False
            found = True
    if not found:
        raise ValueError('the test pipeline has no Resize step to fix the '
                         f'input size {height}x{width} with')
    return pipeline


def describe_resize(onnx_file, input_size):
    """What the backend does to image sizes, in one line for the log."""
    height, width = input_size
    return (f'{onnx_file} takes {height}x{width} (HxW) images only: every '
            f'image is resized to exactly {width}x{height} (WxH; aspect '
            "ratio not kept, no padding) instead of the config's test "
            'scale, and the results are mapped back to its original size; '
            'accuracy can differ from the PyTorch model '
            '(docs/deployment.md)')


def _is_resize(step):
    return step['type'].split('.')[-1] == 'Resize'


class ONNXRuntimeDetector(nn.Module):
    """An exported graph run by ONNX Runtime, used like the detector.

    Args:
        onnx_file (str): From ``tools/deployment/pytorch2onnx.py``.
        detector (nn.Module): The config's detector (its weights are not
            used: the head's post-processing, class names and drawing are).
        num_threads (int, optional): ONNX Runtime intra-op threads
            (default: its own choice).
    """

    def __init__(self, onnx_file, detector, num_threads=None):
        super().__init__()
        identity = read_identity(onnx_file)
        check_identity(onnx_file, identity, detector)
        self.onnx_file = onnx_file
        self.input_size = input_size_of(onnx_file)
        self.detector = detector.eval()
        self.cfg = getattr(detector, 'cfg', None)
        self.session = self._session(num_threads)
        self.output_names = OUTPUT_NAMES[identity['kind']]
        self._check_graph_input()
        # Once per run: tools/test.py and the demo create one detector.
        logger = get_root_logger()
        logger.warning(describe_resize(onnx_file, self.input_size))
        differences = informative_differences(identity, detector)
        if differences:
            logger.warning(f'{onnx_file}: ' + '; '.join(differences) +
                           ' (the model identity agrees; running it)')

    @property
    def CLASSES(self):
        """Class names, the detector's (which draws them)."""
        return getattr(self.detector, 'CLASSES', None)

    @CLASSES.setter
    def CLASSES(self, names):
        self.detector.CLASSES = names

    def _session(self, num_threads):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            return onnxruntime.InferenceSession(
                self.onnx_file, options, providers=['CPUExecutionProvider'])
        except Exception as error:  # onnxruntime's own exception types
            raise ValueError(f'ONNX Runtime cannot load {self.onnx_file}: '
                             f'{error}') from error

    def _check_graph_input(self):
        """Raise unless the graph takes ``img`` [batch, 3, H, W] at the
        metadata's input size (the pipeline resizes to the metadata's; a
        graph of another size would fail at every image)."""
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        shape = inputs.get('img')
        expected = [3, *self.input_size]
        if shape is None or len(shape) != 4 or list(shape[1:]) != expected:
            raise ValueError(
                f'{self.onnx_file}: the graph takes {inputs}, not img '
                f'[batch, {", ".join(map(str, expected))}] as its metadata '
                f'(opera.input_size) says')

    def run_graph(self, img):
        """The graph's outputs for an image batch.

        Args:
            img (Tensor): [bs, 3, H, W] at the exported size, not padded.

        Returns:
            list[np.ndarray]: In ``output_names`` order.
        """
        height, width = self.input_size
        if tuple(img.shape[-2:]) != (height, width):
            raise ValueError(
                f'{self.onnx_file} takes {height}x{width} images, got '
                f'{tuple(img.shape[-2:])}: resize to that size (see '
                'opera.apis.onnx_backend.fixed_size_pipeline) or export at '
                'this size')
        array = img.detach().cpu().float().numpy()
        return self.session.run(list(self.output_names), {'img': array})

    def simple_test(self, img, img_metas, rescale=False):
        """Results of a batch as ``detector.simple_test`` gives them."""
        for meta in img_metas:
            if tuple(meta['img_shape'][:2]) != self.input_size:
                raise ValueError(
                    f'{meta.get("filename", "an image")} is '
                    f'{meta["img_shape"][:2]} after the test pipeline; '
                    f'{self.onnx_file} takes unpadded images of '
                    f'{self.input_size}: use fixed_size_pipeline')
        return graph_results(self.detector, self.run_graph(img), img_metas,
                             rescale)

    def forward(self, img, img_metas, return_loss=False, rescale=False,
                **kwargs):
        """mmdet's test-time call: lists over augmentations of ``img``
        [bs, 3, H, W] and ``img_metas``; one augmentation only."""
        if return_loss:
            raise ValueError('an ONNX Runtime model only runs inference')
        if isinstance(img, torch.Tensor):
            img, img_metas = [img], [img_metas]
        if len(img) != 1:
            raise NotImplementedError(
                'test-time augmentation is not exported to ONNX')
        return self.simple_test(img[0], img_metas[0], rescale)

    def show_result(self, *args, **kwargs):
        """The detector's drawing (boxes, or persons with skeletons)."""
        return self.detector.show_result(*args, **kwargs)


def init_onnx_model(config, onnx_file, cfg_options=None, num_threads=None):
    """Load an exported file for inference with ``config``'s pipeline.

    Args:
        config (str | mmcv.Config): The config the file was exported from.
        onnx_file (str): The .onnx file.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        num_threads (int, optional): ONNX Runtime intra-op threads.

    Returns:
        ONNXRuntimeDetector: With ``cfg``, whose test pipeline resizes
        every image to the file's input size (what mmdet's
        ``inference_detector`` applies).
    """
    detector = init_model(config, None, 'cpu', cfg_options)
    model = ONNXRuntimeDetector(onnx_file, detector, num_threads)
    model.cfg.data.test.pipeline = fixed_size_pipeline(
        model.cfg.data.test.pipeline, model.input_size)
    return model
