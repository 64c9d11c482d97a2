"""Deformable-DETR head with hybrid matching (H-Deformable-DETR).

With ``num_query_one2many=0`` this is the two-stage Deformable-DETR head (the
"Deformable-DETR" and "+ tricks" baselines); with a one-to-many group it is
H-Deformable-DETR. The hybrid logic itself is in
:class:`opera.models.utils.HybridQueryGroups`.
"""
import torch
import torch.nn as nn
from mmcv.runner import force_fp32
from mmdet.models.dense_heads import DeformableDETRHead

from ..builder import HEADS
from ..utils.arguments import (reject_unknown_arguments,
                               reject_unknown_cfg_keys)
from ..utils.hybrid_matching import HybridQueryGroups
from ..utils.padding import masks_and_positions
from ..utils.transformer import refine_reference


@HEADS.register_module()
class HybridDeformableDETRHead(DeformableDETRHead):
    """Two-stage Deformable-DETR head with a one-to-many query group.

    Args:
        num_query (int): One-to-one queries (kept at test time).
        num_query_one2many (int): One-to-many queries, training only.
        k_one2many (int): Ground-truth repeats for the one-to-many group.
        lambda_one2many (float): Weight of the one-to-many losses.
        split_self_attn (bool): Decoder self-attention group by group
            (True) or masked over all queries (False); same outputs.
        **kwargs: See mmdet's ``DeformableDETRHead``.
    """

    def __init__(self,
                 *args,
                 num_query=300,
                 num_query_one2many=0,
                 k_one2many=6,
                 lambda_one2many=1.0,
                 split_self_attn=True,
                 **kwargs):
        reject_unknown_arguments(type(self), kwargs)
        reject_unknown_cfg_keys(kwargs.get('train_cfg'),
                                kwargs.get('test_cfg'))
        # _init_layers (called by the parent) sizes the query embedding.
        self.hybrid = HybridQueryGroups(num_query, num_query_one2many,
                                        k_one2many, lambda_one2many,
                                        split_self_attn)
        super().__init__(*args, num_query=num_query, **kwargs)
        self.hybrid.check_self_attention(self.transformer.decoder)

    def _init_layers(self):
        super()._init_layers()
        if getattr(self.transformer, 'mixed_selection', False):
            self.query_embedding = nn.Embedding(self.hybrid.num_query,
                                                self.embed_dims)
        elif not self.as_two_stage:
            self.query_embedding = nn.Embedding(self.hybrid.num_query,
                                                self.embed_dims * 2)

    def forward(self, mlvl_feats, img_metas):
        """Run the transformer and the per-layer class/box branches.

        In training all query groups run; in eval mode only the one-to-one
        group (its proposals are the top ``num_query`` ones either way).

        Returns:
            tuple: class logits [num_layers, bs, nq, num_classes], boxes
            (cx, cy, w, h) in [0, 1] [num_layers, bs, nq, 4], and the
            encoder's class logits [bs, sum(h*w), num_classes] and boxes
            [bs, sum(h*w), 4] (None without two-stage).
        """
        masks, positions = masks_and_positions(
            mlvl_feats, img_metas, self.positional_encoding)
        num_queries = self.hybrid.num_active_queries(self.training)
        query_embed = None
        if hasattr(self, 'query_embedding'):
            query_embed = self.query_embedding.weight[:num_queries]
        self_attn_mask = self.hybrid.self_attn_mask(num_queries,
                                                    mlvl_feats[0].device)
        states, init_reference, references, enc_cls, enc_coord = \
            self.transformer(
                mlvl_feats,
                masks,
                query_embed,
                positions,
                num_queries,
                reg_branches=self.reg_branches
                if self.with_box_refine else None,
                cls_branches=self.cls_branches
                if self.as_two_stage else None,
                attn_masks=[self_attn_mask, None])

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
        """Losses of the one-to-one group (+ encoder) and one-to-many group.

        Each group is matched and normalised on its own: the one-to-one group
        against the ground truth, the one-to-many group against the ground
        truth tiled ``k_one2many`` times (matched from the untiled costs).
        The encoder loss is counted once. Computed in fp32 under fp16.
        """
        cls_one2one, cls_one2many = self.hybrid.split(all_cls_scores, dim=2)
        bbox_one2one, bbox_one2many = self.hybrid.split(all_bbox_preds, dim=2)
        losses = super().loss(cls_one2one, bbox_one2one, enc_cls_scores,
                              enc_bbox_preds, gt_bboxes_list, gt_labels_list,
                              img_metas, gt_bboxes_ignore)
        if cls_one2many is None:
            return losses
        with self.hybrid.one2many_matching(self):
            losses_one2many = super().loss(
                cls_one2many, bbox_one2many, None, None,
                self.hybrid.tile_targets(gt_bboxes_list),
                self.hybrid.tile_targets(gt_labels_list), img_metas,
                gt_bboxes_ignore)
        return self.hybrid.combine_losses(losses, losses_one2many)

    @force_fp32(apply_to=('all_cls_scores', 'all_bbox_preds'))
    def get_bboxes(self,
                   all_cls_scores,
                   all_bbox_preds,
                   enc_cls_scores,
                   enc_bbox_preds,
                   img_metas,
                   rescale=False):
        """Detections from the one-to-one group's last layer (no NMS)."""
        return super().get_bboxes(
            self.hybrid.split(all_cls_scores, dim=2)[0],
            self.hybrid.split(all_bbox_preds, dim=2)[0], enc_cls_scores,
            enc_bbox_preds, img_metas, rescale)
