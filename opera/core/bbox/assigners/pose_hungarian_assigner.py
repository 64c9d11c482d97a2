"""Hungarian matching of predicted poses to ground-truth persons (PETR)."""
import torch
from mmdet.core.bbox.assigners import BaseAssigner

from ..builder import BBOX_ASSIGNERS, build_match_cost
from .repeated_targets import assign_by_cost


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
                 cls_cost=dict(type='opera.FocalLossCost', weight=2.0),
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
               eps=1e-7,
               num_repeats=1):
        """Each person ``num_repeats`` times gets one query.

        Arguments as in :meth:`cost_matrix`. ``num_repeats`` (K) matches
        against the persons tiled K times (``t.repeat(K, ...)``), from the
        costs of the G persons given (see ``repeated_targets``).

        Returns:
            :obj:`AssignResult`: ``gt_inds`` [Q]: 0 for background, else the
            1-based index of the matched tiled person (copy ``c`` of person
            ``j`` is ``c * G + j + 1``; with K = 1, the person); ``labels``
            [Q]: its label, -1 for background; ``num_gts`` = K * G.
        """
        cost = None
        if gt_labels.numel() > 0 and kpt_pred.size(0) > 0:
            cost = self.cost_matrix(cls_pred, kpt_pred, gt_labels,
                                    gt_keypoints, gt_areas, img_meta, eps)
        return assign_by_cost(cost, gt_labels, num_repeats, kpt_pred.size(0),
                              kpt_pred.device)
