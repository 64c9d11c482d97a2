"""The multi-level input and the encoder of a deformable transformer.

Functions shared, by composition, by the Deformable-DETR transformer and the
PETR transformer: flatten the feature levels into one sequence, run a
deformable encoder on it (:class:`EncoderStage`, both transformers'
``encode``), hand its memory to a decoder, and check the
queries against the query embedding and the encoder positions (two-stage
proposals). Each transformer keeps its own parameters (``level_embeds``,
``encoder``) and passes them in.

``levels``, the flattened input, is a dict:

- ``feat`` [bs, S, c] features, S = sum of h_l * w_l;
- ``mask`` [bs, S], True at padding;
- ``pos`` [bs, S, c] positional plus level embeddings, or None (no query
  positions in the encoder);
- ``spatial_shapes`` [L, 2] long, (h, w) of each level;
- ``level_sizes`` the same as a list of (h, w) ints, for loops on the host
  (reading ``spatial_shapes`` there would copy it off the GPU);
- ``level_start_index`` [L] long, where each level starts in S;
- ``valid_ratios`` [bs, L, 2], the valid (w, h) fraction of each level.
"""
import torch
from mmdet.models.utils.transformer import \
    DeformableDetrTransformer as MMDetDeformableDetrTransformer

from .base import TransformerStages


def valid_ratio(mask):
    """Valid (unpadded) fraction of a level's width and height.

    Args:
        mask (Tensor): [bs, h, w], True at padding.

    Returns:
        Tensor: [bs, 2] (w, h) ratios.
    """
    _, height, width = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1)
    valid_w = (~mask[:, 0, :]).sum(1)
    return torch.stack([valid_w.float() / width, valid_h.float() / height],
                       -1)


