"""PETR head, with an optional one-to-many query group (H-PETR).

Each query predicts a person score and a pose of K keypoints (normalised by
the image size); the person box is the rectangle around the keypoints. The
refine decoder then refines the keypoints of the persons kept. With
``num_query_one2many > 0`` the head is H-PETR; other query groups give the
hybrid-epoch and hybrid-layer schemes. The groups, their matching and the
combination of their losses are :class:`.HybridQueryGroups`;
the matching and the losses are :class:`~.petr_criterion.PETRCriterion`.
"""
import copy

import torch
import torch.nn as nn
from mmcv.cnn import bias_init_with_prob, constant_init, normal_init
from mmcv.cnn.bricks.transformer import build_positional_encoding
from mmcv.runner import BaseModule, force_fp32

from opera.core.keypoint import bbox_kpt2result, get_keypoint_layout
from ..builder import HEADS, build_model
from ..utils.arguments import reject_unknown_cfg_keys, require_cfg_keys
from ..builder import TRANSFORMER
from ..query_groups.fixed_target_groups import (add_fixed_groups,
                                                build_group_makers)
from ..query_groups.hybrid_matching import build_query_groups
from ..transformers.padding import masks_and_positions
from ..utils.keypoint_layout_cfg import (criterion_cfg_with_layout,
                                         train_cfg_with_layout,
                                         transformer_with_layout)


def mlp(in_dims, hidden_dims, out_dims, num_hidden):
    """Linear-ReLU stack: in -> hidden, ``num_hidden`` x hidden -> hidden,
    then a linear output layer."""
    layers = [nn.Linear(in_dims, hidden_dims), nn.ReLU()]
    for _ in range(num_hidden):
        layers += [nn.Linear(hidden_dims, hidden_dims), nn.ReLU()]
    layers.append(nn.Linear(hidden_dims, out_dims))
    return nn.Sequential(*layers)


def clones(module, num):
    return nn.ModuleList(copy.deepcopy(module) for _ in range(num))


def criterion_cfg_of_head(criterion, layout, num_classes, train_cfg):
    """The head's criterion config with what the head knows filled in: K
    and the OKS sigmas (``layout``), ``num_classes`` and
    ``train_cfg.assigner`` (None without ``train_cfg``)."""
    criterion = criterion_cfg_with_layout(criterion, layout)
    for key, source in (('num_classes', 'model.bbox_head.num_classes'),
                        ('assigner', 'model.train_cfg.assigner')):
        if key in criterion:
            raise ValueError(
                f'model.bbox_head.criterion.{key} is set by the head from '
                f'{source}; remove it from the criterion config')
    criterion['num_classes'] = num_classes
    criterion['assigner'] = None if train_cfg is None else train_cfg[
        'assigner']
    return criterion


