"""Hungarian matching of predicted boxes, with repeated-target support."""
import torch
from mmdet.core import bbox_cxcywh_to_xyxy
from mmdet.core.bbox.assigners import \
    HungarianAssigner as MMDetHungarianAssigner

from ..builder import BBOX_ASSIGNERS
from .repeated_targets import assign_by_cost


@BBOX_ASSIGNERS.register_module()
class HungarianAssigner(MMDetHungarianAssigner):
    """mmdet's DETR box assigner that can also match tiled ground truth.

    Same costs, arguments and results as mmdet's ``HungarianAssigner``
    (``cls_cost + reg_cost + iou_cost``); ``assign(..., num_repeats=K)``
    matches against the ground truth repeated K times from the costs of one
    copy (one-to-many matching, see ``repeated_targets``).
    """

    @torch.no_grad()
    def cost_matrix(self, bbox_pred, cls_pred, gt_bboxes, gt_labels,
                    img_meta):
        """Matching cost of every query for every ground-truth box.

        Args:
            bbox_pred (Tensor): [Q, 4] (cx, cy, w, h) normalised to [0, 1].
            cls_pred (Tensor): [Q, C] class logits.
            gt_bboxes (Tensor): [G, 4] (x1, y1, x2, y2) in pixels.
            gt_labels (Tensor): [G].
            img_meta (dict): Needs ``img_shape`` (h, w, ...).

        Returns:
            Tensor: [Q, G].
        """
        img_h, img_w = img_meta['img_shape'][:2]
        factor = gt_bboxes.new_tensor([img_w, img_h, img_w, img_h])
        cls_cost = self.cls_cost(cls_pred, gt_labels)
        reg_cost = self.reg_cost(bbox_pred, gt_bboxes / factor)
        iou_cost = self.iou_cost(
            bbox_cxcywh_to_xyxy(bbox_pred) * factor, gt_bboxes)
        return cls_cost + reg_cost + iou_cost

    def assign(self,
               bbox_pred,
               cls_pred,
               gt_bboxes,
               gt_labels,
               img_meta,
               gt_bboxes_ignore=None,
               eps=1e-7,
               num_repeats=1):
        """Each ground-truth box ``num_repeats`` times gets one query.

        Args: as in :meth:`cost_matrix`; ``gt_bboxes_ignore`` must be None,
        ``eps`` is unused (kept for mmdet's signature). ``num_repeats`` (K)
        matches against the boxes tiled K times (``t.repeat(K, ...)``),
        from the costs of the G boxes given (see ``repeated_targets``).

        Returns:
            :obj:`AssignResult`: ``gt_inds`` [Q], 0 for background, else the
            1-based index of the matched tiled box (copy ``c`` of box ``j``
            is ``c * G + j + 1``; with K = 1, the box); ``labels`` [Q], -1
            for background; ``num_gts`` = K * G. With K = 1 this is mmdet's
            ``HungarianAssigner.assign``.
        """
        if gt_bboxes_ignore is not None:
            raise NotImplementedError(
                'HungarianAssigner does not support gt_bboxes_ignore')
        cost = None
        if gt_labels.numel() > 0 and bbox_pred.size(0) > 0:
            cost = self.cost_matrix(bbox_pred, cls_pred, gt_bboxes, gt_labels,
                                    img_meta)
        return assign_by_cost(cost, gt_labels, num_repeats, bbox_pred.size(0),
                              bbox_pred.device)