def flatten_levels(mlvl_feats, mlvl_masks, mlvl_pos_embeds, level_embeds):
    """Flatten multi-level maps into one sequence for the encoder.

    Args:
        mlvl_feats (list[Tensor]): Each [bs, c, h_l, w_l].
        mlvl_masks (list[Tensor]): Padding masks, each [bs, h_l, w_l].
        mlvl_pos_embeds (list[Tensor]): Each [bs, c, h_l, w_l].
        level_embeds (Tensor): [L, c], added to the positions of each level.

    Returns:
        dict: ``levels`` (see the module docstring).
    """
    feats, masks, pos_embeds, shapes = [], [], [], []
    for lvl, (feat, mask, pos) in enumerate(
            zip(mlvl_feats, mlvl_masks, mlvl_pos_embeds)):
        # Plain ints: traced for ONNX, sizes of a tensor stay symbolic, and
        # torch.onnx's linspace of a symbolic size 1 (mmdet's reference
        # points and proposals of a 1-pixel-high or -wide level) is NaN.
        shapes.append(tuple(int(size) for size in feat.shape[-2:]))
        feats.append(feat.flatten(2).transpose(1, 2))
        masks.append(mask.flatten(1))
        pos_embeds.append(
            pos.flatten(2).transpose(1, 2) + level_embeds[lvl].view(1, 1, -1))
    feat = torch.cat(feats, 1)
    spatial_shapes = torch.as_tensor(
        shapes, dtype=torch.long, device=feat.device)
    level_start_index = torch.cat((spatial_shapes.new_zeros(
        (1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
    return dict(
        feat=feat,
        mask=torch.cat(masks, 1),
        pos=torch.cat(pos_embeds, 1),
        spatial_shapes=spatial_shapes,
        level_sizes=[tuple(shape) for shape in shapes],
        level_start_index=level_start_index,
        valid_ratios=torch.stack([valid_ratio(m) for m in mlvl_masks], 1))


def first_level(memory, levels):
    """The first level of ``memory`` as ``levels`` of its own.

    Args:
        memory (Tensor): [bs, S, c] on the grid of ``levels``.
        levels (dict): See the module docstring.

    Returns:
        dict: ``levels`` of the first level, ``feat`` [bs, h_0 * w_0, c]
        from ``memory``, no ``pos``.
    """
    height, width = levels['level_sizes'][0]
    return dict(
        feat=memory[:, :height * width],
        mask=levels['mask'][:, :height * width],
        pos=None,
        spatial_shapes=levels['spatial_shapes'][:1],
        level_sizes=levels['level_sizes'][:1],
        level_start_index=levels['level_start_index'][:1],
        valid_ratios=levels['valid_ratios'][:, :1])


def encode(encoder, levels):
    """Run a deformable encoder on flattened levels.

    Each position attends around itself (its grid cell centre) on every
    level of ``levels``.

    Args:
        encoder (nn.Module): A deformable encoder (``DetrTransformerEncoder``
            with multi-scale deformable self-attention).
        levels (dict): See the module docstring.

    Returns:
        Tensor: memory [bs, S, c].
    """
    # mmdet loops over the shapes: host ints, no copy off the GPU per level.
    reference_points = MMDetDeformableDetrTransformer.get_reference_points(
        levels['level_sizes'],
        levels['valid_ratios'],
        device=levels['feat'].device)
    pos = levels['pos']
    memory = encoder(
        query=levels['feat'].permute(1, 0, 2),
        key=None,
        value=None,
        query_pos=None if pos is None else pos.permute(1, 0, 2),
        query_key_padding_mask=levels['mask'],
        spatial_shapes=levels['spatial_shapes'],
        reference_points=reference_points,
        level_start_index=levels['level_start_index'],
        valid_ratios=levels['valid_ratios'])
    return memory.permute(1, 0, 2)


class EncoderStage(TransformerStages):
    """Base of both transformers: their first stage, ``encode``.

    The class it is mixed into has ``encoder`` (a deformable encoder) and
    ``level_embeds`` ([L, c]).
    """

    def encode(self, mlvl_feats, mlvl_masks, mlvl_pos_embeds):
        """Stage 1: flatten the levels (:func:`flatten_levels`) and run the
        deformable encoder on them (:func:`encode`).

        Args:
            mlvl_feats (list[Tensor]): Each [bs, c, h_l, w_l].
            mlvl_masks (list[Tensor]): Each [bs, h_l, w_l], True at padding.
            mlvl_pos_embeds (list[Tensor]): Each [bs, c, h_l, w_l].

        Returns:
            tuple[Tensor, dict]: memory [bs, S, c], S = sum of h_l * w_l,
            and ``levels`` (see the module docstring).
        """
        levels = flatten_levels(mlvl_feats, mlvl_masks, mlvl_pos_embeds,
                                self.level_embeds)
        return encode(self.encoder, levels), levels


def memory_inputs(memory, levels):
    """Keyword arguments of a deformable decoder that attends to ``memory``.

    Args:
        memory (Tensor): [bs, S, c] encoder output.
        levels (dict): See the module docstring.

    Returns:
        dict: ``key`` (None), ``value`` [S, bs, c], ``key_padding_mask``
        [bs, S], ``spatial_shapes``, ``level_start_index`` and
        ``valid_ratios`` [bs, L, 2].
    """
    return dict(
        key=None,
        value=memory.permute(1, 0, 2),
        key_padding_mask=levels['mask'],
        spatial_shapes=levels['spatial_shapes'],
        level_start_index=levels['level_start_index'],
        valid_ratios=levels['valid_ratios'])


def check_query_embed(query_embed, num_queries):
    """Raise a ValueError unless ``query_embed`` (Tensor | None, one row per
    query) has ``num_queries`` rows."""
    if query_embed is not None and query_embed.size(0) != num_queries:
        raise ValueError(f'query_embed has {query_embed.size(0)} rows for '
                         f'{num_queries} queries')


def num_proposals(num_queries, proposal_ranks, levels):
    """Encoder positions to rank for ``num_queries`` two-stage queries.

    Args:
        num_queries (int): Queries that take a proposal.
        proposal_ranks (Tensor | None): [num_queries] long, the proposal rank
            each query takes (None: rank i for query i).
        levels (dict): See the module docstring.

    Returns:
        int: Proposals to keep, best first (the highest rank taken + 1).

    Raises:
        ValueError: If the input has fewer encoder positions than that.
    """
    needed = num_queries if proposal_ranks is None else int(
        proposal_ranks.max()) + 1
    available = levels['mask'].size(1)
    if needed > available:
        raise ValueError(
            f'{num_queries} two-stage queries need {needed} encoder '
            f'positions, but this input gives {available} (feature maps '
            f'{levels["spatial_shapes"].tolist()}): use larger images or '
            f'fewer queries')
    return needed
