"""Deformable-DETR transformer with the H-Deformable-DETR options.

Adds to mmdet's two-stage Deformable-DETR transformer:

- a variable number of two-stage proposals per call (all query groups while
  training a hybrid model, the one-to-one group at test time);
- mixed query selection (``mixed_selection``): positional queries from the
  top-k proposals, content queries from a learned embedding;
- look forward twice (``look_forward_twice`` in the decoder): layer l's box is
  built on the not-detached refined box of layer l-1;
- per-attention masks (``attn_masks``) passed to every decoder layer, which is
  how the hybrid query groups reach the decoder self-attention;
- activation checkpointing of encoder and decoder layers (``with_cp``).

The input flattening and the encoder call are :mod:`.deformable_encoder`'s,
shared with the PETR transformer; the refinement is
:func:`.refine_reference`.
"""
import torch
from mmdet.models.utils.transformer import (
    DeformableDetrTransformer as MMDetDeformableDetrTransformer,
    DeformableDetrTransformerDecoder as MMDetDeformableDetrTransformerDecoder,
    DetrTransformerEncoder as MMDetDetrTransformerEncoder)

from .builder import TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE
from .deformable_encoder import (check_query_embed, encode, flatten_levels,
                                 memory_inputs, num_proposals)
from .layer_cfgs import StrictLayerSequence
from .layer_checkpoint import run_layer
from .refine import refine_reference


