"""The head of every box DETR here: a two-stage Deformable-DETR head run by
query groups.

With one query group it is the two-stage Deformable-DETR head (the
"Deformable-DETR" and "+ tricks" baselines); with a one-to-many group it is
H-Deformable-DETR; other groups give the hybrid-epoch, hybrid-layer and
Group-DETR schemes; with DINO's transformer and group makers, DINO and
Co-DETR. The matching groups are a :class:`.HybridQueryGroups`, the groups
made each batch come from its group makers, and the losses of every
(layer, group) are its criterion's (``opera.DETRCriterion`` by default).
"""
import torch
import torch.nn as nn
from mmcv.runner import force_fp32
from mmdet.core import bbox2result
from mmdet.models.dense_heads import DeformableDETRHead

from ..builder import HEADS, build_model
from ..utils.arguments import (DETECTION_TEST_CFG_KEYS,
                               reject_unknown_arguments,
                               reject_unknown_cfg_keys, require_cfg_keys)
from ..query_groups.fixed_target_groups import (add_fixed_groups,
                                                build_group_makers)
from ..query_groups.hybrid_matching import (build_query_groups,
                                            pop_hybrid_branch_keys)
from ..transformers.padding import masks_and_positions
from ..transformers.refine import refine_reference
from .query_detections import check_nms_cfg, nms_detections

ONNX_ADVICE = ('export the detector with opera.apis.export_onnx '
               '(tools/deployment/pytorch2onnx.py), see docs/deployment.md')


# 'HybridDeformableDETRHead': the name released configs give it.
@HEADS.register_module(
    name=['DETRDetectionHead', 'HybridDeformableDETRHead'])
