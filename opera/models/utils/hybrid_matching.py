"""Hybrid matching (H-DETR): one-to-one and one-to-many query groups.

The decoder runs ``num_query_one2one + num_query_one2many`` queries during
training. The one-to-one group is matched to the ground truth as in DETR; the
one-to-many group is matched to the ground truth tiled ``k_one2many`` times,
so each object gets K positives there. The groups do not see each other in
decoder self-attention, so the one-to-one group computes exactly what it would
compute alone and inference keeps only it (no NMS needed).

Everything that makes a head "hybrid" lives in :class:`HybridQueryGroups`, so
the detection head and the pose head share one implementation of the query
split, the attention mask, the target tiling, the one-to-many matching and
the loss combination.
"""
import contextlib

from opera.core.bbox import RepeatedTargetsAssigner
from .group_attention import MultiheadAttention, QueryGroupMask

ONE2MANY_SUFFIX = '_one2many'


class HybridQueryGroups:
    """Query groups of a hybrid-matching head.

    Args:
        num_query_one2one (int): Queries matched one-to-one; the only ones
            used at test time.
        num_query_one2many (int): Extra queries matched one-to-many during
            training. 0 turns the hybrid branch off.
        k_one2many (int): How many times each image's ground truth is tiled
            for the one-to-many group.
        lambda_one2many (float): Weight of the one-to-many losses.
        split_self_attn (bool): Compute the decoder self-attention group by
            group (needs ``opera.MultiheadAttention``) rather than as one
            masked attention over all queries; same outputs, fewer scores
            (see :mod:`.group_attention`).
    """

    def __init__(self,
                 num_query_one2one,
                 num_query_one2many=0,
                 k_one2many=6,
                 lambda_one2many=1.0,
                 split_self_attn=True):
        if num_query_one2one <= 0:
            raise ValueError(
                f'num_query_one2one must be > 0, got {num_query_one2one}')
        if num_query_one2many < 0:
            raise ValueError(
                f'num_query_one2many must be >= 0, got {num_query_one2many}')
        if num_query_one2many > 0 and k_one2many < 1:
            raise ValueError(
                f'k_one2many must be >= 1 with a one-to-many group, '
                f'got {k_one2many}')
        self.num_query_one2one = num_query_one2one
        self.num_query_one2many = num_query_one2many
        self.k_one2many = k_one2many
        self.lambda_one2many = lambda_one2many
        self.split_self_attn = split_self_attn

    def __repr__(self):
        return (f'{self.__class__.__name__}('
                f'num_query_one2one={self.num_query_one2one}, '
                f'num_query_one2many={self.num_query_one2many}, '
                f'k_one2many={self.k_one2many}, '
                f'lambda_one2many={self.lambda_one2many}, '
                f'split_self_attn={self.split_self_attn})')

    @property
    def has_one2many(self):
        return self.num_query_one2many > 0

    @property
    def num_query(self):
        """All queries (the size of the query embedding)."""
        return self.num_query_one2one + self.num_query_one2many

    def num_active_queries(self, training):
        """Queries the decoder runs: all of them in training, else o2o."""
        return self.num_query if training else self.num_query_one2one

    def self_attn_mask(self, num_queries, device):
        """Decoder self-attention mask that blocks the groups from each other.

        Args:
            num_queries (int): Queries actually run (see
                :meth:`num_active_queries`).
            device (torch.device): Where a dense mask is made.

        Returns:
            QueryGroupMask | Tensor | None: The two groups as a
            :class:`QueryGroupMask` (``split_self_attn``), or the same as a
            [num_queries, num_queries] bool tensor, True where blocked
            (``[o2o:, :o2o]`` and ``[:o2o, o2o:]``); None when only the
            one-to-one group runs (nothing to block).
        """
        o2o = self.num_query_one2one
        if num_queries <= o2o:
            return None
        groups = QueryGroupMask((o2o, num_queries - o2o))
        return groups if self.split_self_attn else groups.dense(device)

    def check_self_attention(self, decoder):
        """Raise unless every decoder layer can take :meth:`self_attn_mask`.

        Args:
            decoder (TransformerLayerSequence): Layers whose first attention
                is the self-attention.
        """
        if not (self.has_one2many and self.split_self_attn):
            return
        for index, layer in enumerate(decoder.layers):
            attention = layer.attentions[0]
            if not isinstance(attention, MultiheadAttention):
                raise TypeError(
                    f'split_self_attn=True computes the decoder '
                    f'self-attention per query group, which needs '
                    f'type="opera.MultiheadAttention" as the first entry of '
                    f'the decoder\'s transformerlayers.attn_cfgs (layer '
                    f'{index} has {type(attention).__name__}); or set the '
                    f'head\'s split_self_attn=False')

    def split(self, x, dim):
        """Split a tensor along its query dimension.

        Returns:
            tuple[Tensor, Tensor | None]: The one-to-one part (the first
            ``num_query_one2one`` entries) and the one-to-many part (None if
            ``x`` holds only one-to-one queries).
        """
        o2o = self.num_query_one2one
        one2one = x.narrow(dim, 0, o2o)
        if x.size(dim) == o2o:
            return one2one, None
        return one2one, x.narrow(dim, o2o, x.size(dim) - o2o)

    def tile_targets(self, targets):
        """Repeat each image's targets ``k_one2many`` times along dim 0.

        Args:
            targets (list[Tensor]): One tensor per image, instances first,
                e.g. boxes [n, 4], labels [n], keypoints [n, K, 3].

        Returns:
            list[Tensor]: Same order, each of length ``k_one2many * n``
            (``t.repeat(k, 1, ...)``: the whole set, k times over).
        """
        k = self.k_one2many
        return [t.repeat(k, *([1] * (t.dim() - 1))) for t in targets]

    @contextlib.contextmanager
    def one2many_matching(self, head):
        """Within: ``head.assigner`` matches against ``k_one2many``-tiled
        targets from the untiled costs.

        The head's target code stays unchanged and gets the tiled targets
        (:meth:`tile_targets`); only the assignment is computed once per
        distinct target and with repeated cost columns (see
        ``opera.core.bbox.assigners.repeated_targets``): every query gets
        the target that matching the tiled targets directly gives it
        (unless costs tie exactly; the matching is optimal either way).
        """
        assigner = head.assigner
        head.assigner = RepeatedTargetsAssigner(assigner, self.k_one2many)
        try:
            yield
        finally:
            head.assigner = assigner

    def combine_losses(self, losses_one2one, losses_one2many):
        """L = L_o2o + lambda * L_o2m, keeping both branches visible in logs.

        Each branch was normalised by its own number of targets before it
        gets here. One-to-many entries are scaled by ``lambda_one2many`` and
        renamed with a ``_one2many`` suffix; mmdet sums every ``loss*`` key
        into the total loss.
        """
        combined = dict(losses_one2one)
        for name, value in losses_one2many.items():
            if 'loss' in name:
                value = _scale(value, self.lambda_one2many)
            combined[name + ONE2MANY_SUFFIX] = value
        return combined


def _scale(value, factor):
    if isinstance(value, (list, tuple)):
        return type(value)(v * factor for v in value)
    return value * factor
