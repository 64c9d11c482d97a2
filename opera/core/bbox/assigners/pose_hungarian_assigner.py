"""Hungarian matching of predicted poses to ground-truth persons (PETR)."""
import numpy as np
import torch
from mmdet.core.bbox.assigners import AssignResult, BaseAssigner
from scipy.optimize import linear_sum_assignment

from ..builder import BBOX_ASSIGNERS, build_match_cost


def match_with_repeated_targets(cost, num_repeats):
    """Hungarian matching against every target repeated ``num_repeats`` times.

    Gives the result of ``linear_sum_assignment`` on the cost matrix of the
    targets tiled ``num_repeats`` times (``gt.repeat(num_repeats, ...)``:
    copy ``c`` of target ``j`` is column ``c * G + j``), but builds that
    matrix by repeating the columns of the untiled one, so the costs are
    computed once instead of ``num_repeats`` times.

    Args:
        cost (Tensor | np.ndarray): Untiled cost matrix, shape [Q, G].
        num_repeats (int): Copies of each target, >= 1.

    Returns:
        tuple[np.ndarray]: Query indices (ascending) and tiled target indices
        ``c * G + j`` of the ``min(Q, num_repeats * G)`` matched pairs.
    """
    if isinstance(cost, torch.Tensor):
        cost = cost.detach().cpu().numpy()
    return linear_sum_assignment(np.tile(cost, (1, num_repeats)))


@BBOX_ASSIGNERS.register_module()
class PoseHungarianAssigner(BaseAssigner):
    """One-to-one matching of predicted poses to ground-truth persons.

    The cost of query ``q`` for person ``g`` is
    ``cls_cost(cls_pred, gt_labels) + kpt_cost(kpt_pred, gt normalised)
    + oks_cost(kpt_pred in pixels, gt in pixels, gt_areas)``: keypoint L1 in
    coordinates normalised by the image (w, h) of ``img_meta['img_shape']``,
    OKS in pixels of that image. The Hungarian algorithm (scipy) then gives
    each person one query, or each query one person when there are more
    persons than queries; the other queries are background.

    Args:
        cls_cost (dict): Config of the classification cost, called as
            ``cost(cls_pred [Q, C], gt_labels [G]) -> [Q, G]``.
        kpt_cost (dict): Config of the keypoint cost (``opera.KptL1Cost``).
        oks_cost (dict): Config of the OKS cost (``opera.OksCost``).
    """

    def __init__(self,
                 cls_cost=dict(type='mmdet.FocalLossCost', weight=2.0),
                 kpt_cost=dict(type='opera.KptL1Cost', weight=70.0),
                 oks_cost=dict(type='opera.OksCost', weight=7.0)):
        self.cls_cost = build_match_cost(cls_cost)
        self.kpt_cost = build_match_cost(kpt_cost)
        self.oks_cost = build_match_cost(oks_cost)

    @torch.no_grad()
    def cost_matrix(self,
                    cls_pred,
                    kpt_pred,
                    gt_labels,
                    gt_keypoints,
                    gt_areas,
                    img_meta,
                    eps=1e-7):
        """Matching cost of every query for every person.

        Args:
            cls_pred (Tensor): Class logits, shape [Q, C].
            kpt_pred (Tensor): Poses (x1, y1, ..., xK, yK) normalised by the
                image (w, h), shape [Q, 2K].
            gt_labels (Tensor): Shape [G].
            gt_keypoints (Tensor): (x, y, v) in pixels of the input image,
                shape [G, K, 3] (or flat [G, 3K]).
            gt_areas (Tensor): Person areas in pixels^2 of the input image,
                shape [G]; floored at ``eps``.
            img_meta (dict): Needs ``img_shape`` (h, w, ...).
            eps (float): Smallest area used by the OKS cost.

        Returns:
            Tensor: Shape [Q, G].
        """
        img_h, img_w = img_meta['img_shape'][:2]
        num_query = kpt_pred.size(0)
        gt_keypoints = gt_keypoints.reshape(gt_labels.size(0), -1, 3)
        image_size = kpt_pred.new_tensor([img_w, img_h])
        gt_normalised = torch.cat(
            [gt_keypoints[..., :2] / image_size, gt_keypoints[..., 2:]], -1)
        pred_pixels = kpt_pred.reshape(num_query, -1, 2) * image_size
        cls_cost = self.cls_cost(cls_pred, gt_labels)
        kpt_cost = self.kpt_cost(kpt_pred, gt_normalised)
        oks_cost = self.oks_cost(
            pred_pixels.reshape(num_query, -1), gt_keypoints,
            gt_areas.clamp(min=eps))
        return cls_cost + kpt_cost + oks_cost

    def assign(self,
               cls_pred,
               kpt_pred,
               gt_labels,
               gt_keypoints,
               gt_areas,
               img_meta,
               eps=1e-7):
        """Match queries to persons one-to-one.

        Arguments as in :meth:`cost_matrix`. Persons may repeat (e.g. the
        ground truth tiled for a one-to-many branch); each copy then gets its
        own query.

        Returns:
            :obj:`AssignResult`: ``gt_inds`` [Q]: 0 for background, else the
            1-based index of the matched person; ``labels`` [Q]: its label,
            -1 for background; ``num_gts`` = G.
        """
        return self.assign_repeated(cls_pred, kpt_pred, gt_labels,
                                    gt_keypoints, gt_areas, img_meta, 1, eps)

    def assign_repeated(self,
                        cls_pred,
                        kpt_pred,
                        gt_labels,
                        gt_keypoints,
                        gt_areas,
                        img_meta,
                        num_repeats,
                        eps=1e-7):
        """Match queries to the persons repeated ``num_repeats`` times.

        Same result as :meth:`assign` with every ground-truth tensor tiled
        ``num_repeats`` times along its first dimension, with the costs
        computed once for the G distinct persons.

        Arguments as in :meth:`cost_matrix`, plus ``num_repeats`` (int).

        Returns:
            :obj:`AssignResult`: ``gt_inds`` [Q] index (1-based) the tiled
            persons (copy ``c`` of person ``j`` is ``c * G + j + 1``), 0 for
            background; ``labels`` [Q], -1 for background;
            ``num_gts`` = ``num_repeats * G``.
        """
        num_gts, num_query = gt_labels.size(0), kpt_pred.size(0)
        assigned_gt_inds = kpt_pred.new_zeros((num_query, ), dtype=torch.long)
        assigned_labels = kpt_pred.new_full((num_query, ),
                                            -1,
                                            dtype=torch.long)
        if num_gts > 0 and num_query > 0:
            cost = self.cost_matrix(cls_pred, kpt_pred, gt_labels,
                                    gt_keypoints, gt_areas, img_meta, eps)
            query_inds, tiled_gt_inds = (
                torch.as_tensor(inds, device=kpt_pred.device)
                for inds in match_with_repeated_targets(cost, num_repeats))
            assigned_gt_inds[query_inds] = tiled_gt_inds + 1
            assigned_labels[query_inds] = gt_labels[tiled_gt_inds % num_gts]
        return AssignResult(
            num_gts * num_repeats,
            assigned_gt_inds,
            None,
            labels=assigned_labels)
