"""A detector's eval-mode network as a function of the image alone.

Inference of every opera model is the same steps, whatever runs the
network:

0. :func:`prepare_batch`: images through the config's test pipeline,
   collated as the test data loader does;
1. :class:`InferenceGraph`: image batch -> a few tensors, the part that
   ONNX export traces (backbone, neck, transformer, the one-to-one queries
   only; for pose models also the top persons and the refine decoder, no
   heatmap branch);
2. :func:`graph_results`: those tensors -> per-image results in pixels of
   the original image, by the head's own post-processing (the functions the
   PyTorch path runs inside ``simple_test``).

Every head with an inference graph has the same three members, so nothing
here depends on which head it is: ``inference_kind`` ('detection' or
'pose'), ``graph_outputs(outputs)`` (its forward's outputs -> the graph's
tensors) and ``graph_results(tensors, img_metas, rescale)``.

The PyTorch backend runs the detector's ``simple_test`` (both steps in one
call); the ONNX Runtime backend (:mod:`.onnx_backend`) runs step 1 in ONNX
Runtime and step 2 here, so the two share all pre- and post-processing.

Outputs of step 1:

- detection: ``cls_logits`` [bs, nq, C] and ``boxes`` [bs, nq, 4]
  (cx, cy, w, h) in [0, 1] of the last decoder layer's one-to-one queries;
  the top-k over queries x classes stays in the head's ``get_bboxes`` (no
  NMS), so the file gives every query's scores;
- pose: ``scores`` [bs, m] (best first), ``labels`` [bs, m] and
  ``keypoints`` [bs, m, K, 2] in [0, 1], the top ``max_per_img`` persons
  refined by the refine decoder (the top-k must be in the graph: the refine
  decoder runs on the persons it keeps).

Images are taken as they are: every image fills the input, no padding
(the padding masks are empty). See docs/deployment.md.
"""
import copy

import numpy as np
import torch
import torch.nn as nn
from mmcv.parallel import collate
from mmdet.datasets.pipelines import Compose

OUTPUT_NAMES = dict(
    detection=('cls_logits', 'boxes'),
    pose=('scores', 'labels', 'keypoints'))


def prepare_batch(cfg, images):
    """Images through ``cfg.data.test.pipeline``, as one batch.

    Args:
        cfg (mmcv.Config): The model's config.
        images (list[str | np.ndarray]): Image files or BGR arrays.

    Returns:
        tuple[Tensor, list[dict]]: ``img`` [bs, 3, H, W] (padded to the
        largest image when sizes differ) and per-image metas.
    """
    items = []
    for image in images:
        pipeline = copy.deepcopy(cfg.data.test.pipeline)
        if isinstance(image, np.ndarray):
            pipeline[0] = dict(type='LoadImageFromWebcam')
            item = dict(img=image)
        else:
            item = dict(img_info=dict(filename=image), img_prefix=None)
        items.append(Compose(pipeline)(item))
    data = collate(items, samples_per_gpu=len(items))
    # Lists over test-time augmentations; the test pipelines have one.
    img, img_metas = data['img'][0], data['img_metas'][0]
    return img.data[0] if hasattr(img, 'data') else img, img_metas.data[0]


def model_kind(detector):
    """'detection' or 'pose': the ``inference_kind`` of the detector's head;
    raises for heads without an inference graph."""
    kind = getattr(detector.bbox_head, 'inference_kind', None)
    if kind not in OUTPUT_NAMES:
        raise NotImplementedError(
            f'no inference graph for {type(detector.bbox_head).__name__}: '
            'export supports the heads with an inference_kind (the '
            '(H-)Deformable-DETR and (H-)PETR heads)')
    return kind


def unpadded_metas(img):
    """Metas of a batch whose images all fill it: no padding to mask.

    Args:
        img (Tensor): [bs, 3, H, W].

    Returns:
        list[dict]: ``img_shape`` and ``batch_input_shape``, (H, W), per
        image.
    """
    height, width = img.shape[-2:]
    return [
        dict(img_shape=(height, width, 3), batch_input_shape=(height, width))
        for _ in range(img.shape[0])
    ]


class InferenceGraph(nn.Module):
    """Image batch in, the network's final tensors out (see the module
    docstring for what they are).

    Args:
        detector (nn.Module): An opera detector (set to eval mode).
    """

    def __init__(self, detector):
        super().__init__()
        self.detector = detector
        self.kind = model_kind(detector)
        self.output_names = OUTPUT_NAMES[self.kind]
        # Eval mode for good: torch.onnx.export restores the mode the module
        # had, and a new module starts in training mode.
        self.eval()

    def forward(self, img):
        """
        Args:
            img (Tensor): [bs, 3, H, W] normalised images, none padded.

        Returns:
            tuple[Tensor]: The tensors named by ``output_names``.
        """
        if self.detector.training:
            raise RuntimeError('InferenceGraph runs the eval-mode network: '
                               'call detector.eval() first')
        img_metas = unpadded_metas(img)
        head = self.detector.bbox_head
        return head.graph_outputs(
            head(self.detector.extract_feat(img), img_metas))


def graph_results(detector, outputs, img_metas, rescale=False):
    """Per-image results from :class:`InferenceGraph`'s outputs.

    Args:
        detector (nn.Module): The detector (only its head's settings and
            post-processing are used, not its weights).
        outputs (Sequence[Tensor | np.ndarray]): The graph's outputs, in
            ``OUTPUT_NAMES`` order.
        img_metas (list[dict]): Per image ``img_shape`` and
            ``scale_factor`` (as from the test pipeline).
        rescale (bool): Results in pixels of the original image.

    Returns:
        list: Per image what ``detector.simple_test`` returns: a list over
        classes of [n, 5] arrays (detection), or ``(bbox_results,
        keypoint_results)`` (pose).
    """
    outputs = [
        torch.from_numpy(np.asarray(output))
        if not isinstance(output, torch.Tensor) else output
        for output in outputs
    ]
    model_kind(detector)  # a clear error for a head without a graph
    return detector.bbox_head.graph_results(outputs, img_metas, rescale)
