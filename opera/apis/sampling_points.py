"""Where the last decoder layer's deformable attention looks, per query.

For a detection model (H-Deformable-DETR) the last call of its
``MultiScaleDeformableAttention`` in a forward pass is the last decoder
layer's cross-attention; for a pose model (PETR / H-PETR) the last call of
its ``PoseDeformableAttention`` is the last pose-decoder layer's (the refine
decoder runs after it, with plain deformable attention around keypoints).
A forward hook records that call's inputs; the module's own ``locations_and_weights`` then gives the sampling locations
and attention weights of each query (no change to the forward pass).
"""
import contextlib
import inspect
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from opera.core.visualization.image import (FONT, draw_boxes, draw_poses,
                                            palette)
from opera.models.attention import (MultiScaleDeformableAttention,
                                   PoseDeformableAttention)
from .inference_graph import prepare_batch

# Largest drawn point radius (pixels), for a query's heaviest point.
MAX_RADIUS = 9
LABEL_HEIGHT = 16


@dataclass
class QuerySamples:
    """One query's prediction and sampling points, in pixels of the
    original image.

    Attributes:
        query (int): Index among the decoder's (test-time) queries.
        score (float): Its best class probability.
        label (int): That class.
        box (np.ndarray): [4] (x1, y1, x2, y2) of a detection model's box,
            or around a pose model's keypoints.
        keypoints (np.ndarray | None): [K, 2] a pose model's keypoints.
        locations (np.ndarray): [num_heads, num_levels, num_points, 2] (x, y).
        weights (np.ndarray): [num_heads, num_levels, num_points]; each
            head's weights sum to 1 over levels and points.
    """
    query: int
    score: float
    label: int
    box: np.ndarray
    keypoints: np.ndarray
    locations: np.ndarray
    weights: np.ndarray


def decoder_attention_type(model):
    """The attention class whose last call is the last decoder layer's
    cross-attention (see the module docstring)."""
    if any(isinstance(m, PoseDeformableAttention) for m in model.modules()):
        return PoseDeformableAttention
    return MultiScaleDeformableAttention


@contextlib.contextmanager
def record_last_call(modules, record):
    """While open, ``record`` holds the last call among ``modules``:
    ``module``, ``inputs`` (arguments by name) and ``output``."""

    def remember(module, args, kwargs, output):
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        record.update(module=module, inputs=bound.arguments, output=output)

    handles = [
        m.register_forward_hook(remember, with_kwargs=True) for m in modules
    ]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def run_and_record(model, image):
    """Run ``model``'s network on ``image``; record the decoder attention's
    last call.

    Args:
        model (nn.Module): From :func:`opera.apis.init_model` (eval mode).
        image (str | np.ndarray): Path or BGR image.

    Returns:
        tuple[dict, object, dict]: The attention's record
        (:func:`record_last_call`), the head's outputs, the image's meta.
    """
    img, img_metas = prepare_batch(model.cfg, [image])
    for meta in img_metas:
        # As mmdet's forward_test sets it.
        meta['batch_input_shape'] = tuple(img.shape[-2:])
    attention_type = decoder_attention_type(model)
    attentions = [m for m in model.modules() if isinstance(m, attention_type)]
    attention = {}
    device = next(model.parameters()).device
    with record_last_call(attentions, attention), torch.no_grad():
        outputs = model.bbox_head(model.extract_feat(img.to(device)),
                                  img_metas)
    return attention, outputs, img_metas[0]


@torch.no_grad()
def normalised_samples(attention):
    """The recorded call's locations and weights, by the module itself.

    Returns:
        tuple[Tensor, Tensor]: [bs, nq, num_heads, num_levels, num_points, 2]
        locations normalised on each level's padded feature map, and
        [bs, nq, num_heads, num_levels, num_points] weights.
    """
    module, inputs = attention['module'], attention['inputs']
    query = inputs['query']
    if inputs.get('query_pos') is not None:
        query = query + inputs['query_pos']
    if not module.batch_first:
        query = query.permute(1, 0, 2)
    if isinstance(module, PoseDeformableAttention):
        return module.locations_and_weights(query, inputs['reference_points'])
    return module.locations_and_weights(query, inputs['reference_points'],
                                        inputs['spatial_shapes'])


def valid_fractions(attention):
    """[num_levels, 2] the fraction (x, y) of each level's feature map that
    is image, not padding (what the decoder scales reference points by)."""
    inputs = attention['inputs']
    shapes = inputs['spatial_shapes']
    mask = inputs.get('key_padding_mask')
    fractions = []
    for level, (height, width) in enumerate(shapes.tolist()):
        if mask is None:
            fractions.append((1., 1.))
            continue
        start = int(inputs['level_start_index'][level])
        padding = mask[0, start:start + height * width].view(height, width)
        fractions.append(((~padding[0]).sum().item() / width,
                          (~padding[:, 0]).sum().item() / height))
    return torch.tensor(fractions)


