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

from .builder import ATTENTION


class QueryGroupMask:
    """Consecutive query groups, each attending to its own queries only.

    Args:
        sizes (Sequence[int]): Queries in each group, in query order.
    """

    def __init__(self, sizes):
        self.sizes = tuple(int(size) for size in sizes)
        if not self.sizes or min(self.sizes) <= 0:
            raise ValueError(
                f'query groups need positive sizes, got {list(sizes)}')

    def __repr__(self):
        return f'{self.__class__.__name__}(sizes={self.sizes})'

    @property
    def num_queries(self):
        return sum(self.sizes)

    def dense(self, device=None):
        """The same mask as one boolean matrix (the masked form).

        Returns:
            Tensor: [N, N] bool, True where attention is blocked (query and
            key in different groups).
        """
        group_ids = torch.repeat_interleave(
            torch.arange(len(self.sizes), device=device),
            torch.tensor(self.sizes, device=device))
        return group_ids[:, None] != group_ids[None, :]

    def split(self, x, dim):
        """Split ``x`` along its query dimension ``dim`` into the groups."""
        if x.size(dim) != self.num_queries:
            raise ValueError(
                f'{self} covers {self.num_queries} queries, but the tensor '
                f'has {x.size(dim)} along dim {dim}')
        return x.split(self.sizes, dim)


@ATTENTION.register_module()
class MultiheadAttention(MMCVMultiheadAttention):
    """mmcv's ``MultiheadAttention`` that computes group masks per group.

    Same arguments, parameters and call as mmcv's. ``attn_mask`` may also be
    a :class:`QueryGroupMask` (self-attention only: query, key and value are
    the same queries): each group then attends to itself, one attention per
    group. Attention weights are never returned, so PyTorch takes its fused
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
        per_group = [
            attn_mask.split(x, seq_dim) if x is not None else
            (None, ) * len(attn_mask.sizes)
            for x in (query, key, value, identity, query_pos, key_pos)
        ]
        padding = ((None, ) * len(attn_mask.sizes) if key_padding_mask is None
                   else attn_mask.split(key_padding_mask, 1))
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
