"""The queries a decoder runs: what ``pre_decoder`` hands to
``forward_decoder``.

Both transformers (:class:`.DeformableDetrTransformer`,
:class:`.PETRTransformer`) run in three stages: ``encode`` the feature maps,
``pre_decoder`` (proposals and the matching queries), ``forward_decoder``.
:class:`DecoderQueries` is the hand-off between the last two, so that a
model can add groups of queries (:meth:`DecoderQueries.cat`) before the
decoder runs them.
"""
import torch


class DecoderQueries:
    """Content, position and reference of a set of decoder queries.

    Args:
        content (Tensor): [bs, n, c] content queries.
        position (Tensor | None): [bs, n, c] positional queries; None for
            a decoder that makes each layer's positional queries from the
            references (DINO's).
        reference (Tensor): [bs, n, R] initial references in [0, 1] of the
            valid image area: boxes (cx, cy, w, h), R = 4; points (x, y),
            R = 2; poses (x1, y1, ..., xK, yK), R = 2K. Proposals and boxes
            given from outside come detached; only the one-stage
            detector's learned reference keeps its gradient (to the
            transformer's ``reference_points`` layer).

    Raises:
        ValueError: If the three do not agree on bs and n, or content and
            position on c.
    """

    def __init__(self, content, position, reference):
        if content.dim() != 3 or (position is not None
                                  and position.shape != content.shape):
            shape = None if position is None else tuple(position.shape)
            raise ValueError(
                f'DecoderQueries: content {tuple(content.shape)} and '
                f'position {shape} must both be [bs, n, c]')
        if reference.dim() != 3 or reference.shape[:2] != content.shape[:2]:
            raise ValueError(
                f'DecoderQueries: reference {tuple(reference.shape)} must be '
                f'[bs, n, R] for content {tuple(content.shape)}')
        self.content = content
        self.position = position
        self.reference = reference

    def __repr__(self):
        bs, num_queries, channels = self.content.shape
        return (f'{type(self).__name__}(bs={bs}, num_queries={num_queries}, '
                f'c={channels}, R={self.reference.size(-1)})')

    @property
    def num_queries(self):
        """n, the queries per image."""
        return self.content.size(1)

    def sequence_first(self):
        """``query`` and ``query_pos`` as a decoder layer takes them.

        Returns:
            dict: ``query`` and ``query_pos``, each [n, bs, c] (views;
            ``query_pos`` None without positions).
        """
        return dict(
            query=self.content.permute(1, 0, 2),
            query_pos=None if self.position is None else self.position.permute(
                1, 0, 2))

    def cat(self, *others):
        """These queries followed by ``others`` along the query dimension.

        Args:
            *others (DecoderQueries): Groups of the same bs, c and R.

        Returns:
            DecoderQueries: [bs, n + sum of the others' n, ...], in order.

        Raises:
            ValueError: Naming the group whose bs, c or R differs, or that
                has positions where the first has none (or the reverse).
        """
        groups = (self, ) + others
        for index, other in enumerate(others, 1):
            if (other.position is None) != (self.position is None):
                raise ValueError(
                    f'DecoderQueries.cat: group {index} has '
                    f'{"no " if other.position is None else ""}positional '
                    f'queries, the first group '
                    f'{"none" if self.position is None else "has"}')
            for name, size, expected in (
                ('bs', other.content.size(0), self.content.size(0)),
                ('c', other.content.size(2), self.content.size(2)),
                ('R', other.reference.size(2), self.reference.size(2)),
            ):
                if size != expected:
                    raise ValueError(
                        f'DecoderQueries.cat: group {index} has {name}='
                        f'{size}, the first group {name}={expected} '
                        f'({other!r} after {self!r})')
        if not others:
            # No copy: the autograd graph (and so the order in which
            # gradients are summed) stays that of the queries alone.
            return self
        position = None
        if self.position is not None:
            position = torch.cat([group.position for group in groups], 1)
        return DecoderQueries(
            torch.cat([group.content for group in groups], 1), position,
            torch.cat([group.reference for group in groups], 1))
