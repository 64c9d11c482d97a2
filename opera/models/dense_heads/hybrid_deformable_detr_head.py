"""Deformable-DETR head with hybrid matching (H-Deformable-DETR).

With one query group this is the two-stage Deformable-DETR head (the
"Deformable-DETR" and "+ tricks" baselines); with a one-to-many group it is
H-Deformable-DETR; other groups give the hybrid-epoch, hybrid-layer and
Group-DETR schemes. The groups, their matching and the combination of their
losses are :class:`opera.models.utils.HybridQueryGroups`; this head says how
one group's boxes at one layer are matched and scored.
"""
import torch
import torch.nn as nn
from mmcv.runner import force_fp32
from mmdet.core import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh, reduce_mean
from mmdet.models.dense_heads import DeformableDETRHead

from opera.core.bbox import matched_pairs
from ..builder import HEADS
from ..utils.arguments import (reject_unknown_arguments,
                               reject_unknown_cfg_keys, require_cfg_keys)
from ..utils.hybrid_matching import (build_query_groups,
                                      pop_hybrid_branch_keys)
from ..utils.padding import masks_and_positions
from ..utils.refine import refine_reference


@HEADS.register_module()
class HybridDeformableDETRHead(DeformableDETRHead):
    """Two-stage Deformable-DETR head with query groups (hybrid matching).

    The groups are the hybrid branch given by ``num_query`` (one-to-one, kept
    at test) and ``num_query_one2many`` / ``k_one2many`` /
    ``lambda_one2many``, or any scheme given by ``query_groups`` (see
    :class:`opera.models.utils.HybridQueryGroups`).

    Args:
        num_query (int): Queries run at test time.
        query_groups (list[dict] | None): The query groups (``QueryGroup``
            arguments); ``num_query`` must be the number of queries of the
            ``at_test`` groups.
        split_self_attn (bool): Decoder self-attention group by group
            (True) or masked over all queries (False); same outputs.
        num_query_one2many, k_one2many, lambda_one2many: H-DETR's
            hybrid-branch shorthand, in place of ``query_groups`` (see
            ``opera.models.utils.build_query_groups``).
        **kwargs: See mmdet's ``DeformableDETRHead``. ``transformer``,
            ``positional_encoding``, ``loss_cls``, ``loss_bbox`` and
            ``loss_iou`` are required: mmdet's defaults are another recipe
            (e.g. a cross-entropy class loss).
    """

    REQUIRED_KEYS = ('transformer', 'positional_encoding', 'loss_cls',
                     'loss_bbox', 'loss_iou')

    def __init__(self,
                 *args,
                 num_query=300,
                 query_groups=None,
                 split_self_attn=True,
                 **kwargs):
        hybrid_branch_keys = pop_hybrid_branch_keys(kwargs)
        reject_unknown_arguments(type(self), kwargs)
        require_cfg_keys(
            type(self).__name__, 'model.bbox_head',
            'configs/_base_/models/deformable_detr_r50_two_stage.py',
            **{key: kwargs.get(key) for key in self.REQUIRED_KEYS})
        reject_unknown_cfg_keys(kwargs.get('train_cfg'),
                                kwargs.get('test_cfg'))
        # _init_layers (called by the parent) sizes the query embedding.
        self.hybrid = build_query_groups(num_query, query_groups,
                                         split_self_attn, hybrid_branch_keys)
        super().__init__(*args, num_query=num_query, **kwargs)
        self.hybrid.bind_decoder(self.transformer.decoder)
        if self.train_cfg:
            self.hybrid.check_assigner(self.assigner)

    def set_epoch(self, epoch):
        """The training epoch for the query groups' schedules (see
        ``opera.QueryGroupScheduleHook``); returns their K per layer in
        words."""
        self.hybrid.set_epoch(epoch)
        return self.hybrid.describe_repeats()

    def _init_layers(self):
        super()._init_layers()
        # One row per query of every group; as wide as the transformer
        # takes it (replacing mmdet's one-stage embedding of num_query rows).
        query_embed_dims = self.transformer.query_embed_dims
        if query_embed_dims is not None:
            self.query_embedding = nn.Embedding(self.hybrid.num_query_total,
                                                query_embed_dims)

    def forward(self, mlvl_feats, img_metas):
        """Run the transformer's stages (encode, pre_decoder,
        forward_decoder) and the per-layer class/box branches.

        In training all query groups run; in eval mode only those kept at
        test (each query takes the same proposal rank in both).

        Returns:
            tuple: class logits [num_layers, bs, nq, num_classes], boxes
            (cx, cy, w, h) in [0, 1] [num_layers, bs, nq, 4], and the
            encoder's class logits [bs, sum(h*w), num_classes] and boxes
            [bs, sum(h*w), 4] (None without two-stage).
        """
        masks, positions = masks_and_positions(
            mlvl_feats, img_metas, self.positional_encoding)
        num_queries = self.hybrid.num_active_queries(self.training)
        device = mlvl_feats[0].device
        query_embed = None
        if hasattr(self, 'query_embedding'):
            query_embed = self.query_embedding.weight[:num_queries]
        memory, levels = self.transformer.encode(mlvl_feats, masks, positions)
        reg_branches = self.reg_branches if self.with_box_refine else None
        queries, enc_cls, enc_coord = self.transformer.pre_decoder(
            memory,
            levels,
            query_embed,
            num_queries,
            proposal_ranks=self.hybrid.proposal_ranks(num_queries, device),
            reg_branches=reg_branches,
            cls_branches=self.cls_branches if self.as_two_stage else None)
        states, references = self.transformer.forward_decoder(
            queries,
            memory,
            levels,
            reg_branches=reg_branches,
            self_attn_mask=self.hybrid.self_attn_mask(num_queries, device))
        init_reference = queries.reference

        all_cls_scores, all_bbox_preds = [], []
        for lvl in range(states.shape[0]):
            reference = init_reference if lvl == 0 else references[lvl - 1]
            all_cls_scores.append(self.cls_branches[lvl](states[lvl]))
            all_bbox_preds.append(
                refine_reference(self.reg_branches[lvl](states[lvl]),
                                 reference))
        all_cls_scores = torch.stack(all_cls_scores)
        all_bbox_preds = torch.stack(all_bbox_preds)
        if enc_coord is not None:
            enc_coord = enc_coord.sigmoid()
        return all_cls_scores, all_bbox_preds, enc_cls, enc_coord

    @force_fp32(apply_to=('all_cls_scores', 'all_bbox_preds',
                          'enc_cls_scores', 'enc_bbox_preds'))
    def loss(self,
             all_cls_scores,
             all_bbox_preds,
             enc_cls_scores,
             enc_bbox_preds,
             gt_bboxes_list,
             gt_labels_list,
             img_metas,
             gt_bboxes_ignore=None):
        """Losses of the encoder proposals and of every (layer, group).

        Each query group is matched and normalised on its own at every
        decoder layer, against the ground truth repeated that group's K at
        that layer (see ``HybridQueryGroups.loss``). The encoder loss is
        counted once. Computed in fp32 under fp16.

        Args:
            all_cls_scores (Tensor): [num_layers, bs, Q, C] logits.
            all_bbox_preds (Tensor): [num_layers, bs, Q, 4] (cx, cy, w, h)
                in [0, 1].
            enc_cls_scores (Tensor | None): [bs, S, C] proposal logits.
            enc_bbox_preds (Tensor | None): [bs, S, 4] proposal boxes.
            gt_bboxes_list (list[Tensor]): [G, 4] (x1, y1, x2, y2) pixels.
            gt_labels_list (list[Tensor]): [G].
            img_metas (list[dict]): Need ``img_shape``.

        Returns:
            dict[str, Tensor]: ``enc_loss_*``, ``{d{i}.}loss_*{suffix}`` and
            ``num_matched{suffix}`` (see ``HybridQueryGroups.loss``).
        """
        if gt_bboxes_ignore is not None:
            raise NotImplementedError(
                f'{type(self).__name__} does not use gt_bboxes_ignore')
        losses = dict()
        if enc_cls_scores is not None:
            # The proposals are trained class-agnostic.
            object_labels = [torch.zeros_like(labels)
                             for labels in gt_labels_list]
            enc_losses, _ = self.layer_loss(enc_cls_scores, enc_bbox_preds,
                                            gt_bboxes_list, object_labels,
                                            img_metas, num_repeats=1)
            losses.update(
                {'enc_' + name: value for name, value in enc_losses.items()})

        def layer_group_loss(predictions, num_repeats):
            group_losses, num_matched = self.layer_loss(
                *predictions, gt_bboxes_list, gt_labels_list, img_metas,
                num_repeats)
            return group_losses, num_matched, None

        group_losses, _ = self.hybrid.loss(layer_group_loss, all_cls_scores,
                                           all_bbox_preds)
        losses.update(group_losses)
        return losses

    def layer_loss(self, cls_scores, bbox_preds, gt_bboxes_list,
                   gt_labels_list, img_metas, num_repeats):
        """Focal, L1 and GIoU losses of one set of predictions (mmdet's DETR
        losses), matched against the ground truth repeated ``num_repeats``
        times.

        Args:
            cls_scores (Tensor): [bs, Q, C] logits.
            bbox_preds (Tensor): [bs, Q, 4] (cx, cy, w, h) in [0, 1].
            gt_bboxes_list, gt_labels_list (list[Tensor]): Per image, once.
            img_metas (list[dict]): Per image.
            num_repeats (int): K.

        Returns:
            tuple[dict, int]: ``loss_cls``, ``loss_bbox``, ``loss_iou``, each
            normalised by the matched queries of all processes; the matched
            queries of this process.
        """
        targets = [
            self.box_targets(*per_image, num_repeats) for per_image in zip(
                cls_scores, bbox_preds, gt_bboxes_list, gt_labels_list,
                img_metas)
        ]
        labels, label_weights, bbox_targets, bbox_weights = (
            torch.cat(parts) for parts in list(zip(*targets))[:4])
        num_pos = sum(t[4] for t in targets)
        num_neg = sum(t[5] for t in targets)

        cls_scores = cls_scores.reshape(-1, self.cls_out_channels)
        cls_avg_factor = num_pos * 1.0 + num_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(
                cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)
        loss_cls = self.loss_cls(
            cls_scores, labels, label_weights, avg_factor=cls_avg_factor)

        avg_factor = torch.clamp(
            reduce_mean(loss_cls.new_tensor([num_pos])), min=1).item()
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
        return dict(
            loss_cls=loss_cls, loss_bbox=loss_bbox, loss_iou=loss_iou), num_pos

    def box_targets(self, cls_score, bbox_pred, gt_bboxes, gt_labels,
                    img_meta, num_repeats):
        """Match one image's queries and build their targets.

        Args:
            cls_score (Tensor): [Q, C] logits.
            bbox_pred (Tensor): [Q, 4] (cx, cy, w, h) in [0, 1].
            gt_bboxes (Tensor): [G, 4] (x1, y1, x2, y2) pixels.
            gt_labels (Tensor): [G].
            img_meta (dict): Needs ``img_shape``.
            num_repeats (int): Each box gets up to K queries.

        Returns:
            tuple: labels [Q] (``num_classes`` = background), label weights
            [Q], box targets [Q, 4] (cx, cy, w, h) in [0, 1], box weights
            [Q, 4], matched and unmatched counts (int).
        """
        num_query = bbox_pred.size(0)
        assign_result = self.assigner.assign(
            bbox_pred, cls_score, gt_bboxes, gt_labels, img_meta,
            num_repeats=num_repeats)
        pos_inds, gt_inds = matched_pairs(assign_result, gt_labels.size(0))
        labels = gt_bboxes.new_full((num_query, ),
                                    self.num_classes,
                                    dtype=torch.long)
        labels[pos_inds] = gt_labels[gt_inds]
        bbox_targets = torch.zeros_like(bbox_pred)
        bbox_weights = torch.zeros_like(bbox_pred)
        bbox_weights[pos_inds] = 1.0
        img_h, img_w = img_meta['img_shape'][:2]
        factor = bbox_pred.new_tensor([img_w, img_h, img_w, img_h])
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(
            gt_bboxes[gt_inds] / factor.unsqueeze(0))
        num_pos = pos_inds.numel()
        return (labels, gt_bboxes.new_ones(num_query), bbox_targets,
                bbox_weights, num_pos, num_query - num_pos)

    @force_fp32(apply_to=('all_cls_scores', 'all_bbox_preds'))
    def get_bboxes(self,
                   all_cls_scores,
                   all_bbox_preds,
                   enc_cls_scores,
                   enc_bbox_preds,
                   img_metas,
                   rescale=False):
        """Detections from the test-time queries' last layer (no NMS)."""
        return super().get_bboxes(
            self.hybrid.test_part(all_cls_scores, dim=2),
            self.hybrid.test_part(all_bbox_preds, dim=2), enc_cls_scores,
            enc_bbox_preds, img_metas, rescale)