class DETRDetectionHead(DeformableDETRHead):
    """Two-stage Deformable-DETR head with query groups (hybrid matching).

    The groups are the hybrid branch given by ``num_query`` (one-to-one, kept
    at test) and ``num_query_one2many`` / ``k_one2many`` /
    ``lambda_one2many``, or any scheme given by ``query_groups`` (see
    :class:`.HybridQueryGroups`).

    Args:
        num_query (int): Queries run at test time.
        query_groups (list[dict] | None): The query groups (``QueryGroup``
            arguments); ``num_query`` must be the number of queries of the
            ``at_test`` groups.
        split_self_attn (bool): Decoder self-attention group by group
            (True) or masked over all queries (False); same outputs.
        fixed_target_groups (list[dict] | None): Makers of query groups
            that come with their targets, joined in training between query
            selection and the decoder (e.g. ``opera.GroundTruthQueries``,
            DINO's ``opera.ContrastiveDenoisingQueries``; see
            :mod:`opera.models.query_groups.fixed_target_groups`).
        criterion (dict | None): The criterion's type and options (e.g.
            ``dict(type='opera.DETRCriterion', class_targets=dict(
            type='iou'))``); default ``opera.DETRCriterion``. The head fills
            in what it holds (see :func:`criterion_cfg_of_head`).
        share_decoder_branches (bool): One class branch and one box branch
            for every decoder layer (DINO), the encoder proposals keeping
            their own; False: one per layer (Deformable-DETR's box
            refinement).
        num_query_one2many, k_one2many, lambda_one2many: H-DETR's
            hybrid-branch shorthand, in place of ``query_groups`` (see
            ``opera.models.query_groups.build_query_groups``).
        **kwargs: See mmdet's ``DeformableDETRHead``. ``transformer``,
            ``positional_encoding``, ``loss_cls``, ``loss_bbox`` and
            ``loss_iou`` are required: mmdet's defaults are another recipe
            (e.g. a cross-entropy class loss). The losses and
            ``train_cfg.assigner`` make the head's :attr:`criterion`.
    """

    #: What its inference graph computes (``opera.apis.inference_graph``).
    inference_kind = 'detection'

    REQUIRED_KEYS = ('transformer', 'positional_encoding', 'loss_cls',
                     'loss_bbox', 'loss_iou')

    def __init__(self,
                 *args,
                 num_query=300,
                 query_groups=None,
                 split_self_attn=True,
                 fixed_target_groups=None,
                 share_decoder_branches=False,
                 criterion=None,
                 **kwargs):
        hybrid_branch_keys = pop_hybrid_branch_keys(kwargs)
        if share_decoder_branches and not (kwargs.get('with_box_refine')
                                           and kwargs.get('as_two_stage')):
            raise ValueError('share_decoder_branches=True shares the box '
                             'refinement branches of a two-stage head: set '
                             'with_box_refine=True and as_two_stage=True')
        self.share_decoder_branches = share_decoder_branches
        reject_unknown_arguments(type(self), kwargs)
        require_cfg_keys(
            type(self).__name__, 'model.bbox_head',
            'configs/_base_/models/deformable_detr_r50_two_stage.py',
            **{key: kwargs.get(key) for key in self.REQUIRED_KEYS})
        reject_unknown_cfg_keys(
            kwargs.get('train_cfg'),
            kwargs.get('test_cfg'),
            test_keys=DETECTION_TEST_CFG_KEYS)
        # _init_layers (called by the parent) sizes the query embedding.
        self.query_groups = build_query_groups(num_query, query_groups,
                                               split_self_attn,
                                               hybrid_branch_keys)
        # mmdet 2.x's DETRHead insists on class loss weight == matching
        # class cost, which DINO's recipe breaks (1.0 vs 2.0, as DETR's own
        # code allows); the criterion below builds the assigner, so mmdet's
        # head gets no train_cfg.
        train_cfg = kwargs.pop('train_cfg', None)
        super().__init__(
            *args, num_query=num_query, train_cfg=None, **kwargs)
        self.train_cfg = train_cfg
        self.query_groups.bind_decoder(self.transformer.decoder)
        # mmdet's head built the losses; the criterion holds them (no
        # weights: the checkpoint layout is the same). mmdet's init_weights
        # and post-processing still read loss_cls.use_sigmoid.
        del self.loss_bbox, self.loss_iou
        self.criterion = build_model(
            criterion_cfg_of_head(
                criterion,
                num_classes=self.num_classes,
                loss_cls=kwargs['loss_cls'],
                loss_bbox=kwargs['loss_bbox'],
                loss_iou=kwargs['loss_iou'],
                assigner=self.train_cfg['assigner']
                if self.train_cfg else None,
                bg_cls_weight=self.bg_cls_weight,
                sync_cls_avg_factor=self.sync_cls_avg_factor,
                class_agnostic_proposals=self.transformer.
                class_agnostic_proposals))
        self.loss_cls = self.criterion.loss_cls
        nms_cfg = (self.test_cfg or {}).get('nms')
        if nms_cfg:
            check_nms_cfg(nms_cfg)
            if not self.loss_cls.use_sigmoid:
                raise ValueError('model.test_cfg.nms ranks sigmoid class '
                                 'scores; the class loss here is a softmax '
                                 'one')
        if self.train_cfg:
            self.query_groups.check_assigner(self.criterion.assigner)
        self.group_makers = build_group_makers(fixed_target_groups,
                                               self.num_classes,
                                               self.embed_dims)

    def set_epoch(self, epoch):
        """The training epoch for the query groups' schedules (see
        ``opera.QueryGroupScheduleHook``); returns their K per layer in
        words."""
        self.query_groups.set_epoch(epoch)
        return self.query_groups.describe_repeats()

    def _init_layers(self):
        super()._init_layers()
        if self.share_decoder_branches:
            # mmdet made one copy per layer; keep the first for every
            # decoder layer and the last for the encoder proposals.
            num_dec = self.transformer.decoder.num_layers
            for name in ('cls_branches', 'reg_branches'):
                branches = getattr(self, name)
                setattr(self, name, nn.ModuleList(
                    [branches[0]] * num_dec + [branches[num_dec]]))
        # One row per query of every group; as wide as the transformer
        # takes it (replacing mmdet's one-stage embedding of num_query rows).
        query_embed_dims = self.transformer.query_embed_dims
        if query_embed_dims is not None:
            self.query_embedding = nn.Embedding(
                self.query_groups.num_query_total, query_embed_dims)

    def forward(self, mlvl_feats, img_metas, targets=None):
        """Run the transformer's stages (encode, pre_decoder,
        forward_decoder) and the per-layer class/box branches.

        In training all query groups run, and the fixed-target groups of
        the batch after them (made from ``targets``); in eval mode only the
        groups kept at test (each query takes the same proposal rank in
        both).

        Args:
            mlvl_feats (tuple[Tensor]): Neck levels, each [bs, c, h, w].
            img_metas (list[dict]): Per image.
            targets (dict | None): The batch's ground truth (training).

        Returns:
            dict: ``cls_scores`` [num_layers, bs, nq, num_classes] logits,
            ``bbox_preds`` [num_layers, bs, nq, 4] (cx, cy, w, h) in
            [0, 1], and the encoder's ``enc_cls`` [bs, sum(h*w),
            num_classes] logits and ``enc_bbox_preds`` [bs, sum(h*w), 4]
            boxes (both None without two-stage); ``fixed_groups``, the
            fixed-target groups whose queries are the last of the nq.
        """
        masks, positions = masks_and_positions(
            mlvl_feats, img_metas, self.positional_encoding)
        num_queries = self.query_groups.num_active_queries(self.training)
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
            proposal_ranks=self.query_groups.proposal_ranks(
                num_queries, device),
            reg_branches=reg_branches,
            cls_branches=self.cls_branches if self.as_two_stage else None)
        queries, fixed_groups = add_fixed_groups(
            queries, self.group_makers if self.training else (),
            self.transformer, memory, levels, targets, img_metas)
        states, references = self.transformer.forward_decoder(
            queries,
            memory,
            levels,
            reg_branches=reg_branches,
            self_attn_mask=self.query_groups.self_attn_mask(
                num_queries, device, fixed_groups))
        init_reference = queries.reference

        all_cls_scores, all_bbox_preds = [], []
        eps = self.transformer.decoder.refine_eps
        for lvl in range(states.shape[0]):
            reference = init_reference if lvl == 0 else references[lvl - 1]
            all_cls_scores.append(self.cls_branches[lvl](states[lvl]))
            all_bbox_preds.append(
                refine_reference(self.reg_branches[lvl](states[lvl]),
                                 reference, eps))
        all_cls_scores = torch.stack(all_cls_scores)
        all_bbox_preds = torch.stack(all_bbox_preds)
        if enc_coord is not None:
            enc_coord = enc_coord.sigmoid()
        return dict(
            cls_scores=all_cls_scores,
            bbox_preds=all_bbox_preds,
            enc_cls=enc_cls,
            enc_bbox_preds=enc_coord,
            fixed_groups=fixed_groups)

    def forward_train(self,
                      x,
                      img_metas,
                      gt_bboxes,
                      gt_labels,
                      gt_bboxes_ignore=None):
        """Losses of a batch.

        Args:
            x (tuple[Tensor]): Neck levels, each [bs, c, h, w].
            img_metas (list[dict]): Need ``img_shape``, ``batch_input_shape``.
            gt_bboxes (list[Tensor]): [G, 4] (x1, y1, x2, y2) pixels.
            gt_labels (list[Tensor]): [G].
            gt_bboxes_ignore: Not supported.

        Returns:
            dict[str, Tensor]: Losses (see :meth:`loss`).
        """
        if gt_bboxes_ignore is not None:
            raise NotImplementedError(
                f'{type(self).__name__} does not use gt_bboxes_ignore')
        targets = dict(gt_bboxes=gt_bboxes, gt_labels=gt_labels)
        return self.loss(self(x, img_metas, targets), targets, img_metas)

    @force_fp32(apply_to=('outputs', ))
    def loss(self, outputs, targets, img_metas):
        """Losses of the encoder proposals and of every (layer, group) (see
        :meth:`DETRCriterion.forward`); computed in fp32 under fp16.

        Args:
            outputs (dict): Of :meth:`forward` in training.
            targets (dict): Per-image lists ``gt_bboxes`` [G, 4] (x1, y1,
                x2, y2) pixels and ``gt_labels`` [G].
            img_metas (list[dict]): Per image, need ``img_shape``.

        Returns:
            dict[str, Tensor]: ``enc_loss_*``, ``{d{i}.}loss_*{suffix}`` and
            ``num_matched{suffix}`` (see ``SetCriterion.query_group_losses``).
        """
        return self.criterion(outputs, targets, img_metas, self.query_groups)

    def simple_test_bboxes(self, feats, img_metas, rescale=False):
        """Per image the detections [m, 5] (x1, y1, x2, y2, score) and
        labels [m] of :meth:`get_bboxes`."""
        return self.get_bboxes(self(feats, img_metas), img_metas, rescale)

    @force_fp32(apply_to=('outputs', ))
    def get_bboxes(self, outputs, img_metas, rescale=False):
        """Detections from the test-time queries' last layer: the
        ``test_cfg.max_per_img`` best (query, class) pairs, or, with a
        ``test_cfg.nms`` (Co-DINO's soft-NMS), the best pair per test query
        through that NMS, then the ``max_per_img`` best
        (:func:`.nms_detections`).

        Args:
            outputs (dict): ``cls_scores`` and ``bbox_preds`` of
                :meth:`forward` (the last layer is used).
            img_metas (list[dict]): Per image ``img_shape`` and
                ``scale_factor``.
            rescale (bool): Boxes in pixels of the original image.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image boxes [m, 5] and labels
            [m].
        """
        cls_scores = self.query_groups.test_part(outputs['cls_scores'], dim=2)
        bbox_preds = self.query_groups.test_part(outputs['bbox_preds'], dim=2)
        nms_cfg = self.test_cfg.get('nms')
        if nms_cfg is None:
            return super().get_bboxes(cls_scores, bbox_preds, None, None,
                                      img_metas, rescale)
        max_per_img = self.test_cfg.get('max_per_img', self.num_query)
        return [
            nms_detections(cls_scores[-1][img_id], bbox_preds[-1][img_id],
                           meta, rescale, nms_cfg, max_per_img)
            for img_id, meta in enumerate(img_metas)
        ]

    def forward_onnx(self, feats, img_metas):
        """Refused: mmdet's ONNX path (``DETR.onnx_export``) builds DETR's
        masks, not this head's; see :meth:`graph_outputs`."""
        raise NotImplementedError(ONNX_ADVICE)

    def onnx_export(self, outputs, img_metas):
        """Refused, as :meth:`forward_onnx`."""
        raise NotImplementedError(ONNX_ADVICE)

    def graph_outputs(self, outputs):
        """The tensors of an exported inference graph (``opera.apis``): the
        last layer's class logits [bs, nq, C] and boxes [bs, nq, 4] (the
        top-k stays in :meth:`get_bboxes`, so the graph gives every
        query's scores)."""
        return outputs['cls_scores'][-1], outputs['bbox_preds'][-1]

    def graph_results(self, tensors, img_metas, rescale=False):
        """Per image what the detector's ``simple_test`` returns (a list
        over classes of [n, 5] arrays), from :meth:`graph_outputs`'
        tensors."""
        cls_logits, boxes = tensors
        # get_bboxes reads the last layer of [num_layers, bs, nq, ...].
        outputs = dict(cls_scores=cls_logits[None], bbox_preds=boxes[None])
        return [
            bbox2result(det_bboxes, det_labels, self.num_classes)
            for det_bboxes, det_labels in self.get_bboxes(
                outputs, img_metas, rescale)
        ]


def criterion_cfg_of_head(criterion, **head_values):
    """The criterion config: ``criterion`` (type and options) plus what the
    head holds: its classes, mmdet's loss keys, the assigner of its
    ``train_cfg`` and the transformer's ``class_agnostic_proposals``.

    Raises:
        ValueError: When ``criterion`` sets one of those itself (the head's
            key is the one source).
    """
    cfg = dict(type='opera.DETRCriterion')
    cfg.update(criterion or {})
    for key, value in head_values.items():
        if key in cfg:
            raise ValueError(
                f'model.bbox_head.criterion.{key} is set by the head (from '
                f'model.bbox_head / train_cfg / the transformer); remove it')
        cfg[key] = value
    return cfg
