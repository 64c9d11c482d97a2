"""Self-attention over query groups that do not see each other.

Hybrid matching runs a one-to-one and a one-to-many query group through one
decoder, blocked from each other in self-attention. As one masked attention
over all N queries that costs N^2 scores per head, most of them masked out;
computed group by group it costs sum(n_g^2): 300^2 + 1500^2 = 2.34M instead
of 1800^2 = 3.24M for H-Deformable-DETR, 300^2 + 900^2 = 0.9M instead of
1.44M for H-PETR. A masked-out score gets softmax weight exactly 0, so both
forms give the same outputs (up to float summation order).

:class:`QueryGroupMask` describes the groups and is passed where a mask
would be (``attn_masks``); :class:`MultiheadAttention` computes it group by
group. Its parameters are those of mmcv's ``MultiheadAttention``
(``attn.in_proj_weight``, ...), so checkpoints load unchanged.
"""
import torch
from mmcv.cnn.bricks.transformer import \
    MultiheadAttention as MMCVMultiheadAttention

from ..builder import ATTENTION


class QueryGroupMask:
    """Consecutive query groups, each attending to its own queries and,
    one way, to the groups it is allowed to see.

    Args:
        sizes (Sequence[int]): Queries in each group, in query order.
        sees (Sequence[Sequence[int]] | None): For each group, the indices
            of the other groups whose queries it may also attend to (its
            queries are not seen back unless the other group lists it too);
            None: every group sees only itself. A denoising group that may
            look at the matching queries, which never look at it, is
            ``sees=[(), (0, )]``.
    """

    def __init__(self, sizes, sees=None):
        self.sizes = tuple(int(size) for size in sizes)
        if not self.sizes or min(self.sizes) <= 0:
            raise ValueError(
                f'query groups need positive sizes, got {list(sizes)}')
        if sees is None:
            sees = [()] * len(self.sizes)
        self.sees = tuple(tuple(int(j) for j in seen) for seen in sees)
        if len(self.sees) != len(self.sizes):
            raise ValueError(f'sees needs one entry per group '
                             f'({len(self.sizes)}), got {len(self.sees)}')
        for i, seen in enumerate(self.sees):
            if any(j == i or not 0 <= j < len(self.sizes) for j in seen):
                raise ValueError(
                    f'group {i} sees {list(seen)}: other groups\' '
                    f'indices (0-{len(self.sizes) - 1}, not {i}) expected')

    def __repr__(self):
        return f'{self.__class__.__name__}(sizes={self.sizes}, ' \
            f'sees={self.sees})'

    @property
    def num_queries(self):
        return sum(self.sizes)

    def dense(self, device=None):
        """The same mask as one boolean matrix (the masked form).

        Returns:
            Tensor: [N, N] bool, True where attention is blocked: query and
            key in different groups, unless the query's group sees the
            key's.
        """
        num_groups = len(self.sizes)
        visible = torch.eye(num_groups, dtype=torch.bool, device=device)
        for i, seen in enumerate(self.sees):
            visible[i, list(seen)] = True
        group_ids = torch.repeat_interleave(
            torch.arange(num_groups, device=device),
            torch.tensor(self.sizes, device=device))
        return ~visible[group_ids[:, None], group_ids[None, :]]

    def split(self, x, dim):
        """Split ``x`` along its query dimension ``dim`` into the groups."""
        if x.size(dim) != self.num_queries:
            raise ValueError(
                f'{self} covers {self.num_queries} queries, but the tensor '
                f'has {x.size(dim)} along dim {dim}')
        return x.split(self.sizes, dim)

    def keys_of(self, parts, dim):
        """For each group, its own part of ``parts`` (one tensor per group)
        followed by the parts of the groups it sees, joined along ``dim``:
        the keys (values, key positions, padding) it attends to."""
        return [
            torch.cat([parts[i]] + [parts[j] for j in seen], dim)
            if seen else parts[i] for i, seen in enumerate(self.sees)
        ]


@ATTENTION.register_module()
class MultiheadAttention(MMCVMultiheadAttention):
    """mmcv's ``MultiheadAttention`` that computes group masks per group.

    Same arguments, parameters and call as mmcv's. ``attn_mask`` may also be
    a :class:`QueryGroupMask` (self-attention only: query, key and value are
    the same queries): each group then attends to itself and the groups it
    sees, one attention per group. Attention weights are never returned, so PyTorch takes its fused
    scaled-dot-product path.
    """

    def forward(self,
                query,
                key=None,
                value=None,
                identity=None,
                query_pos=None,
                key_pos=None,
                attn_mask=None,
                key_padding_mask=None,
                **kwargs):
        """Attention with identity connection.

        Args:
            query (Tensor): [nq, bs, c] ([bs, nq, c] if ``batch_first``).
            key, value (Tensor | None): [nk, bs, c]; ``query``/``key`` if
                None.
            identity (Tensor | None): Residual, ``query`` if None.
            query_pos, key_pos (Tensor | None): Added to query / key;
                ``key_pos`` defaults to ``query_pos`` when shapes agree.
            attn_mask (Tensor | QueryGroupMask | None): [nq, nk] mask (True
                or -inf blocks) or query groups.
            key_padding_mask (Tensor | None): [bs, nk], True at padding.

        Returns:
            Tensor: Same shape as ``query``.
        """
        if not isinstance(attn_mask, QueryGroupMask):
            return self.attend(query, key, value, identity, query_pos,
                               key_pos, attn_mask, key_padding_mask)
        seq_dim = 1 if self.batch_first else 0
        key = query if key is None else key
        value = key if value is None else value
        if key.size(seq_dim) != query.size(seq_dim):
            raise ValueError(
                f'a QueryGroupMask is for self-attention, but got '
                f'{query.size(seq_dim)} queries and {key.size(seq_dim)} keys')
        if key_pos is None and query_pos is not None:
            # As attend() would: self-attention keys are at the queries'
            # positions (needed here for the keys of groups seen one way).
            key_pos = query_pos
        none = (None, ) * len(attn_mask.sizes)
        query, identity, query_pos = (
            attn_mask.split(x, seq_dim) if x is not None else none
            for x in (query, identity, query_pos))
        key, value, key_pos = (
            attn_mask.keys_of(attn_mask.split(x, seq_dim), seq_dim)
            if x is not None else none for x in (key, value, key_pos))
        padding = (none if key_padding_mask is None else attn_mask.keys_of(
            attn_mask.split(key_padding_mask, 1), 1))
        per_group = (query, key, value, identity, query_pos, key_pos)
        outputs = [
            self.attend(*group, None, group_padding)
            for *group, group_padding in zip(*per_group, padding)
        ]
        return torch.cat(outputs, seq_dim)

    def attend(self, query, key, value, identity, query_pos, key_pos,
               attn_mask, key_padding_mask):
        """One attention of ``query`` over ``key`` (arguments as
        :meth:`forward`, ``attn_mask`` a tensor or None)."""
        key = query if key is None else key
        value = key if value is None else value
        identity = query if identity is None else identity
        if (key_pos is None and query_pos is not None
                and query_pos.shape == key.shape):
            key_pos = query_pos
        if query_pos is not None:
            query = query + query_pos
        if key_pos is not None:
            key = key + key_pos
        if self.batch_first:
            query, key, value = (
                x.transpose(0, 1) for x in (query, key, value))
        out = self.attn(
            query,
            key,
            value,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False)[0]
        if self.batch_first:
            out = out.transpose(0, 1)
        return identity + self.dropout_layer(self.proj_drop(out))