@TRANSFORMER_LAYER_SEQUENCE.register_module()
class DetrTransformerEncoder(StrictLayerSequence,
                             MMDetDetrTransformerEncoder):
    """mmdet's DETR encoder with optional activation checkpointing.

    Args:
        with_cp (bool): Checkpoint every layer in training (see
            :mod:`.layer_checkpoint`).
        **kwargs: See mmdet's ``DetrTransformerEncoder``.
    """

    def __init__(self, *args, with_cp=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.with_cp = with_cp

    def forward(self, query, key, value, **kwargs):
        """Run the layers on ``query`` [num_query, bs, c]; the keyword
        arguments go to every layer. Returns [num_query, bs, c]."""
        for layer in self.layers:
            query = run_layer(
                layer, query, key, value, with_cp=self.with_cp, **kwargs)
        if self.post_norm is not None:
            query = self.post_norm(query)
        return query


@TRANSFORMER_LAYER_SEQUENCE.register_module()
class DeformableDetrTransformerDecoder(StrictLayerSequence,
                                       MMDetDeformableDetrTransformerDecoder):
    """Deformable-DETR decoder: iterative refinement, look forward twice.

    Args:
        look_forward_twice (bool): H-Deformable-DETR's "look forward twice"
            trick: the head builds layer l + 1's box on layer l's refined
            box before it is detached, so layer l + 1's box loss also trains
            layer l's regression branch. The decoder then returns the
            refined references attached (as ``return_predictions=True``
            does for one call).
        with_cp (bool): Checkpoint every layer in training (see
            :mod:`.layer_checkpoint`).
    """

    def __init__(self, *args, look_forward_twice=False, with_cp=False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.look_forward_twice = look_forward_twice
        self.with_cp = with_cp

    def forward(self,
                query,
                *args,
                reference_points=None,
                valid_ratios=None,
                reg_branches=None,
                return_predictions=False,
                **kwargs):
        """Run the decoder layers.

        Args:
            query (Tensor): [num_query, bs, embed_dims].
            reference_points (Tensor): [bs, num_query, R] in [0, 1], boxes
                (R = 4) or points (R = 2).
            valid_ratios (Tensor): [bs, num_levels, 2].
            reg_branches (nn.ModuleList | None): Per-layer branches for
                iterative refinement (see :func:`.refine_reference`); None
                keeps the references fixed.
            return_predictions (bool): Return each layer's refined reference
                as predicted, attached to that layer's branch (so that a
                loss on it trains the branch), not the detached copy handed
                to the next layer. Always so with ``look_forward_twice``.
            **kwargs: Passed to every layer (``value``, ``attn_masks``,
                ``key_padding_mask``, ``spatial_shapes``, ...).

        Returns:
            tuple[Tensor, Tensor]: Layer outputs [num_layers, num_query, bs,
            embed_dims] and each layer's refined reference [num_layers, bs,
            num_query, D] (D: the branches' output size, R without
            branches) (with ``return_intermediate``; otherwise the last
            ones only).
        """
        attached = return_predictions or self.look_forward_twice
        output = query
        intermediate = []
        intermediate_reference_points = []
        for lid, layer in enumerate(self.layers):
            ratios = valid_ratios
            if reference_points.shape[-1] == 4:
                ratios = torch.cat([valid_ratios, valid_ratios], -1)
            output = run_layer(
                layer,
                output,
                *args,
                reference_points=reference_points[:, :, None] *
                ratios[:, None],
                with_cp=self.with_cp,
                **kwargs)

            new_reference_points = reference_points
            if reg_branches is not None:
                delta = reg_branches[lid](output.permute(1, 0, 2))
                new_reference_points = refine_reference(
                    delta, reference_points)
                reference_points = new_reference_points.detach()

            if self.return_intermediate:
                intermediate.append(output)
                intermediate_reference_points.append(
                    new_reference_points if attached else reference_points)

        if self.return_intermediate:
            return torch.stack(intermediate), torch.stack(
                intermediate_reference_points)
        return output, reference_points


@TRANSFORMER.register_module()
class DeformableDetrTransformer(MMDetDeformableDetrTransformer):
    """Two-stage Deformable-DETR transformer with mixed query selection.

    Args:
        mixed_selection (bool): Take only the positional query from the
            two-stage proposals and the content query from the head's
            learned query embedding.
        **kwargs: See mmdet's ``DeformableDetrTransformer``. The number of
            proposals is chosen per call, so ``two_stage_num_proposals`` is
            not taken.
    """

    def __init__(self, mixed_selection=False, **kwargs):
        if 'two_stage_num_proposals' in kwargs:
            raise TypeError(
                'two_stage_num_proposals is set by the head (one proposal '
                'per active query); remove it from the transformer config')
        super().__init__(**kwargs)
        if mixed_selection and not self.as_two_stage:
            raise ValueError('mixed_selection needs as_two_stage=True')
        self.mixed_selection = mixed_selection

    def select_queries(self, memory, levels, query_embed, num_queries,
                       proposal_ranks, reg_branches, cls_branches):
        """Initial queries and references, from proposals or embeddings.

        Two-stage: encoder proposals ranked by score, best first; query i
        takes rank ``proposal_ranks[i]`` (rank i when it is None).

        Returns:
            tuple: query [bs, nq, c], query_pos [bs, nq, c], reference points
            [bs, nq, 4 or 2], encoder class scores [bs, sum(h*w), C] and
            encoder boxes before sigmoid [bs, sum(h*w), 4] (both None
            without two-stage).
        """
        bs, _, c = memory.shape
        if not self.as_two_stage:
            query_pos, query = torch.split(query_embed, c, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(bs, -1, -1)
            query = query.unsqueeze(0).expand(bs, -1, -1)
            return (query, query_pos,
                    self.reference_points(query_pos).sigmoid(), None, None)

        num_kept = num_proposals(num_queries, proposal_ranks, levels)
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, levels['mask'], levels['level_sizes'])  # host ints
        num_dec = self.decoder.num_layers
        enc_outputs_class = cls_branches[num_dec](output_memory)
        enc_outputs_coord_unact = (
            reg_branches[num_dec](output_memory) + output_proposals)

        # Column 0 scores "object": the encoder is trained class-agnostic.
        topk_index = torch.topk(
            enc_outputs_class[..., 0], num_kept, dim=1)[1]
        if proposal_ranks is not None:
            topk_index = topk_index[:, proposal_ranks]
        topk_coords_unact = torch.gather(
            enc_outputs_coord_unact, 1,
            topk_index.unsqueeze(-1).expand(-1, -1, 4)).detach()
        pos_trans_out = self.pos_trans_norm(
            self.pos_trans(self.get_proposal_pos_embed(topk_coords_unact)))
        query_pos, query = torch.split(pos_trans_out, c, dim=2)
        if self.mixed_selection:
            query = query_embed.unsqueeze(0).expand(bs, -1, -1)
        return (query, query_pos, topk_coords_unact.sigmoid(),
                enc_outputs_class, enc_outputs_coord_unact)

    def forward(self,
                mlvl_feats,
                mlvl_masks,
                query_embed,
                mlvl_pos_embeds,
                num_queries,
                proposal_ranks=None,
                reg_branches=None,
                cls_branches=None,
                attn_masks=None):
        """Encode the feature maps and decode ``num_queries`` queries.

        Args:
            mlvl_feats (list[Tensor]): Each [bs, c, h_l, w_l].
            mlvl_masks (list[Tensor]): Each [bs, h_l, w_l], True at padding.
            query_embed (Tensor | None): [num_queries, c] content queries
                (mixed selection), [num_queries, 2c] (one-stage), or None.
            mlvl_pos_embeds (list[Tensor]): Each [bs, c, h_l, w_l].
            num_queries (int): Queries (and two-stage proposals) to run.
            proposal_ranks (Tensor | None): [num_queries] long, the
                two-stage proposal rank of each query (None: rank i feeds
                query i).
            reg_branches (nn.ModuleList | None): Box branches (refinement
                and two-stage proposals).
            cls_branches (nn.ModuleList | None): Class branches (two-stage).
            attn_masks (list[Tensor | None] | None): One mask per attention
                of a decoder layer, e.g. ``[self_attn_mask, None]``.

        Returns:
            tuple: decoder states [num_layers, bs, nq, c], initial references
            [bs, nq, 4], per-layer references [num_layers, bs, nq, 4],
            encoder class scores and encoder boxes before sigmoid (None
            without two-stage).
        """
        if query_embed is None and (self.mixed_selection
                                    or not self.as_two_stage):
            raise ValueError('this transformer needs a query embedding')
        check_query_embed(query_embed, num_queries)
        levels = flatten_levels(mlvl_feats, mlvl_masks, mlvl_pos_embeds,
                                self.level_embeds)
        memory = encode(self.encoder, levels)
        query, query_pos, reference_points, enc_cls, enc_coord = \
            self.select_queries(memory, levels, query_embed, num_queries,
                                proposal_ranks, reg_branches, cls_branches)
        states, references = self.decoder(
            query=query.permute(1, 0, 2),
            query_pos=query_pos.permute(1, 0, 2),
            reference_points=reference_points,
            reg_branches=reg_branches,
            attn_masks=attn_masks,
            **memory_inputs(memory, levels))
        return (states.permute(0, 2, 1, 3), reference_points, references,
                enc_cls, enc_coord)