def to_pixels(normalised, meta, fractions=None):
    """Normalised (x, y) [..., 2] -> pixels of the original image.

    Args:
        normalised (Tensor): [..., 2], on the image (``fractions`` None) or
            on a padded feature map of which ``fractions`` [2] is image.
        meta (dict): The image's ``img_shape`` and ``scale_factor``.
    """
    if fractions is not None:
        normalised = normalised / fractions
    height, width = meta['img_shape'][:2]
    scale = np.asarray(meta['scale_factor'], np.float32)[:2]
    pixels = normalised * normalised.new_tensor([width, height])
    return (pixels / normalised.new_tensor(scale)).numpy()


def query_samples(model, image, queries=None, top=3):
    """Sampling points and predictions of chosen queries of ``model``.

    Args:
        model (nn.Module): A detection or pose model in eval mode.
        image (str | np.ndarray): Path or BGR image.
        queries (Sequence[int], optional): Query indices.
        top (int): Without ``queries``, the ``top`` best-scoring ones.

    Returns:
        list[QuerySamples]: One per query, in the order chosen.
    """
    attention, outputs, meta = run_and_record(model, image)
    locations, weights = [x.cpu() for x in normalised_samples(attention)]
    cls_scores, predictions = [x.cpu() for x in last_layer_outputs(outputs)]
    if cls_scores.size(0) != locations.size(1):
        raise RuntimeError(
            f'the head scored {cls_scores.size(0)} queries, the attention '
            f'sampled for {locations.size(1)}')
    scores, labels = cls_scores.sigmoid().max(-1)
    if queries is None:
        queries = scores.topk(min(top, scores.numel())).indices.tolist()
    fractions = valid_fractions(attention)[:, None]
    samples = []
    for query in queries:
        box, keypoints = prediction_in_pixels(predictions[query], meta)
        samples.append(
            QuerySamples(
                query=query,
                score=scores[query].item(),
                label=labels[query].item(),
                box=box,
                keypoints=keypoints,
                locations=to_pixels(locations[0, query], meta, fractions),
                weights=weights[0, query].numpy()))
    return samples


def last_layer_outputs(output):
    """The last decoder layer's class logits [nq, C] and boxes [nq, 4]
    (cx, cy, w, h) or poses [nq, 2K] of the first image, normalised on the
    image, from a head's named outputs (``bbox_preds`` or ``poses``)."""
    predictions = output['poses'] if 'poses' in output else output[
        'bbox_preds']
    return output['cls_scores'][-1, 0], predictions[-1, 0]


def prediction_in_pixels(prediction, meta):
    """A query's box [4] (cx, cy, w, h) or pose [2K] -> (box (x1, y1, x2,
    y2), keypoints [K, 2] or None) in pixels of the original image."""
    if prediction.numel() == 4:
        center, size = prediction[:2], prediction[2:]
        corners = torch.stack([center - size / 2, center + size / 2])
        return to_pixels(corners, meta).reshape(4), None
    keypoints = to_pixels(prediction.view(-1, 2), meta)
    return np.concatenate([keypoints.min(0), keypoints.max(0)]), keypoints


def draw_sampling_points(image, samples, class_names=None, skeleton=()):
    """One panel per feature level, side by side: the image, each query's
    box or pose and its sampling points on that level (one colour per
    query, the area of a point proportional to its attention weight).

    Points outside the image are not drawn.

    Args:
        image (np.ndarray): [H, W, 3] uint8 BGR original image.
        samples (list[QuerySamples]): From :func:`query_samples`.
        class_names (Sequence[str], optional): For the box labels.
        skeleton (Sequence[Sequence[int]]): Limbs of a pose model.

    Returns:
        np.ndarray: [H + LABEL_HEIGHT, num_levels * W, 3] uint8 BGR.
    """
    colors = palette(len(samples))
    num_levels = samples[0].weights.shape[1] if samples else 1
    panels = [
        draw_level(image, samples, level, colors, class_names, skeleton)
        for level in range(num_levels)
    ]
    return np.concatenate(panels, axis=1)


def draw_level(image, samples, level, colors, class_names, skeleton):
    """The panel of feature level ``level`` (see
    :func:`draw_sampling_points`)."""
    height, width = image.shape[:2]
    panel = image.copy()
    for sample, color in zip(samples, colors):
        if sample.keypoints is not None:
            visible = np.ones((len(sample.keypoints), 1), np.float32)
            draw_poses(panel, [np.hstack([sample.keypoints, visible])],
                       [color], skeleton, kpt_score_thr=0)
        box = np.append(sample.box, sample.score)[None]
        draw_boxes(panel, box, [sample.label], [color], class_names)
        heaviest = sample.weights.max()
        points = sample.locations[:, level].reshape(-1, 2)
        weights = sample.weights[:, level].reshape(-1)
        for (x, y), weight in zip(points, weights):
            if not (0 <= x < width and 0 <= y < height):
                continue
            radius = max(1, int(round(MAX_RADIUS * np.sqrt(weight /
                                                            heaviest))))
            cv2.circle(panel, (int(x), int(y)), radius, color, cv2.FILLED,
                       cv2.LINE_AA)
    title = np.zeros((LABEL_HEIGHT, width, 3), np.uint8)
    cv2.putText(title, f'feature level {level}', (2, LABEL_HEIGHT - 4), FONT,
                0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([title, panel], axis=0)
