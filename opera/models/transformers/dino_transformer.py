"""DINO's transformer on the Deformable-DETR stages.

DINO ("DINO: DETR with Improved DeNoising Anchor Boxes", ICLR 2023) keeps
the two-stage Deformable-DETR encoder and differs in the decoder and the
query selection:

- every decoder layer makes its positional queries from its current box
  (an MLP, ``ref_point_head``, on a sine embedding of the box scaled to the
  first level), so a query needs only content and a box; queries made from
  boxes (denoising, auxiliary groups) need no positional projection;
- the decoder's layer outputs pass one shared ``LayerNorm`` before the
  class and box branches; the decoder's own refinement uses the outputs
  before it;
- the encoder proposals are ranked by their best class score and trained
  with the objects' classes, on the selected proposals only;
- the content queries are learned (mixed query selection) and the boxes
  refined with look forward twice.

:class:`DinoTransformer` has the stages of
:class:`.DeformableDetrTransformer` (``encode``, ``pre_decoder``,
``forward_decoder``), so the detection head, its query groups and its
fixed-target groups (contrastive denoising, :mod:`.denoising`) run on it
unchanged.
"""
import math

import torch
import torch.nn as nn

from ..builder import TRANSFORMER, TRANSFORMER_LAYER_SEQUENCE
from .decoder_queries import DecoderQueries
from .deformable_encoder import check_query_embed, num_proposals
from .refine import run_refining_layers
from .deformable_detr_transformer import (DeformableDetrTransformer,
                                          DeformableDetrTransformerDecoder,
                                          check_boxes)


