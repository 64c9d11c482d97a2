"""Hybrid matching schemes: query groups, how each is matched, and when.

A DETR decoder can run several groups of queries that do not see each other
in self-attention. Each group is matched to the ground truth of every image
on its own, at every decoder layer, with a ground-truth repeat K: K = 1 is
DETR's one-to-one matching; K > 1 tiles the ground truth K times (each object
gets K positives, "one-to-many"). The schemes of "DETRs with Hybrid
Matching" (arXiv 2207.13080, Sec. 3.2) and Group DETR are settings of this:

================  ==========================================================
hybrid branch     300 queries K = 1 (kept at test) + 1500 queries K = 6
hybrid epoch      one group of 1800, K = 10 for the first epochs, then 1
hybrid layer      one group of 1800, K = 10 at the first 4 layers, 1 after
Group DETR        G groups of 300, K = 1 each, only the first kept at test
================  ==========================================================

:class:`HybridQueryGroups` holds the groups and derives from them alone the
queries each mode runs, the decoder self-attention mask, which two-stage
proposal feeds which query, how predictions split into the groups and each
group's K at every layer now. The criterion scores every (layer, group) from
that (:meth:`opera.models.criteria.SetCriterion.query_group_losses`).
"""
import copy
import inspect

import torch

from ..attention.group_attention import MultiheadAttention, QueryGroupMask

PROPOSAL_MODES = ('next', 'top')


class QueryGroup:
    """One group of decoder queries and how it is supervised.

    Args:
        num_queries (int): Queries in the group.
        num_repeats (int | Sequence[int]): Ground-truth repeat K at every
            decoder layer, or one K per layer. 1 is one-to-one.
        loss_weight (float): Weight of the group's losses.
        at_test (bool): Whether the group runs at test time. The groups
            that do come first.
        proposals (str): Which two-stage proposals feed the group: 'next'
            (the next ranks after the groups before it that take 'next') or
            'top' (the best ranks, as the first group gets).
        name (str | None): Suffix of the group's loss names
            (``loss_cls_{name}``), '' for plain names; None: '' for the
            first group, ``group{i}`` for group i > 0.
        repeats_schedule (Sequence[dict]): ``dict(epoch=E, num_repeats=K)``
            entries, ascending: from (0-based) epoch E on, K (an int or one
            per layer) replaces ``num_repeats``.
    """

    def __init__(self,
                 num_queries,
                 num_repeats=1,
                 loss_weight=1.0,
                 at_test=False,
                 proposals='next',
                 name=None,
                 repeats_schedule=()):
        if int(num_queries) <= 0:
            raise ValueError(
                f'a query group needs num_queries > 0, got {num_queries}')
        if proposals not in PROPOSAL_MODES:
            raise ValueError(f'proposals must be one of {PROPOSAL_MODES}, '
                             f'got {proposals!r}')
        self.num_queries = int(num_queries)
        self.num_repeats = num_repeats
        self.loss_weight = loss_weight
        self.at_test = bool(at_test)
        self.proposals = proposals
        self.name = name
        self.repeats_schedule = [dict(entry) for entry in repeats_schedule]

    def __repr__(self):
        return (f'QueryGroup(num_queries={self.num_queries}, '
                f'num_repeats={self.num_repeats}, '
                f'loss_weight={self.loss_weight}, at_test={self.at_test}, '
                f'proposals={self.proposals!r}, name={self.name!r}, '
                f'repeats_schedule={self.repeats_schedule})')

    @property
    def suffix(self):
        return f'_{self.name}' if self.name else ''

    def repeats_at(self, epoch, num_layers):
        """K of every decoder layer at ``epoch`` (None: no schedule needed).

        Returns:
            tuple[int]: One K per layer.
        """
        num_repeats = self.num_repeats
        if self.repeats_schedule:
            if epoch is None:
                raise RuntimeError(
                    f'{self} follows an epoch schedule, but no epoch was set: '
                    f'add custom_hooks=[dict(type="opera.'
                    f'QueryGroupScheduleHook")] to the config (or call '
                    f'the detector\'s set_epoch(epoch))')
            for entry in self.repeats_schedule:
                if epoch >= entry['epoch']:
                    num_repeats = entry['num_repeats']
        return per_layer(num_repeats, num_layers, self)


def per_layer(num_repeats, num_layers, group):
    """``num_repeats`` as a tuple of ``num_layers`` Ks >= 1."""
    if isinstance(num_repeats, int):
        num_repeats = (num_repeats, ) * num_layers
    num_repeats = tuple(num_repeats)
    if len(num_repeats) != num_layers or not all(
            isinstance(k, int) and k >= 1 for k in num_repeats):
        raise ValueError(
            f'{group}: num_repeats must be an int >= 1 or one int >= 1 per '
            f'decoder layer ({num_layers} layers), got {list(num_repeats)}')
    return num_repeats


