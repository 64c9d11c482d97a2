"""Iterative refinement in logit space, for boxes, points and poses."""
import torch
from mmdet.models.utils.transformer import inverse_sigmoid


def refine_reference(delta, reference):
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

    Returns:
        Tensor: [..., D] in [0, 1], fp32.
    """
    num_coords = reference.size(-1)
    if delta.size(-1) < num_coords:
        raise ValueError(f'delta {tuple(delta.shape)} has fewer coordinates '
                         f'than reference {tuple(reference.shape)}')
    # fp32 even under fp16 training: each layer refines the previous
    # layer's output, and half precision (~1e-3) would add up over layers.
    delta, reference = delta.float(), reference.float()
    moved = delta[..., :num_coords] + inverse_sigmoid(reference)
    if delta.size(-1) > num_coords:
        moved = torch.cat([moved, delta[..., num_coords:]], dim=-1)
    return moved.sigmoid()