def box_sine_embedding(boxes, num_feats=128, temperature=10000):
    """DINO's sine embedding of boxes, in its channel order (y, x, w, h).

    Each coordinate (in [0, 1]) times 2 pi is divided by ``temperature **
    (2 * (i // 2) / num_feats)`` for i < ``num_feats``; even channels take
    the sine, odd ones the cosine.

    Args:
        boxes (Tensor): [..., 4] (cx, cy, w, h).

    Returns:
        Tensor: [..., 4 * num_feats].
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature**(2 * (dim_t // 2) / num_feats)
    parts = []
    for coord in (1, 0, 2, 3):
        pos = boxes[..., coord, None] * (2 * math.pi) / dim_t
        parts.append(
            torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()),
                        dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1)


@TRANSFORMER_LAYER_SEQUENCE.register_module()
class DinoTransformerDecoder(DeformableDetrTransformerDecoder):
    """DINO's decoder: positional queries from each layer's boxes, a shared
    output norm, look forward twice.

    Args:
        **kwargs: See :class:`.DeformableDetrTransformerDecoder`;
            ``look_forward_twice`` is always on (DINO's box of layer l is
            built on layer l - 1's refined box before it is detached).
    """

    #: DINO takes every logit of a box clamped to [1e-3, 1 - 1e-3].
    refine_eps = 1e-3

    def __init__(self, *args, **kwargs):
        if kwargs.pop('look_forward_twice', True) is not True:
            raise ValueError('DinoTransformerDecoder always looks forward '
                             'twice; remove look_forward_twice')
        super().__init__(*args, look_forward_twice=True, **kwargs)
        # A 2-layer MLP from the (y, x, w, h) sine embedding to the query
        # width, and one norm for every layer's output.
        self.ref_point_head = nn.Sequential(
            nn.Linear(2 * self.embed_dims, self.embed_dims), nn.ReLU(),
            nn.Linear(self.embed_dims, self.embed_dims))
        self.norm = nn.LayerNorm(self.embed_dims)

    def query_position(self, scaled_reference):
        """Positional queries [nq, bs, c] from boxes scaled to the levels
        [bs, nq, L, 4] (DINO embeds the first level's)."""
        embedding = box_sine_embedding(scaled_reference[:, :, 0],
                                       self.embed_dims // 2)
        return self.ref_point_head(embedding).permute(1, 0, 2)

    def forward(self,
                query,
                reference_points,
                valid_ratios,
                reg_branches=None,
                self_attn_mask=None,
                query_pos=None,
                **kwargs):
        """Run the layers (:func:`.run_refining_layers`).

        Args:
            query (Tensor): [nq, bs, c] content queries.
            reference_points (Tensor): [bs, nq, 4] boxes in [0, 1].
            valid_ratios (Tensor): [bs, L, 2].
            reg_branches (nn.ModuleList): Per-layer box branches (DINO
                refines at every layer).
            self_attn_mask (Tensor | QueryGroupMask | None): The query
                groups' mask.
            query_pos: Must be None: every layer makes its own.
            **kwargs: Memory inputs of every layer (``value``, ...).

        Returns:
            tuple[Tensor, Tensor]: The normed layer outputs [num_layers,
            nq, bs, c] and each layer's refined boxes, attached
            [num_layers, bs, nq, 4].
        """
        if query_pos is not None:
            raise ValueError('DinoTransformerDecoder makes the positional '
                             'queries from the boxes; pass none')
        if reg_branches is None or not self.return_intermediate:
            raise ValueError('DinoTransformerDecoder refines boxes at every '
                             'layer: needs reg_branches and '
                             'return_intermediate=True')
        outputs, references, _ = run_refining_layers(
            self.layers,
            query,
            reference_points,
            valid_ratios,
            branches=reg_branches,
            attached=True,
            self_attn_mask=self_attn_mask,
            with_cp=self.with_cp,
            position_of_reference=self.query_position,
            eps=self.refine_eps,
            **kwargs)
        return (torch.stack([self.norm(output) for output in outputs]),
                torch.stack(references))


@TRANSFORMER.register_module()
class DinoTransformer(DeformableDetrTransformer):
    """DINO's two-stage transformer (see the module docstring).

    Args:
        **kwargs: See :class:`.DeformableDetrTransformer`; two-stage and
            mixed query selection are DINO's and always on.
    """

    #: The encoder proposals are ranked and trained with the classes.
    class_agnostic_proposals = False

    def __init__(self, **kwargs):
        for key, value in (('as_two_stage', True), ('mixed_selection', True)):
            if kwargs.pop(key, value) is not value:
                raise ValueError(f'DinoTransformer is always {key}=True; '
                                 f'remove {key} from the config')
        super().__init__(as_two_stage=True, mixed_selection=True, **kwargs)
        # Its queries carry no positions: a decoder that does not make them
        # from the boxes would run without any, silently.
        if not isinstance(self.decoder, DinoTransformerDecoder):
            raise TypeError(
                f'DinoTransformer\'s queries have no positional part, which '
                f'type=\'opera.DinoTransformerDecoder\' makes from the boxes '
                f'at every layer; model.bbox_head.transformer.decoder is '
                f'{type(self.decoder).__name__}')

    def init_layers(self):
        """Level embeddings and the encoder-output projection; no
        positional projection of proposals (the decoder makes positions
        from boxes)."""
        self.level_embeds = nn.Parameter(
            torch.Tensor(self.num_feature_levels, self.embed_dims))
        self.enc_output = nn.Linear(self.embed_dims, self.embed_dims)
        self.enc_output_norm = nn.LayerNorm(self.embed_dims)

    def queries_from_boxes(self, boxes, content):
        """Decoder queries at given boxes: the boxes (detached) as
        references and ``content``; no positional queries (see
        :class:`DinoTransformerDecoder`).

        Args:
            boxes (Tensor): [bs, n, 4] (cx, cy, w, h) in [0, 1].
            content (Tensor): [bs, n, c].
        """
        check_boxes(boxes)
        return DecoderQueries(content, None, boxes.detach())

    def pre_decoder(self, memory, levels, query_embed, num_queries,
                    proposal_ranks=None, reg_branches=None,
                    cls_branches=None):
        """Stage 2: the encoder proposals ranked by their best class score;
        query i takes rank ``proposal_ranks[i]`` (i when None): its box
        (detached) as reference, its content from ``query_embed``.

        Args:
            memory (Tensor): [bs, S, c] encoder output.
            levels (dict): See :mod:`.deformable_encoder`.
            query_embed (Tensor): [num_queries, c] content queries.
            num_queries (int): Queries to make.
            proposal_ranks (Tensor | None): [num_queries] long.
            reg_branches, cls_branches (nn.ModuleList): The head's
                branches; the last of each scores the encoder output.

        Returns:
            tuple: :class:`.DecoderQueries` (no positions), and the class
            logits [bs, k, C] and boxes before sigmoid [bs, k, 4] of the k
            selected proposals (attached: DINO trains the encoder on
            these), best first.
        """
        if query_embed is None:
            raise ValueError('DinoTransformer needs the content queries')
        check_query_embed(query_embed, num_queries)
        num_kept = num_proposals(num_queries, proposal_ranks, levels)
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, levels['mask'], levels['level_sizes'])  # host ints
        num_dec = self.decoder.num_layers
        enc_cls = cls_branches[num_dec](output_memory)
        enc_coord = reg_branches[num_dec](output_memory) + output_proposals
        topk_index = torch.topk(enc_cls.max(-1)[0], num_kept, dim=1)[1]
        enc_cls = torch.gather(
            enc_cls, 1,
            topk_index.unsqueeze(-1).expand(-1, -1, enc_cls.size(-1)))
        enc_coord = torch.gather(enc_coord, 1,
                                 topk_index.unsqueeze(-1).expand(-1, -1, 4))
        query_coord = enc_coord if proposal_ranks is None else (
            enc_coord[:, proposal_ranks])
        bs = memory.size(0)
        content = query_embed.unsqueeze(0).expand(bs, -1, -1)
        queries = DecoderQueries(content, None,
                                 query_coord.detach().sigmoid())
        return queries, enc_cls, enc_coord
