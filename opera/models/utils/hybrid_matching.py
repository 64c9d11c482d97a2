"""Hybrid matching (H-DETR): one-to-one and one-to-many query groups.

The decoder runs ``num_query_one2one + num_query_one2many`` queries during
training. The one-to-one group is matched to the ground truth as in DETR; the
one-to-many group is matched to the ground truth tiled ``k_one2many`` times,
so each object gets K positives there. The groups do not see each other in
decoder self-attention, so the one-to-one group computes exactly what it would
compute alone and inference keeps only it (no NMS needed).

Everything that makes a head "hybrid" lives in :class:`HybridQueryGroups`, so
the detection head and the pose head share one implementation of the query
split, the attention mask, the target tiling and the loss combination.
"""
import torch

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
    """

    def __init__(self,
                 num_query_one2one,
                 num_query_one2many=0,
                 k_one2many=6,
                 lambda_one2many=1.0):
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

    def __repr__(self):
        return (f'{self.__class__.__name__}('
                f'num_query_one2one={self.num_query_one2one}, '
                f'num_query_one2many={self.num_query_one2many}, '
                f'k_one2many={self.k_one2many}, '
                f'lambda_one2many={self.lambda_one2many})')

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
        """Boolean decoder self-attention mask, True where attention is blocked.

        Args:
            num_queries (int): Queries actually run (see
                :meth:`num_active_queries`).
            device (torch.device): Where the mask is made.

        Returns:
            Tensor | None: [num_queries, num_queries] bool, blocking the
            one-to-one and one-to-many groups from each other; None when only
            the one-to-one group runs (nothing to block).
        """
        o2o = self.num_query_one2one
        if num_queries <= o2o:
            return None
        mask = torch.zeros(
            num_queries, num_queries, dtype=torch.bool, device=device)
        mask[o2o:, :o2o] = True
        mask[:o2o, o2o:] = True
        return mask

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
