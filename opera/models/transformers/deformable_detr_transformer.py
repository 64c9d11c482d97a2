"""Deformable-DETR transformer with the H-Deformable-DETR options.

Adds to mmdet's two-stage Deformable-DETR transformer:

- a variable number of two-stage proposals per call (all query groups while
  training a hybrid model, the one-to-one group at test time);
- mixed query selection (``mixed_selection``): positional queries from the
  top-k proposals, content queries from a learned embedding;
- look forward twice (``look_forward_twice`` in the decoder): layer l's box is
  built on the not-detached refined box of layer l-1;
- a self-attention mask (``self_attn_mask``) given to every decoder layer,
  which is how the hybrid query groups reach the decoder self-attention;
- activation checkpointing of encoder and decoder layers (``with_cp``);
- three stages, the same as :class:`.PETRTransformer`'s: ``encode`` (the
  feature maps into memory), ``pre_decoder`` (two-stage proposals and the
  matching queries, a :class:`.DecoderQueries`) and ``forward_decoder``
  (any set of queries under any self-attention mask), so that a head can
  add query groups (``queries_from_boxes``, ``DecoderQueries.cat``) between
  the second and the third; ``forward`` runs the three in a row.

The input flattening and the encoder call are :mod:`.deformable_encoder`'s,
shared with the PETR transformer; the refinement loop is
:func:`.run_refining_layers`, shared with the PETR pose decoder.
"""
import torch
from mmdet.models.utils.transformer import (
    DeformableDetrTransformer as MMDetDeformableDetrTransformer,
    DeformableDetrTransformerDecoder as MMDetDeformableDetrTransformerDecoder,
    DetrTransformerEncoder as MMDetDetrTransformerEncoder, inverse_sigmoid)

from ..builder import TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE
from .decoder_queries import DecoderQueries
from .deformable_encoder import (EncoderStage, check_query_embed,
                                 memory_inputs, num_proposals)
from .layer_cfgs import StrictLayerSequence
from ..utils.layer_checkpoint import run_layer
from .refine import run_refining_layers