def build_query_group(cfg):
    """A :class:`QueryGroup` from a config dict (unknown keys refused)."""
    if isinstance(cfg, QueryGroup):
        # A copy: the groups' constructor names its groups.
        return copy.copy(cfg)
    known = list(inspect.signature(QueryGroup).parameters)
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise TypeError(f'query group {dict(cfg)}: unknown keys {unknown}; '
                        f'known: {known}')
    return QueryGroup(**cfg)


HYBRID_BRANCH_KEYS = ('num_query_one2many', 'k_one2many', 'lambda_one2many')


def pop_hybrid_branch_keys(head_kwargs):
    """Take H-DETR's hybrid-branch shorthand keys out of a head's keyword
    arguments (the keys of the released H-DETR / H-PETR configs).

    Returns:
        dict: The shorthand keys given, for :func:`build_query_groups`.
    """
    return {
        key: head_kwargs.pop(key)
        for key in HYBRID_BRANCH_KEYS if key in head_kwargs
    }


def build_query_groups(num_query, query_groups=None, split_self_attn=True,
                       hybrid_branch_keys=None):
    """A head's :class:`HybridQueryGroups`: the one place where the
    hybrid-branch shorthand becomes query groups.

    ``query_groups`` (a list of :class:`QueryGroup` arguments) is the
    structure. Without it, the shorthand of the released H-DETR configs
    describes the hybrid branch: ``num_query`` one-to-one queries plus
    ``num_query_one2many`` queries matched ``k_one2many`` times, their
    losses weighted ``lambda_one2many`` (:meth:`HybridQueryGroups.
    hybrid_branch`). With ``query_groups``, ``num_query_one2many`` must be 0
    (or absent) and ``num_query`` the queries of its ``at_test`` groups, so
    that no key says something the groups contradict.

    The decoder's layer count is not needed here: the head gives the built
    decoder to :meth:`HybridQueryGroups.bind_decoder`.

    Args:
        num_query (int): Queries run at test time.
        query_groups (list[dict] | None): The groups.
        split_self_attn (bool): See :class:`HybridQueryGroups`.
        hybrid_branch_keys (dict | None): ``num_query_one2many``,
            ``k_one2many`` (required with one-to-many queries),
            ``lambda_one2many``.
    """
    keys = dict(hybrid_branch_keys or {})
    unknown = sorted(set(keys) - set(HYBRID_BRANCH_KEYS))
    if unknown:
        named = ', '.join(f"'{key}'" for key in unknown)
        raise TypeError(f'the head got an unexpected keyword argument '
                        f'{named} (misspelt config key?); its hybrid-branch '
                        f'keys are {list(HYBRID_BRANCH_KEYS)}')
    num_query_one2many = keys.get('num_query_one2many', 0)
    if query_groups is None:
        if num_query_one2many and 'k_one2many' not in keys:
            raise TypeError(
                f'num_query_one2many={num_query_one2many} needs k_one2many '
                f'(the ground-truth repeat K of the one-to-many queries): '
                f'set model.bbox_head.k_one2many')
        return HybridQueryGroups.hybrid_branch(
            num_query,
            num_query_one2many,
            keys.get('k_one2many', 1),
            keys.get('lambda_one2many', 1.0),
            num_layers=None,
            split_self_attn=split_self_attn)
    if num_query_one2many:
        raise ValueError(
            f'the head has both query_groups and num_query_one2many='
            f'{num_query_one2many}: give the one-to-many group in '
            f'query_groups and set num_query_one2many=0')
    groups = HybridQueryGroups(query_groups, None, split_self_attn)
    if groups.num_test_queries != num_query:
        raise ValueError(
            f'num_query={num_query}, but the at_test query groups hold '
            f'{groups.num_test_queries} queries: set num_query to the '
            f'queries run at test time')
    return groups


