"""Hungarian matching against ground truth tiled K times, from one cost matrix.

The one-to-many branch of hybrid matching matches its queries against each
image's ground truth tiled K times (``t.repeat(K, ...)``: copy ``c`` of
target ``j`` is row ``c * G + j``). The copies are identical, so the cost
matrix of the tiled targets is the untiled one [Q, G] with its columns
repeated K times: the costs are computed once per distinct target and only
the Hungarian algorithm sees all K * G columns, and only on the queries that
can be in an optimal matching (see :func:`candidate_queries`). The result is
an optimal matching of the tiled cost matrix: where that optimum is unique up
to the copies (it is unless costs tie exactly), each query gets the same
target as from the tiled matrix; which copy of it may differ, and the copies
are the same box or person, so the training targets are identical.

Assigners take the untiled ground truth and ``num_repeats`` (K) as
arguments (``assign(..., num_repeats=K)``); nothing is tiled.
:func:`matched_pairs` maps their result back to the untiled targets.
"""
import numpy as np
import torch
from mmdet.core.bbox.assigners import AssignResult
from scipy.optimize import linear_sum_assignment


def candidate_queries(cost, num_repeats):
    """Queries that hold an optimal matching of K copies of every target.

    Two exchange arguments bound the queries a minimum-cost matching of the
    tiled matrix (n = K * G columns, n < Q) needs:

    1. Each column can use one of its target's n cheapest queries: the other
       n - 1 columns hold at most n - 1 of them, so one is free, and moving
       the column there does not raise the cost. Call a query *shared* when
       it is among the n cheapest of more than one target.
    2. Then only target j's copies sit on queries that are among j's n
       cheapest and not shared, so once j's cheapest queries (in order of
       cost) include K unshared ones, all K copies of j fit there, moving
       each to a free one no dearer.

    Target j therefore needs its queries up to its K-th unshared one (all n
    if it has fewer than K). With few, well separated targets that is a
    little over K each, instead of Q.

    Args:
        cost (np.ndarray): Untiled cost matrix, shape [Q, G].
        num_repeats (int): K, copies of each target; K * G < Q.

    Returns:
        np.ndarray: Ascending query indices.
    """
    num_query, num_gts = cost.shape
    num_matched = num_repeats * num_gts
    # torch's sorted top-k is quicker here than numpy's argpartition + sort.
    cheapest = torch.from_numpy(cost).t().topk(
        num_matched, dim=1, largest=False).indices.numpy()  # [G, n]
    shared = np.bincount(cheapest.ravel(), minlength=num_query) > 1
    num_unshared = np.cumsum(~shared[cheapest], axis=1)  # [G, n]
    needed = np.where(num_unshared[:, -1] >= num_repeats,
                      np.argmax(num_unshared >= num_repeats, axis=1) + 1,
                      num_matched)  # [G]
    is_needed = np.arange(num_matched) < needed[:, None]
    is_candidate = np.zeros(num_query, dtype=bool)
    is_candidate[cheapest[is_needed]] = True
    return np.flatnonzero(is_candidate)


def match_with_repeated_targets(cost, num_repeats):
    """Hungarian matching against every target repeated ``num_repeats`` times.

    An optimal matching of the cost matrix of the targets tiled
    ``num_repeats`` times (copy ``c`` of target ``j`` is column
    ``c * G + j``), built by repeating the columns of the untiled matrix and
    solved on the :func:`candidate_queries` only.

    Args:
        cost (Tensor | np.ndarray): Untiled cost matrix, shape [Q, G].
        num_repeats (int): Copies of each target, >= 1.

    Returns:
        tuple[np.ndarray]: Query indices (ascending) and tiled target indices
        ``c * G + j`` of the ``min(Q, num_repeats * G)`` matched pairs.
    """
    if isinstance(cost, torch.Tensor):
        cost = cost.detach().cpu().numpy()
    if not np.isfinite(cost).all():
        raise ValueError(
            'the matching costs are not all finite: the predictions hold NaN '
            'or inf (training diverged, or the input is broken)')
    num_query, num_gts = cost.shape
    num_matched = num_repeats * num_gts
    # One copy of few targets is already a small problem.
    if num_repeats == 1 or not 0 < num_matched < num_query:
        return linear_sum_assignment(np.tile(cost, (1, num_repeats)))
    queries = candidate_queries(cost, num_repeats)
    rows, cols = linear_sum_assignment(
        np.tile(cost[queries], (1, num_repeats)))
    return queries[rows], cols


def assign_by_cost(cost, gt_labels, num_repeats, num_query, device):
    """One-to-one assignment of queries to targets tiled ``num_repeats`` times.

    Args:
        cost (Tensor | None): Untiled cost matrix [Q, G]; None when there is
            no query or no target (everything is background).
        gt_labels (Tensor): [G] labels of the untiled targets.
        num_repeats (int): Copies of each target.
        num_query (int): Q.
        device (torch.device): Where the result lives.

    Returns:
        :obj:`AssignResult`: ``gt_inds`` [Q], 0 for background, else the
        1-based index of the matched tiled target (copy ``c`` of target ``j``
        is ``c * G + j + 1``); ``labels`` [Q], -1 for background;
        ``num_gts`` = ``num_repeats * G``.
    """
    num_gts = gt_labels.size(0)
    gt_inds = torch.zeros(num_query, dtype=torch.long, device=device)
    labels = torch.full((num_query, ), -1, dtype=torch.long, device=device)
    if cost is not None:
        query_inds, tiled_inds = (
            torch.as_tensor(inds, dtype=torch.long, device=device)
            for inds in match_with_repeated_targets(cost, num_repeats))
        gt_inds[query_inds] = tiled_inds + 1
        labels[query_inds] = gt_labels[tiled_inds % num_gts]
    return AssignResult(num_gts * num_repeats, gt_inds, None, labels=labels)


def matched_pairs(assign_result, num_targets):
    """The matched queries and the untiled target of each.

    Args:
        assign_result (:obj:`AssignResult`): From an assigner called with
            ``num_repeats`` K: ``gt_inds`` index the K-fold tiled targets
            (copy ``c`` of target ``j`` is ``c * G + j + 1``).
        num_targets (int): G, the untiled targets.

    Returns:
        tuple[Tensor, Tensor]: Matched query indices [n] (ascending) and the
        target ``j`` in [0, G) of each [n].
    """
    query_inds = torch.nonzero(assign_result.gt_inds > 0).squeeze(1)
    tiled_inds = assign_result.gt_inds[query_inds] - 1
    return query_inds, tiled_inds % max(num_targets, 1)
