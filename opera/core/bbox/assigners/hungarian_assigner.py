"""Hungarian matching of predicted boxes, with repeated-target support."""
import torch
from mmdet.core import bbox_cxcywh_to_xyxy
from mmdet.core.bbox.assigners import \
    HungarianAssigner as MMDetHungarianAssigner

from ..builder import BBOX_ASSIGNERS
from .repeated_targets import assign_by_cost, untile


@BBOX_ASSIGNERS.register_module()
class HungarianAssigner(MMDetHungarianAssigner):
    """mmdet's DETR box assigner that can also match tiled ground truth.

    Same costs, arguments and results as mmdet's ``HungarianAssigner``
    (``cls_cost + reg_cost + iou_cost``); :meth:`assign_repeated` matches
    against ground truth tiled K times from the untiled costs (the
    one-to-many branch of hybrid matching, see ``repeated_targets``).
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
               eps=1e-7):
        """One query per ground-truth box, the rest background.

        Args: as in :meth:`cost_matrix`; ``gt_bboxes_ignore`` must be None.
        ``eps`` is unused (kept for mmdet's signature).

        Returns:
            :obj:`AssignResult`: ``gt_inds`` [Q], 0 for background, else the
            1-based index of the matched box; ``labels`` [Q], -1 for
            background; ``num_gts`` = G.
        """
        return self.assign_repeated(bbox_pred, cls_pred, gt_bboxes,
                                    gt_labels, img_meta, gt_bboxes_ignore,
                                    eps, 1)

    def assign_repeated(self,
                        bbox_pred,
                        cls_pred,
                        gt_bboxes,
                        gt_labels,
                        img_meta,
                        gt_bboxes_ignore=None,
                        eps=1e-7,
                        num_repeats=1):
        """:meth:`assign` for ground truth tiled ``num_repeats`` times.

        Same arguments and result as :meth:`assign`, where ``gt_bboxes`` and
        ``gt_labels`` are ``num_repeats`` copies of G boxes
        (``t.repeat(num_repeats, ...)``); the costs are computed for the
        first copy only.

        Returns:
            :obj:`AssignResult`: ``gt_inds`` index (1-based) the tiled boxes;
            ``num_gts`` = ``num_repeats * G``.
        """
        if gt_bboxes_ignore is not None:
            raise NotImplementedError(
                'HungarianAssigner does not support gt_bboxes_ignore')
        gt_bboxes, gt_labels = (untile(gts, num_repeats)
                                for gts in (gt_bboxes, gt_labels))
        cost = None
        if gt_labels.numel() > 0 and bbox_pred.size(0) > 0:
            cost = self.cost_matrix(bbox_pred, cls_pred, gt_bboxes, gt_labels,
                                    img_meta)
        return assign_by_cost(cost, gt_labels, num_repeats, bbox_pred.size(0),
                              bbox_pred.device)