class HybridQueryGroups:
    """The query groups of a DETR head and everything derived from them.

    Args:
        groups (Sequence[dict | QueryGroup]): In query order; the groups
            with ``at_test=True`` first.
        num_layers (int | None): Decoder layers (each is supervised); None
            until :meth:`bind_decoder` gives the decoder.
        split_self_attn (bool): Compute the decoder self-attention group by
            group (needs ``opera.MultiheadAttention``) rather than as one
            masked attention over all queries; same outputs, fewer scores
            (see :mod:`.group_attention`).
    """

    def __init__(self, groups, num_layers=None, split_self_attn=True):
        self.groups = [build_query_group(group) for group in groups]
        for index, group in enumerate(self.groups):
            if group.name is None:
                group.name = f'group{index}' if index else ''
        self.num_layers = None if num_layers is None else int(num_layers)
        self.split_self_attn = split_self_attn
        # Whether the decoder's self-attentions split per group (all are
        # opera.MultiheadAttention); known once a decoder is bound.
        self.decoder_splits = True
        self.epoch = None
        self._check()

    @classmethod
    def hybrid_branch(cls,
                      num_query_one2one,
                      num_query_one2many=0,
                      k_one2many=6,
                      lambda_one2many=1.0,
                      num_layers=6,
                      split_self_attn=True):
        """H-DETR's hybrid branch: a one-to-one group kept at test and, if
        ``num_query_one2many`` > 0, a one-to-many group (K =
        ``k_one2many``, weight ``lambda_one2many``, losses ``*_one2many``)
        fed by the next-ranked proposals."""
        if num_query_one2one <= 0:
            raise ValueError(
                f'num_query_one2one must be > 0, got {num_query_one2one}')
        if num_query_one2many < 0:
            raise ValueError(
                f'num_query_one2many must be >= 0, got {num_query_one2many}')
        groups = [QueryGroup(num_query_one2one, at_test=True, name='')]
        if num_query_one2many > 0:
            if k_one2many < 1:
                raise ValueError(f'k_one2many must be >= 1 with a '
                                 f'one-to-many group, got {k_one2many}')
            groups.append(
                QueryGroup(
                    num_query_one2many,
                    num_repeats=k_one2many,
                    loss_weight=lambda_one2many,
                    name='one2many'))
        return cls(groups, num_layers, split_self_attn)

    def _check(self):
        if not self.groups:
            raise ValueError('a head needs at least one query group')
        flags = [group.at_test for group in self.groups]
        if not flags[0] or flags != sorted(flags, reverse=True):
            raise ValueError(
                f'the groups that run at test time (at_test=True) must come '
                f'first, and there must be one: {self.groups}')
        names = [group.name for group in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f'query group names must differ (they name the '
                             f'losses), got {names}')
        for group in self.groups:
            self._check_repeats(group.num_repeats, group)
            epochs = [entry.get('epoch') for entry in group.repeats_schedule]
            if (not all(isinstance(e, int) and e >= 0 for e in epochs)
                    or epochs != sorted(set(epochs))):
                raise ValueError(
                    f'{group}: repeats_schedule needs ascending, distinct '
                    f'epochs >= 0, each dict(epoch=E, num_repeats=K)')
            for entry in group.repeats_schedule:
                if set(entry) != {'epoch', 'num_repeats'}:
                    raise ValueError(
                        f'{group}: a repeats_schedule entry has exactly the '
                        f'keys epoch and num_repeats, got {entry}')
                self._check_repeats(entry['num_repeats'], group)

    def _check_repeats(self, num_repeats, group):
        """Check K (an int, or one per layer once the decoder is known)."""
        if self.num_layers is not None:
            per_layer(num_repeats, self.num_layers, group)
        elif not isinstance(num_repeats, int):
            per_layer(num_repeats, len(num_repeats), group)

    def __repr__(self):
        return (f'{self.__class__.__name__}(groups={self.groups}, '
                f'num_layers={self.num_layers}, '
                f'split_self_attn={self.split_self_attn})')

    @property
    def num_query_total(self):
        """All queries of all groups (the size of a learned query
        embedding); a head's ``num_query`` is the test-time count,
        :attr:`num_test_queries`."""
        return sum(group.num_queries for group in self.groups)

    @property
    def num_test_queries(self):
        """Queries run at test time: those of the ``at_test`` groups."""
        return sum(g.num_queries for g in self.groups if g.at_test)

    def set_epoch(self, epoch):
        """The training epoch (0-based) the ``repeats_schedule`` follow."""
        self.epoch = int(epoch)

    def describe_repeats(self):
        """Every group's K per decoder layer now, in words (for the log)."""
        return '; '.join(
            f'group {index} ({group.num_queries} queries): K per layer '
            f'{list(self.num_repeats(group))}'
            for index, group in enumerate(self.groups))

    def num_active_queries(self, training):
        """Queries the decoder runs: every group in training, else the
        ``at_test`` ones."""
        return self.num_query_total if training else self.num_test_queries

    def groups_of(self, num_queries):
        """The leading groups that hold exactly ``num_queries`` queries."""
        total = 0
        for index, group in enumerate(self.groups):
            total += group.num_queries
            if total == num_queries:
                return self.groups[:index + 1]
        raise ValueError(
            f'{num_queries} queries are not a whole number of leading query '
            f'groups (sizes {[g.num_queries for g in self.groups]})')

    def num_repeats(self, group):
        """K of each decoder layer for ``group`` now (the epoch set)."""
        return group.repeats_at(self.epoch, self.num_layers)

    def self_attn_mask(self, num_queries, device, fixed_groups=()):
        """Decoder self-attention mask that keeps the groups apart.

        Args:
            num_queries (int): Matching queries actually run (see
                :meth:`num_active_queries`); the fixed-target groups' come
                after them.
            device (torch.device): Where a dense mask is made.
            fixed_groups (Sequence[FixedTargetGroup]): Groups of this batch
                with given targets; each block of one sees its own queries
                and, if ``sees_matching``, one way, every matching query.

        Returns:
            QueryGroupMask | Tensor | None: The groups run as a
            :class:`QueryGroupMask` (``split_self_attn``), or the same as a
            [N, N] bool tensor, True where blocked; None when one group runs
            (nothing to block).
        """
        groups = self.groups_of(num_queries)
        matching = tuple(range(len(groups)))
        sizes = [group.num_queries for group in groups]
        sees = [()] * len(groups)
        for group in fixed_groups:
            if group.num_queries:  # a batch without objects may add none
                sizes += group.block_sizes
                sees += [matching if group.sees_matching else ()
                         ] * group.num_blocks
        if len(sizes) == 1:
            return None
        mask = QueryGroupMask(sizes, sees)
        if self.split_self_attn and self.decoder_splits:
            return mask
        return mask.dense(device)

    def proposal_ranks(self, num_queries, device):
        """The two-stage proposal rank that feeds each query run.

        Returns:
            Tensor | None: [num_queries] long ranks (0 = the best proposal),
            or None when query i takes rank i (then the top
            ``num_queries`` proposals in order are all that is needed).
        """
        ranks, next_rank = [], 0
        for group in self.groups_of(num_queries):
            start = next_rank if group.proposals == 'next' else 0
            ranks.append(torch.arange(start, start + group.num_queries))
            if group.proposals == 'next':
                next_rank += group.num_queries
        ranks = torch.cat(ranks)
        if torch.equal(ranks, torch.arange(num_queries)):
            return None
        return ranks.to(device)

    def bind_decoder(self, decoder):
        """Take the decoder's layer count and check that every decoder layer
        can take :meth:`self_attn_mask`.

        Args:
            decoder (TransformerLayerSequence): Layers whose first attention
                is the self-attention.
        """
        if self.num_layers is None:
            self.num_layers = decoder.num_layers
            self._check()
        if decoder.num_layers != self.num_layers:
            raise ValueError(
                f'the query groups are set for {self.num_layers} decoder '
                f'layers, the decoder has {decoder.num_layers}')
        self.decoder_splits = all(
            isinstance(layer.attentions[0], MultiheadAttention)
            for layer in decoder.layers)
        # One matching group needs no mask; a fixed-target group added in
        # training then gets the dense form, which any attention takes
        # (same outputs).
        if not self.split_self_attn or len(self.groups) == 1:
            return
        for index, layer in enumerate(decoder.layers):
            attention = layer.attentions[0]
            if isinstance(attention, MultiheadAttention):
                continue
            raise TypeError(
                f'split_self_attn=True computes the decoder '
                f'self-attention per query group, which needs '
                f'type="opera.MultiheadAttention" as the first entry of '
                f'the decoder\'s transformerlayers.attn_cfgs (layer '
                f'{index} has {type(attention).__name__}); or set the '
                f'head\'s split_self_attn=False')

    @staticmethod
    def check_assigner(assigner):
        """Raise unless ``assigner.assign`` takes ``num_repeats`` (every
        group is matched through it)."""
        if 'num_repeats' not in inspect.signature(assigner.assign).parameters:
            raise TypeError(
                f'train_cfg.assigner {type(assigner).__module__}.'
                f'{type(assigner).__name__} cannot match a query group '
                f'against repeated ground truth (its assign takes no '
                f'num_repeats): use opera.HungarianAssigner for boxes or '
                f'opera.PoseHungarianAssigner for poses')

    def test_part(self, x, dim):
        """The test-time queries of ``x`` (its first
        :attr:`num_test_queries` along ``dim``)."""
        return x.narrow(dim, 0, self.num_test_queries)

    def split(self, x, dim, fixed_groups=()):
        """``x`` split along its query dimension into the groups it holds.

        Returns:
            tuple[Tensor]: One view per leading matching group covered by
            ``x.size(dim)`` less the ``fixed_groups``' queries, then one per
            fixed-target group.
        """
        fixed = [group.num_queries for group in fixed_groups]
        sizes = [
            g.num_queries for g in self.groups_of(x.size(dim) - sum(fixed))
        ]
        return x.split(sizes + fixed, dim)
