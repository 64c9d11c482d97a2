"""The interface between a DETR head and its transformer: three stages.

A head runs them one by one, so that query groups made elsewhere (from the
ground truth, from an auxiliary head) can join the matching queries between
query selection and the decoder:

=================  =====================================================
``encode``         levels -> memory [bs, S, c] and ``levels`` (shapes,
                   masks, valid ratios; :mod:`.deformable_encoder`)
``pre_decoder``    memory -> the matching queries (:class:`DecoderQueries`)
                   and the encoder proposals' class logits and references
``forward_decoder``queries -> states [L, bs, n, c] and references
                   [L, bs, n, R] of every decoder layer
=================  =====================================================

A transformer also says what its queries' references are
(:attr:`TransformerStages.reference_kind`): boxes [.., 4] (cx, cy, w, h), for
which it makes queries at given boxes (``queries_from_boxes``), or poses
[.., 2K], for which it makes queries at given poses
(``queries_from_poses``). Group makers ask for the kind they need with
:func:`require_reference_kind`.
"""
from abc import ABCMeta, abstractmethod

REFERENCE_KINDS = ('box', 'pose')
QUERIES_FROM = dict(box='queries_from_boxes', pose='queries_from_poses')
PLURAL = dict(box='boxes', pose='poses')


class TransformerStages(metaclass=ABCMeta):
    """Abstract base of the transformers the heads run stage by stage."""

    #: 'box' or 'pose': what the references of its queries are.
    reference_kind = None

    @abstractmethod
    def encode(self, mlvl_feats, mlvl_masks, mlvl_pos_embeds):
        """Stage 1.

        Args:
            mlvl_feats (list[Tensor]): Each [bs, c, h_l, w_l].
            mlvl_masks (list[Tensor]): Each [bs, h_l, w_l], True at padding.
            mlvl_pos_embeds (list[Tensor]): Each [bs, c, h_l, w_l].

        Returns:
            tuple[Tensor, dict]: memory [bs, S, c] and ``levels``.
        """

    @abstractmethod
    def pre_decoder(self, memory, levels, query_embed, num_queries,
                    proposal_ranks=None, *branches):
        """Stage 2: the ``num_queries`` matching queries.

        Args:
            memory (Tensor): [bs, S, c].
            levels (dict): Of :meth:`encode`.
            query_embed (Tensor | None): The head's learned queries.
            num_queries (int): Queries to make.
            proposal_ranks (Tensor | None): [num_queries] long proposal rank
                of each query (None: rank i feeds query i).
            *branches: The head's prediction branches the proposals use.

        Returns:
            tuple: ``DecoderQueries`` [bs, num_queries, ...], the encoder
            proposals' class logits [bs, S, C] and references (None where
            the transformer has no proposals).
        """

    @abstractmethod
    def forward_decoder(self, queries, memory, levels, branches=None,
                        self_attn_mask=None):
        """Stage 3: decode ``queries`` (the matching ones and any group
        joined after them).

        Args:
            queries (DecoderQueries): [bs, n, ...].
            memory (Tensor): [bs, S, c].
            levels (dict): Of :meth:`encode`.
            branches (nn.ModuleList | None): The branches that refine the
                references layer by layer.
            self_attn_mask (QueryGroupMask | Tensor | None): Keeps the
                query groups apart in every layer's self-attention.

        Returns:
            tuple[Tensor, Tensor]: states [L, bs, n, c] and references
            [L, bs, n, R].
        """


def require_reference_kind(transformer, kind, user):
    """Raise unless ``transformer`` declares ``reference_kind == kind``
    ('box' or 'pose'): it makes queries at given references of that kind.
    The error names ``user`` (the group maker that needs it) and the method
    it needs."""
    if getattr(transformer, 'reference_kind', None) != kind:
        raise TypeError(
            f'{user} makes {kind} queries, which needs a transformer whose '
            f'queries are {PLURAL[kind]} ({QUERIES_FROM[kind]}); '
            f'{type(transformer).__name__} has none (remove {user} from '
            f'model.bbox_head.fixed_target_groups)')