def check_boxes(boxes):
    """Raise a ValueError unless ``boxes`` is [bs, n, 4] (the boxes a
    transformer's ``queries_from_boxes`` takes)."""
    if boxes.dim() != 3 or boxes.size(-1) != 4:
        raise ValueError(f'queries_from_boxes takes boxes [bs, n, 4], '
                         f'got {tuple(boxes.shape)}')


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

    #: Clamp of the references before their logit (Deformable-DETR's).
    refine_eps = 1e-5

    def __init__(self, *args, look_forward_twice=False, with_cp=False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.look_forward_twice = look_forward_twice
        self.with_cp = with_cp

    def forward(self,
                query,
                reference_points,
                valid_ratios,
                reg_branches=None,
                return_predictions=False,
                self_attn_mask=None,
                **kwargs):
        """Run the decoder layers (:func:`.run_refining_layers`).

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
            self_attn_mask (Tensor | QueryGroupMask | None): Mask of every
                layer's self-attention (the query groups).
            **kwargs: Passed to every layer (``query_pos``, ``value``,
                ``key_padding_mask``, ``spatial_shapes``, ...).

        Returns:
            tuple[Tensor, Tensor]: Layer outputs [num_layers, num_query, bs,
            embed_dims] and each layer's refined reference [num_layers, bs,
            num_query, D] (D: the branches' output size, R without
            branches) (with ``return_intermediate``; otherwise the last
            output and the detached last reference).
        """
        outputs, references, last_reference = run_refining_layers(
            self.layers,
            query,
            reference_points,
            valid_ratios,
            branches=reg_branches,
            attached=return_predictions or self.look_forward_twice,
            self_attn_mask=self_attn_mask,
            with_cp=self.with_cp,
            eps=self.refine_eps,
            **kwargs)
        if self.return_intermediate:
            return torch.stack(outputs), torch.stack(references)
        return outputs[-1], last_reference


@TRANSFORMER.register_module()
class DeformableDetrTransformer(EncoderStage,
                                MMDetDeformableDetrTransformer):
    """Two-stage Deformable-DETR transformer with mixed query selection.

    Args:
        mixed_selection (bool): Take only the positional query from the
            two-stage proposals and the content query from the head's
            learned query embedding.
        **kwargs: See mmdet's ``DeformableDetrTransformer``. The number of
            proposals is chosen per call, so ``two_stage_num_proposals`` is
            not taken.
    """

    #: The encoder proposals are ranked by the first class column and
    #: trained with every object as that one class.
    class_agnostic_proposals = True
    reference_kind = 'box'

    def __init__(self, mixed_selection=False, **kwargs):
        if 'two_stage_num_proposals' in kwargs:
            raise TypeError(
                'two_stage_num_proposals is set by the head (one proposal '
                'per active query); remove it from the transformer config')
        super().__init__(**kwargs)
        if mixed_selection and not self.as_two_stage:
            raise ValueError('mixed_selection needs as_two_stage=True')
        self.mixed_selection = mixed_selection

    @property
    def query_embed_dims(self):
        """Width of the learned query embedding :meth:`pre_decoder` takes:
        c (content queries, mixed selection), 2c (position and content,
        one-stage) or None (two-stage: the proposals give both)."""
        if self.mixed_selection:
            return self.embed_dims
        if not self.as_two_stage:
            return 2 * self.embed_dims
        return None

    def proposal_embedding(self, box_logits):
        """Positional (first c channels) and content (last c) queries of
        boxes, as two-stage proposals get them.

        Args:
            box_logits (Tensor): [bs, n, 4] boxes (cx, cy, w, h) in logit
                space.

        Returns:
            Tensor: [bs, n, 2c].
        """
        return self.pos_trans_norm(
            self.pos_trans(self.get_proposal_pos_embed(box_logits)))

    def queries_from_boxes(self, boxes, content):
        """Decoder queries at given boxes (a group made from the ground
        truth or given by an auxiliary head), their positions made as the
        two-stage proposals' are (:meth:`proposal_embedding`).

        Args:
            boxes (Tensor): [bs, n, 4] (cx, cy, w, h) in [0, 1] of the valid
                image area; used detached.
            content (Tensor): [bs, n, c] content queries.

        Returns:
            DecoderQueries: ``reference`` the boxes (detached).
        """
        check_boxes(boxes)
        boxes = boxes.detach()
        # No eps: the embedding takes the sigmoid of these logits again, and
        # boxes at 0 or 1 (a proposal with an infinite logit) come back as
        # they were, not 1e-5 inside.
        embedding = self.proposal_embedding(inverse_sigmoid(boxes, eps=0))
        return DecoderQueries(content, embedding[..., :self.embed_dims],
                              boxes)

    def pre_decoder(self, memory, levels, query_embed, num_queries,
                    proposal_ranks=None, reg_branches=None,
                    cls_branches=None):
        """Stage 2: the matching queries, from proposals or embeddings.

        Two-stage: encoder proposals ranked by score, best first; query i
        takes rank ``proposal_ranks[i]`` (rank i when it is None), its box
        as reference and its :meth:`proposal_embedding` as position and
        content (mixed selection: content from ``query_embed``). One-stage:
        position and content from ``query_embed``, the reference learned
        from the position.

        Args:
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): See :mod:`.deformable_encoder`.
            query_embed (Tensor | None): [num_queries, query_embed_dims]
                (see :attr:`query_embed_dims`).
            num_queries (int): Queries (and two-stage proposals) to make.
            proposal_ranks (Tensor | None): [num_queries] long.
            reg_branches, cls_branches (nn.ModuleList | None): The head's
                branches; two-stage uses the last of each (after the
                decoder layers') on the encoder output.

        Returns:
            tuple: :class:`.DecoderQueries` (reference [bs, nq, 4] or
            [bs, nq, 2]), encoder class scores [bs, S, C] and encoder boxes
            before sigmoid [bs, S, 4] (both None without two-stage).
        """
        if query_embed is None and self.query_embed_dims is not None:
            raise ValueError('this transformer needs a query embedding')
        check_query_embed(query_embed, num_queries)
        bs, _, c = memory.shape
        if not self.as_two_stage:
            query_pos, query = torch.split(query_embed, c, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(bs, -1, -1)
            query = query.unsqueeze(0).expand(bs, -1, -1)
            reference = self.reference_points(query_pos).sigmoid()
            return DecoderQueries(query, query_pos, reference), None, None

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
        query_pos, query = torch.split(
            self.proposal_embedding(topk_coords_unact), c, dim=2)
        if self.mixed_selection:
            query = query_embed.unsqueeze(0).expand(bs, -1, -1)
        return (DecoderQueries(query, query_pos, topk_coords_unact.sigmoid()),
                enc_outputs_class, enc_outputs_coord_unact)

    def forward_decoder(self,
                        queries,
                        memory,
                        levels,
                        reg_branches=None,
                        self_attn_mask=None):
        """Stage 3: decode any set of queries under a self-attention mask.

        Args:
            queries (DecoderQueries): nq queries, references [bs, nq, R].
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): See :mod:`.deformable_encoder`.
            reg_branches (nn.ModuleList | None): Box branches, one per
                decoder layer first (iterative refinement); None keeps the
                references.
            self_attn_mask (Tensor | QueryGroupMask | None): Mask of the
                decoder self-attention over the nq queries.

        Returns:
            tuple[Tensor, Tensor]: states [num_layers, bs, nq, c] and each
            layer's reference [num_layers, bs, nq, 4] (see
            :class:`DeformableDetrTransformerDecoder`).
        """
        states, references = self.decoder(
            reference_points=queries.reference,
            reg_branches=reg_branches,
            self_attn_mask=self_attn_mask,
            **queries.sequence_first(),
            **memory_inputs(memory, levels))
        return states.permute(0, 2, 1, 3), references