@HEADS.register_module()
class PETRHead(BaseModule):
    """PETR / H-PETR pose head.

    Args:
        num_classes (int): Person classes (1).
        keypoint_layout (str | dict): The keypoints (a registered name such
            as 'coco' or 'crowdpose', or a dict defining a layout, see
            :mod:`opera.core.keypoint.layouts`). K and the OKS sigmas follow
            from it: they are filled into ``transformer`` (its and its pose
            decoder's ``num_keypoints``, the pose attention's
            ``num_points``), ``criterion`` (its ``num_keypoints``, its OKS
            losses) and the assigner's OKS cost.
        num_keypoints (int, optional): K; if given it must equal the
            layout's.
        num_query (int): Queries run at test time.
        query_groups (list[dict] | None): The query groups (see
            ``opera.DETRDetectionHead``).
        split_self_attn (bool): Decoder self-attention group by group
            (True) or masked over all queries (False); same outputs.
        num_kpt_fcs (int): Hidden-to-hidden layers of the pose branches (and
            of the refine branches).
        kpt_hidden_dims (int): Width of the pose branches.
        transformer (dict): ``opera.PETRTransformer`` config (required).
        positional_encoding (dict): Sine encoding of the feature maps
            (required).
        criterion (dict): ``opera.PETRCriterion`` config: the losses
            (required; ``num_classes``, K and the assigner are filled in by
            the head).
        cls_prior_prob (float): Initial person probability of every query.
        hm_prior_prob (float): Initial heatmap probability.
        train_cfg (dict): ``assigner`` (``opera.PoseHungarianAssigner``),
            given to the criterion.
        test_cfg (dict): ``max_per_img``: persons kept per image.
        init_cfg (dict | None): Unused; see :meth:`init_weights`.
        fixed_target_groups (list[dict] | None): Makers of query groups
            that come with their targets (see
            ``opera.DETRDetectionHead``), e.g.
            ``opera.PoseDenoisingQueries`` (which needs
            ``transformer.given_pose_queries=True``).
        **hybrid_branch_keys: ``num_query_one2many``, ``k_one2many``,
            ``lambda_one2many``: H-DETR's hybrid-branch shorthand in place
            of ``query_groups`` (see
            ``opera.models.query_groups.build_query_groups``).
    """

    #: What its inference graph computes (``opera.apis.inference_graph``).
    inference_kind = 'pose'

    def __init__(self,
                 num_classes=1,
                 keypoint_layout='coco',
                 num_keypoints=None,
                 num_query=300,
                 query_groups=None,
                 split_self_attn=True,
                 num_kpt_fcs=2,
                 kpt_hidden_dims=512,
                 transformer=None,
                 positional_encoding=None,
                 criterion=None,
                 cls_prior_prob=0.01,
                 hm_prior_prob=0.1,
                 train_cfg=None,
                 test_cfg=dict(max_per_img=100),
                 init_cfg=None,
                 fixed_target_groups=None,
                 **hybrid_branch_keys):
        super().__init__(init_cfg)
        require_cfg_keys(
            'PETRHead',
            'model.bbox_head',
            'configs/_base_/models/petr_r50.py',
            transformer=transformer,
            positional_encoding=positional_encoding,
            criterion=criterion)
        reject_unknown_cfg_keys(train_cfg, test_cfg)
        self.keypoint_layout = get_keypoint_layout(keypoint_layout)
        if num_keypoints not in (None, self.keypoint_layout.num_keypoints):
            raise ValueError(
                f'num_keypoints={num_keypoints} but keypoint layout '
                f"'{self.keypoint_layout.name}' has "
                f'{self.keypoint_layout.num_keypoints}; set only '
                'keypoint_layout')
        transformer = transformer_with_layout(transformer,
                                              self.keypoint_layout)
        train_cfg = train_cfg_with_layout(train_cfg, self.keypoint_layout)
        criterion = criterion_cfg_of_head(criterion, self.keypoint_layout,
                                          num_classes, train_cfg)
        self.query_groups = build_query_groups(num_query, query_groups,
                                               split_self_attn,
                                               hybrid_branch_keys)
        # Set to True by mmcv's wrap_fp16_model (Fp16OptimizerHook).
        self.fp16_enabled = False
        self.num_classes = num_classes
        self.num_keypoints = self.keypoint_layout.num_keypoints
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.cls_prior_prob = cls_prior_prob
        self.hm_prior_prob = hm_prior_prob
        self.criterion = build_model(criterion)
        if train_cfg is not None:
            self.query_groups.check_assigner(self.criterion.assigner)
        self.positional_encoding = build_positional_encoding(
            positional_encoding)
        self.transformer = TRANSFORMER.build(transformer)
        self.embed_dims = self.transformer.embed_dims
        self.query_groups.bind_decoder(self.transformer.decoder)
        self._init_layers(num_kpt_fcs, kpt_hidden_dims)
        self.group_makers = build_group_makers(fixed_target_groups,
                                               num_classes, self.embed_dims)

    def _init_layers(self, num_kpt_fcs, kpt_hidden_dims):
        """Class/pose branches (one per decoder layer + the proposals),
        query embedding, refine branches and the heatmap classifier."""
        num_branches = self.transformer.decoder.num_layers + 1
        self.cls_branches = clones(
            nn.Linear(self.embed_dims, self.num_classes), num_branches)
        self.kpt_branches = clones(
            mlp(self.embed_dims, kpt_hidden_dims, 2 * self.num_keypoints,
                num_kpt_fcs), num_branches)
        self.query_embedding = nn.Embedding(self.query_groups.num_query_total,
                                            self.embed_dims * 2)
        # As in PETR: the pose branches have num_kpt_fcs + 1 hidden layers,
        # the refine branches num_kpt_fcs (c -> c -> c -> 2).
        self.refine_kpt_branches = clones(
            mlp(self.embed_dims, self.embed_dims, 2, num_kpt_fcs - 1),
            self.transformer.refine_decoder.num_layers)
        self.fc_hm = nn.Linear(self.embed_dims, self.num_keypoints)

    def init_weights(self):
        """Transformer init, prior-probability class biases, zero last
        layers of the pose and refine branches (start at the reference)."""
        self.transformer.init_weights()
        for branch in self.cls_branches:
            nn.init.constant_(branch.bias,
                              bias_init_with_prob(self.cls_prior_prob))
        for branch in list(self.kpt_branches) + list(
                self.refine_kpt_branches):
            constant_init(branch[-1], 0., bias=0.)
        normal_init(
            self.fc_hm, std=0.01, bias=bias_init_with_prob(self.hm_prior_prob))

    def forward(self, mlvl_feats, img_metas, targets=None):
        """Poses and scores of every decoder layer.

        In training all query groups run, the batch's fixed-target groups
        after them (made from ``targets``), and the heatmap branch too; in
        eval mode only the one-to-one group.

        Args:
            mlvl_feats (tuple[Tensor]): Neck levels, each [bs, c, h, w].
            img_metas (list[dict]): Per image.
            targets (dict | None): The batch's ground truth (training).

        Returns:
            dict: ``cls_scores`` [num_layers, bs, nq, C], ``poses``
            [num_layers, bs, nq, 2K] in [0, 1] of the image, ``enc_cls``
            [bs, S, C], ``enc_poses`` [bs, S, 2K], ``hm_logits``
            [bs, K, h, w] and ``hm_padding`` [bs, h, w] (None in eval),
            ``memory``/``levels`` for the refine decoder, and
            ``fixed_groups``, whose queries are the last of the nq.
        """
        masks, positions = masks_and_positions(
            mlvl_feats, img_metas, self.positional_encoding)
        num_queries = self.query_groups.num_active_queries(self.training)
        device = mlvl_feats[0].device
        memory, levels = self.transformer.encode(mlvl_feats, masks, positions)
        queries, enc_cls, enc_poses = self.transformer.pre_decoder(
            memory,
            levels,
            self.query_embedding.weight[:num_queries],
            num_queries,
            proposal_ranks=self.query_groups.proposal_ranks(
                num_queries, device),
            kpt_branches=self.kpt_branches,
            cls_branches=self.cls_branches)
        queries, fixed_groups = add_fixed_groups(
            queries, self.group_makers if self.training else (),
            self.transformer, memory, levels, targets, img_metas)
        states, poses = self.transformer.forward_decoder(
            queries,
            memory,
            levels,
            self.kpt_branches,
            self_attn_mask=self.query_groups.self_attn_mask(
                num_queries, device, fixed_groups))
        hm_memory = self.transformer.heatmap_memory(
            memory, levels) if self.training else None
        outputs = dict(states=states, poses=poses, enc_cls=enc_cls,
                       enc_poses=enc_poses, memory=memory, levels=levels,
                       fixed_groups=fixed_groups)
        outputs['cls_scores'] = torch.stack([
            branch(states)
            for branch, states in zip(self.cls_branches, outputs['states'])
        ])
        outputs['hm_logits'] = None if hm_memory is None else self.fc_hm(
            hm_memory).permute(0, 3, 1, 2)
        outputs['hm_padding'] = masks[0]
        return outputs

    def set_epoch(self, epoch):
        """The training epoch for the query groups' schedules (see
        ``opera.QueryGroupScheduleHook``); returns their K per layer in
        words."""
        self.query_groups.set_epoch(epoch)
        return self.query_groups.describe_repeats()

    def refine(self, outputs, poses, img_inds):
        """Refine decoder on persons [n, 2K] of images ``img_inds`` [n].

        Returns:
            Tensor: [num_refine_layers, n, K, 2] keypoints in [0, 1].
        """
        return self.transformer.forward_refine(outputs['memory'],
                                               outputs['levels'],
                                               poses.detach(), img_inds,
                                               self.refine_kpt_branches)

    def forward_train(self,
                      x,
                      img_metas,
                      gt_bboxes,
                      gt_labels,
                      gt_keypoints,
                      gt_areas,
                      gt_bboxes_ignore=None):
        """Losses of a batch.

        Args:
            x (tuple[Tensor]): Neck levels, each [bs, c, h, w].
            img_metas (list[dict]): Need ``img_shape``, ``batch_input_shape``.
            gt_bboxes (list[Tensor]): [G, 4] person boxes, pixels.
            gt_labels (list[Tensor]): [G].
            gt_keypoints (list[Tensor]): [G, K, 3] (x, y, v), pixels.
            gt_areas (list[Tensor]): [G] areas, pixels^2 of the input.
            gt_bboxes_ignore: Not supported (crowd persons are dropped by
                the dataset).

        Returns:
            dict[str, Tensor]: Losses.
        """
        if gt_bboxes_ignore is not None:
            raise NotImplementedError('PETRHead does not use ignored boxes')
        targets = dict(
            gt_bboxes=gt_bboxes,
            gt_labels=gt_labels,
            gt_keypoints=gt_keypoints,
            gt_areas=gt_areas)
        return self.loss(self(x, img_metas, targets), targets, img_metas)

    @force_fp32(apply_to=('outputs', ))
    def loss(self, outputs, targets, img_metas):
        """Losses of every (decoder layer, query group), of the proposals,
        the heatmaps and the refine decoder (see :class:`PETRCriterion`).

        The refine decoder runs between the criterion's two steps, on the
        persons matched at the last layer by every matching group (not by
        the fixed-target groups, see ``refine_positives``). Computed in fp32
        under fp16 (the refine decoder too).

        Args:
            outputs (dict): Of :meth:`forward` in training.
            targets (dict): Per-image lists ``gt_bboxes``, ``gt_labels``,
                ``gt_keypoints``, ``gt_areas`` (as in
                :meth:`forward_train`).
            img_metas (list[dict]): Per image, need ``img_shape``.

        Returns:
            dict[str, Tensor]: Losses.
        """
        losses, positives = self.criterion(outputs, targets, img_metas,
                                           self.query_groups)
        refined = self.refine(outputs, positives['poses'],
                              positives['img_inds'])
        losses.update(
            self.criterion.refine_losses(refined, positives, img_metas))
        return losses

    def graph_outputs(self, outputs):
        """The tensors of an exported inference graph (``opera.apis``):
        :meth:`top_persons`."""
        return self.top_persons(outputs)

    def graph_results(self, tensors, img_metas, rescale=False):
        """Per image what the detector's ``simple_test`` returns, from
        :meth:`graph_outputs`' tensors: ``(bbox_results,
        keypoint_results)``."""
        return [
            bbox_kpt2result(boxes, labels, keypoints, self.num_classes)
            for boxes, labels, keypoints in self.results_in_pixels(
                *tensors, img_metas, rescale)
        ]

    def simple_test(self, feats, img_metas, rescale=False):
        """Detections of a batch without test-time augmentation.

        Returns:
            list[tuple[Tensor, Tensor, Tensor]]: Per image: boxes [m, 5]
            (x1, y1, x2, y2, score), labels [m], keypoints [m, K, 3]
            (x, y, 1), pixels of the original image when ``rescale``.
        """
        return self.get_results(self(feats, img_metas), img_metas, rescale)

    @force_fp32(apply_to=('outputs', ))
    def get_results(self, outputs, img_metas, rescale=False):
        """Top ``max_per_img`` one-to-one persons per image (no NMS), their
        keypoints from the refine decoder, boxes around the keypoints (in
        fp32 under fp16)."""
        return self.results_in_pixels(*self.top_persons(outputs), img_metas,
                                      rescale)

    def top_persons(self, outputs):
        """Top ``max_per_img`` one-to-one persons per image and their
        refined keypoints: the tensor part of :meth:`get_results` (what an
        ONNX export of the model computes).

        Returns:
            tuple[Tensor, Tensor, Tensor]: scores [bs, m] (best first),
            labels [bs, m] and keypoints [bs, m, K, 2] in [0, 1] of the
            image.
        """
        cls_scores = self.query_groups.test_part(outputs['cls_scores'][-1],
                                                 dim=1)
        poses = self.query_groups.test_part(outputs['poses'][-1], dim=1)
        bs, num_query, num_classes = cls_scores.shape
        max_per_img = min(self.test_cfg['max_per_img'],
                          num_query * num_classes)
        scores, indices = cls_scores.sigmoid().flatten(1).topk(max_per_img)
        labels = indices % num_classes
        kept = poses.gather(
            1, (indices // num_classes)[..., None].expand(-1, -1,
                                                          poses.size(-1)))
        img_inds = torch.arange(
            bs, device=poses.device).repeat_interleave(max_per_img)
        keypoints = self.refine(outputs, kept.flatten(0, 1), img_inds)[-1]
        keypoints = keypoints.view(bs, max_per_img, self.num_keypoints, 2)
        return scores, labels, keypoints

    def results_in_pixels(self, scores, labels, keypoints, img_metas,
                          rescale=False):
        """Per-image results of :meth:`top_persons`' outputs: keypoints in
        pixels, boxes around them (see :meth:`simple_test`)."""
        results = []
        for img_id, meta in enumerate(img_metas):
            kpts = self.keypoints_in_pixels(keypoints[img_id], meta, rescale)
            boxes = torch.cat([kpts.amin(1), kpts.amax(1), scores[img_id, :,
                                                                  None]], 1)
            kpts = torch.cat([kpts, kpts.new_ones(kpts[..., :1].shape)], -1)
            results.append((boxes, labels[img_id], kpts))
        return results

    @staticmethod
    def keypoints_in_pixels(keypoints, img_meta, rescale):
        """[m, K, 2] normalised -> pixels clamped to the image (of the
        original image when ``rescale``)."""
        img_h, img_w = img_meta['img_shape'][:2]
        size = keypoints.new_tensor([img_w, img_h])
        pixels = torch.min(keypoints * size, size).clamp(min=0)
        if rescale:
            pixels = pixels / pixels.new_tensor(img_meta['scale_factor'][:2])
        return pixels
