"""Iterative refinement in logit space, for boxes, points and poses.

:func:`refine_reference` is one refinement step; :func:`run_refining_layers`
is the decoder loop around it, shared by the Deformable-DETR decoder (boxes,
and the points of PETR's refine decoder) and PETR's pose decoder (poses).
"""
import torch
from mmdet.models.utils.transformer import inverse_sigmoid

from ..utils.layer_checkpoint import run_layer


def refine_reference(delta, reference, eps=1e-5):
    """sigmoid(delta + logit(reference)) on the reference's coordinates.

    The first R delta dims move the reference's R coordinates in logit
    space; any further delta dims have no reference and are logits on their
    own (the w, h a box branch predicts on a point reference).

    Cases (R = ``reference.size(-1)``, D = ``delta.size(-1)``):

    - boxes: delta [..., 4], reference [..., 4] (cx, cy, w, h) -> [..., 4];
    - points with a box branch: delta [..., 4], reference [..., 2]
      (x, y) -> [..., 4] boxes, w and h from ``delta`` alone;
    - points: delta [..., 2], reference [..., 2] -> [..., 2];
    - poses: delta [..., 2K], reference [..., 2K] (x1, y1, ..., xK, yK)
      -> [..., 2K].

    Args:
        delta (Tensor): [..., D] branch output, D >= R.
        reference (Tensor): [..., R] in [0, 1].
        eps (float): The logit of the reference is taken clamped to [eps,
            1 - eps] (Deformable-DETR: 1e-5; DINO: 1e-3).

    Returns:
        Tensor: [..., D] in [0, 1], fp32 (fp64 for fp64 inputs).
    """
    num_coords = reference.size(-1)
    if delta.size(-1) < num_coords:
        raise ValueError(f'delta {tuple(delta.shape)} has fewer coordinates '
                         f'than reference {tuple(reference.shape)}')
    # At least fp32 even under fp16 training: each layer refines the
    # previous layer's output, and half precision (~1e-3) would add up over
    # layers. (fp64 stays fp64.)
    dtype = torch.promote_types(
        torch.promote_types(delta.dtype, reference.dtype), torch.float32)
    delta, reference = delta.to(dtype), reference.to(dtype)
    moved = delta[..., :num_coords] + inverse_sigmoid(reference, eps)
    if delta.size(-1) > num_coords:
        moved = torch.cat([moved, delta[..., num_coords:]], dim=-1)
    return moved.sigmoid()


def scale_by_valid_ratios(reference, valid_ratios):
    """References in [0, 1] of the valid area -> [0, 1] of the padded input,
    once per feature level (each level has its own padding).

    Args:
        reference (Tensor): [bs, nq, R], R even: (x, y) pairs (points,
            poses) or (cx, cy, w, h) (boxes: w and h scale as x and y).
        valid_ratios (Tensor): [bs, L, 2], the valid (w, h) fraction of
            each level.

    Returns:
        Tensor: [bs, nq, L, R].
    """
    num_coords = reference.size(-1)
    if num_coords % 2:
        raise ValueError(f'reference {tuple(reference.shape)} is not made '
                         f'of (x, y) pairs')
    ratios = valid_ratios.repeat(1, 1, num_coords // 2)
    return reference[:, :, None] * ratios[:, None]


def self_attention_masks(layer, self_attn_mask):
    """A decoder layer's ``attn_masks``: ``self_attn_mask`` for its
    self-attentions, None for its cross-attentions, in the order of its
    ``operation_order`` (mmcv's ``BaseTransformerLayer`` takes one mask per
    attention)."""
    return [
        self_attn_mask if op == 'self_attn' else None
        for op in layer.operation_order if op in ('self_attn', 'cross_attn')
    ]


def run_refining_layers(layers,
                        query,
                        reference,
                        valid_ratios,
                        branches=None,
                        attached=False,
                        self_attn_mask=None,
                        with_cp=False,
                        batch_first=False,
                        position_of_reference=None,
                        eps=1e-5,
                        **layer_kwargs):
    """Decoder layers with iterative refinement of each query's reference.

    Layer l attends around its reference (scaled to each level by
    :func:`scale_by_valid_ratios`); its branch then moves the reference in
    logit space (:func:`refine_reference`), and the next layer starts from
    the moved reference, detached.

    Args:
        layers (nn.ModuleList): Decoder layers (mmcv transformer layers).
        query (Tensor): [nq, bs, c].
        reference (Tensor): [bs, nq, R] in [0, 1] of the valid area: boxes
            (4), points (2) or poses (2K).
        valid_ratios (Tensor): [bs, L, 2].
        branches (Sequence[nn.Module] | None): Branch l gives layer l's
            delta [bs, nq, D] (D >= R); None keeps the reference fixed.
        attached (bool): Collect each layer's refined reference as
            predicted, attached to its branch (a loss on it trains the
            branch); otherwise the detached copy the next layer takes.
        self_attn_mask (Tensor | QueryGroupMask | None): The mask of every
            self-attention (see :func:`self_attention_masks`).
        with_cp (bool): Checkpoint each layer in training (see
            :func:`.run_layer`).
        batch_first (bool): Collect the layer outputs as [bs, nq, c].
        position_of_reference (callable | None): Makes every layer's
            positional queries [nq, bs, c] from its reference scaled to the
            levels [bs, nq, L, R] (DINO's decoder); None: ``query_pos``
            in ``layer_kwargs`` serves every layer.
        eps (float): See :func:`refine_reference`.
        **layer_kwargs: Passed to every layer (``query_pos``, ``value``,
            ``key_padding_mask``, ``spatial_shapes``, ...).

    Returns:
        tuple[list[Tensor], list[Tensor], Tensor]: Each layer's output
        [nq, bs, c] ([bs, nq, c] if ``batch_first``); each layer's reference [bs, nq, D] (attached or not,
        see ``attached``; R and the input reference without branches); the
        reference after the last layer, detached [bs, nq, D].
    """
    if 'attn_masks' in layer_kwargs:
        raise TypeError(
            'a refining decoder builds attn_masks from its layers; pass the '
            'self-attention mask as self_attn_mask=...')
    outputs, references = [], []
    for index, layer in enumerate(layers):
        scaled = scale_by_valid_ratios(reference, valid_ratios)
        if position_of_reference is not None:
            layer_kwargs['query_pos'] = position_of_reference(scaled)
        query = run_layer(
            layer,
            query,
            reference_points=scaled,
            attn_masks=self_attention_masks(layer, self_attn_mask),
            with_cp=with_cp,
            **layer_kwargs)
        refined = reference
        if branches is not None:
            refined = refine_reference(
                branches[index](query.permute(1, 0, 2)), reference, eps)
            reference = refined.detach()
        # Collected after the refinement, in this order: the order in which
        # autograd sums gradients (and so their bits) follows it.
        outputs.append(query.permute(1, 0, 2) if batch_first else query)
        references.append(refined if attached else reference)
    return outputs, references, reference
