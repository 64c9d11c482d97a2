"""The losses of (H-)Deformable-DETR, as one module: mmdet's DETR losses.

Every set of box predictions (each decoder layer of every query group, the
encoder proposals) is matched to the ground truth by the Hungarian assigner
and trained with a class loss, an L1 loss on the normalised (cx, cy, w, h)
boxes and an IoU loss in pixels, each normalised by the matched queries.
``opera.DETRDetectionHead`` builds it from its mmdet keys
(``loss_cls`` / ``loss_bbox`` / ``loss_iou``, ``train_cfg.assigner``).
"""
import torch
from mmdet.core import bbox_cxcywh_to_xyxy, reduce_mean
# mmdet's builders, as mmdet's DETR head used: the head's config keys
# resolve as they always did (an unscoped 'HungarianAssigner' is mmdet's).
from mmdet.core.bbox import build_assigner
from mmdet.models.builder import build_loss

from opera.core.bbox import normalised_cxcywh

from ..builder import LOSSES
from ..utils.arguments import require_cfg_keys
from .class_targets import build_class_targets
from .set_criterion import SetCriterion, mean_over_gpus

BASE_CONFIG = 'configs/_base_/models/deformable_detr_r50_two_stage.py'


@LOSSES.register_module()
class DETRCriterion(SetCriterion):
    """Matching and losses of DETR-style box predictions.

    Args:
        num_classes (int): Object classes; label ``num_classes`` is the
            background.
        loss_cls (dict): Class loss (``model.bbox_head.loss_cls``).
        loss_bbox (dict): L1 box loss (``model.bbox_head.loss_bbox``).
        loss_iou (dict): IoU box loss (``model.bbox_head.loss_iou``).
        assigner (dict | None): Hungarian assigner config taking
            ``num_repeats`` (``model.train_cfg.assigner``); None for a model
            built for testing only (then the losses refuse to run).
        bg_cls_weight (float): Weight of the unmatched queries in the class
            loss normaliser (mmdet's DETR: 0 but for a softmax DETRHead).
        sync_cls_avg_factor (bool): Average the class loss normaliser over
            GPUs.
        class_agnostic_proposals (bool): Train the encoder proposals with
            every object as one class (Deformable-DETR), or with the
            objects' classes (DINO); the transformer's
            ``class_agnostic_proposals``.
        class_targets (dict | None): What a matched query's class score is
            trained towards: ``dict(type='labels')`` (default), ``'iou'``
            (Co-DINO: its box's IoU, for a ``QualityFocalLoss``) or
            ``'align'`` (Align-DETR); see :mod:`.class_targets`.
    """

    BASE_CONFIG = BASE_CONFIG

    def __init__(self,
                 num_classes=None,
                 loss_cls=None,
                 loss_bbox=None,
                 loss_iou=None,
                 assigner=None,
                 bg_cls_weight=0.,
                 sync_cls_avg_factor=False,
                 class_agnostic_proposals=True,
                 class_targets=None):
        super().__init__()
        require_cfg_keys(
            'DETRCriterion',
            'model.bbox_head',
            BASE_CONFIG,
            num_classes=num_classes,
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            loss_iou=loss_iou)
        self.num_classes = num_classes
        self.bg_cls_weight = bg_cls_weight
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.class_agnostic_proposals = class_agnostic_proposals
        self.assigner = None if assigner is None else build_assigner(assigner)
        # mmdet's keys, so mmdet's loss names (e.g. 'FocalLoss').
        self.loss_cls = build_loss(loss_cls)
        self.loss_bbox = build_loss(loss_bbox)
        self.loss_iou = build_loss(loss_iou)
        self.class_targets = build_class_targets(class_targets, loss_cls)
        self.cls_out_channels = (
            num_classes if self.loss_cls.use_sigmoid else num_classes + 1)

    def forward(self, outputs, targets, img_metas, query_groups):
        """Losses of the encoder proposals and of every (layer, group).

        Each query group is matched and normalised on its own at every
        decoder layer, against the ground truth repeated that group's K at
        that layer (see :meth:`query_group_losses`). The encoder loss is
        counted once.

        Args:
            outputs (dict): Of ``DETRDetectionHead.forward``:
                ``cls_scores`` [num_layers, bs, Q, C], ``bbox_preds``
                [num_layers, bs, Q, 4] (cx, cy, w, h) in [0, 1],
                ``enc_cls`` [bs, S, C] and ``enc_bbox_preds`` [bs, S, 4]
                (None without two-stage).
            targets (dict): ``gt_bboxes`` (per image [G, 4] (x1, y1, x2,
                y2) pixels) and ``gt_labels`` (per image [G]).
            img_metas (list[dict]): Per image, need ``img_shape``.
            query_groups (HybridQueryGroups): The groups of the Q queries.

        Returns:
            dict[str, Tensor]: ``enc_loss_*``, ``{d{i}.}loss_*{suffix}`` and
            ``num_matched{suffix}`` (see :meth:`query_group_losses`).
        """
        losses = dict()
        if outputs['enc_cls'] is not None:
            losses.update(
                self.encoder_losses(outputs['enc_cls'],
                                    outputs['enc_bbox_preds'], targets,
                                    img_metas, self.class_agnostic_proposals))
        layer_group_losses, _ = self.query_group_losses(
            (outputs['cls_scores'], outputs['bbox_preds']), targets,
            img_metas, query_groups, outputs.get('fixed_groups', ()))
        losses.update(layer_group_losses)
        return losses

    def assign(self, cls_score, pred, targets, img_meta, num_repeats):
        """Assign one image's queries (cls_score [Q, C], pred [Q, 4]) to
        its boxes."""
        return self.required_assigner().assign(
            pred,
            cls_score,
            targets['gt_bboxes'],
            targets['gt_labels'],
            img_meta,
            num_repeats=num_repeats)

    def box_targets(self, bbox_pred, gt_bboxes, gt_labels, img_meta,
                    pos_inds, gt_inds):
        """One image's targets from its matched pairs.

        Args:
            bbox_pred (Tensor): [Q, 4] (cx, cy, w, h) in [0, 1].
            gt_bboxes (Tensor): [G, 4] (x1, y1, x2, y2) pixels.
            gt_labels (Tensor): [G].
            img_meta (dict): Needs ``img_shape``.
            pos_inds, gt_inds (Tensor): [n] matched queries, their boxes.

        Returns:
            tuple[Tensor]: labels [Q] (``num_classes`` = background), label
            weights [Q], box targets [Q, 4] (cx, cy, w, h) in [0, 1], box
            weights [Q, 4].
        """
        num_query = bbox_pred.size(0)
        labels = gt_bboxes.new_full((num_query, ),
                                    self.num_classes,
                                    dtype=torch.long)
        labels[pos_inds] = gt_labels[gt_inds]
        bbox_targets = torch.zeros_like(bbox_pred)
        bbox_weights = torch.zeros_like(bbox_pred)
        bbox_weights[pos_inds] = 1.0
        bbox_targets[pos_inds] = normalised_cxcywh(gt_bboxes[gt_inds],
                                                   img_meta['img_shape'])
        return (labels, gt_bboxes.new_ones(num_query), bbox_targets,
                bbox_weights)

    def layer_losses(self,
                     cls_scores,
                     bbox_preds,
                     targets,
                     img_metas,
                     matches,
                     proposals=False):
        """Class, L1 and IoU losses of one set of predictions given its
        matched pairs (the proposals have the same losses).

        Args:
            cls_scores (Tensor): [bs, Q, C] logits.
            bbox_preds (Tensor): [bs, Q, 4] (cx, cy, w, h) in [0, 1].
            targets (dict): The batch's ground truth (see :meth:`forward`).
            img_metas (list[dict]): Per image, need ``img_shape``.
            matches (list[tuple[Tensor, Tensor]]): Per image, matched
                queries and their boxes (see :meth:`match`).
            proposals (bool): Unused: proposals and decoder layers share
                the losses.

        Returns:
            tuple[dict, int, None]: ``loss_cls``, ``loss_bbox``,
            ``loss_iou``, each normalised by the matched queries of all
            processes; the matched queries of this process; nothing else.
        """
        per_image = [
            self.box_targets(bbox_preds[img_id], targets['gt_bboxes'][img_id],
                             targets['gt_labels'][img_id], img_metas[img_id],
                             pos_inds, gt_inds)
            for img_id, (pos_inds, gt_inds) in enumerate(matches)
        ]
        labels, label_weights, bbox_targets, bbox_weights = (
            torch.cat(parts) for parts in zip(*per_image))
        num_pos = sum(pos_inds.numel() for pos_inds, _ in matches)
        num_neg = labels.numel() - num_pos

        cls_scores = cls_scores.reshape(-1, self.cls_out_channels)
        cls_avg_factor = num_pos * 1.0 + num_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(
                cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)
        cls_targets = self.class_targets(cls_scores, bbox_preds.reshape(-1, 4),
                                         bbox_targets, labels,
                                         self.num_classes)
        loss_cls = self.loss_cls(
            cls_scores, cls_targets, label_weights, avg_factor=cls_avg_factor)

        avg_factor = mean_over_gpus(num_pos, loss_cls.device)
        factors = torch.cat([
            preds.new_tensor([w, h, w, h]).unsqueeze(0).repeat(
                preds.size(0), 1) for preds, (h, w) in zip(
                    bbox_preds, (meta['img_shape'][:2] for meta in img_metas))
        ])
        bbox_preds = bbox_preds.reshape(-1, 4)
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(bbox_preds) * factors,
            bbox_cxcywh_to_xyxy(bbox_targets) * factors,
            bbox_weights,
            avg_factor=avg_factor)
        loss_bbox = self.loss_bbox(
            bbox_preds, bbox_targets, bbox_weights, avg_factor=avg_factor)
        losses = dict(
            loss_cls=loss_cls, loss_bbox=loss_bbox, loss_iou=loss_iou)
        return losses, num_pos, None

