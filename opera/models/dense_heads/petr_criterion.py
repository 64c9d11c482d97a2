"""The losses of PETR / H-PETR, as one module built from its config.

Every set of pose predictions (each pose-decoder layer of every query group,
the encoder proposals) is matched to the ground truth by the Hungarian
assigner and trained with a focal class loss, an L1 loss on the visible
keypoint coordinates (normalised by the image size) and, for decoder layers,
an OKS loss in pixels. The heatmap branch trains on Gaussian keypoint
heatmaps. The refine decoder trains on the persons matched at the last
pose-decoder layer: the head runs it between :meth:`PETRCriterion.forward`
(which returns those persons) and :meth:`PETRCriterion.refine_losses`.
"""
import torch
import torch.nn as nn
from mmdet.core import reduce_mean

from opera.core.bbox import build_assigner, matched_pairs
from opera.core.keypoint import keypoint_heatmap_target
from ..builder import LOSSES, build_model
from ..utils.arguments import require_cfg_keys

BASE_CONFIG = 'configs/_base_/models/petr_r50.py'
LOSS_KEYS = ('loss_cls', 'loss_kpt', 'loss_oks', 'loss_kpt_rpn', 'loss_hm',
             'loss_kpt_refine', 'loss_oks_refine')


def image_sizes(img_metas, device):
    """[bs, 2] (w, h) of each image's valid area, in pixels."""
    return torch.tensor([meta['img_shape'][1::-1] for meta in img_metas],
                        dtype=torch.float32,
                        device=device)


def mean_over_gpus(count, device):
    """``count`` averaged over GPUs, at least 1 (a loss normaliser)."""
    count = torch.as_tensor(count, dtype=torch.float32, device=device)
    return reduce_mean(count).clamp(min=1).item()


@LOSSES.register_module()
class PETRCriterion(nn.Module):
    """Matching and losses of PETR / H-PETR (DETR's ``SetCriterion``).

    No loss has a default: the recipe is in ``model.bbox_head.criterion``
    of ``configs/_base_/models/petr_r50.py``. ``opera.PETRHead`` fills in
    ``num_classes``, ``num_keypoints``, the OKS losses' K and sigmas (from
    its keypoint layout) and ``assigner`` (its ``train_cfg.assigner``); a
    criterion built alone gives them itself.

    Args:
        num_classes (int): Person classes (1); label ``num_classes`` is the
            background.
        num_keypoints (int): K.
        loss_cls (dict): Focal class loss (decoder layers and proposals),
            sigmoid.
        loss_kpt (dict): Keypoint L1 loss of the decoder layers.
        loss_oks (dict): OKS loss of the decoder layers.
        loss_kpt_rpn (dict): Keypoint L1 loss of the proposals.
        loss_hm (dict): Heatmap loss (``GaussianFocalLoss``).
        loss_kpt_refine (dict): Keypoint L1 loss of the refine layers.
        loss_oks_refine (dict): OKS loss of the refine layers.
        heatmap_target (dict): Arguments of ``keypoint_heatmap_target``
            (stride, min_overlap, max_radius).
        heatmap_prob_eps (float): Heatmap probabilities are clamped to
            [eps, 1 - eps].
        assigner (dict | None): ``opera.PoseHungarianAssigner`` config; None
            for a model built for testing only (then the losses refuse to
            run).
    """

    def __init__(self,
                 num_classes=None,
                 num_keypoints=None,
                 loss_cls=None,
                 loss_kpt=None,
                 loss_oks=None,
                 loss_kpt_rpn=None,
                 loss_hm=None,
                 loss_kpt_refine=None,
                 loss_oks_refine=None,
                 heatmap_target=None,
                 heatmap_prob_eps=1e-4,
                 assigner=None):
        super().__init__()
        losses = dict(
            loss_cls=loss_cls,
            loss_kpt=loss_kpt,
            loss_oks=loss_oks,
            loss_kpt_rpn=loss_kpt_rpn,
            loss_hm=loss_hm,
            loss_kpt_refine=loss_kpt_refine,
            loss_oks_refine=loss_oks_refine)
        require_cfg_keys(
            'PETRCriterion',
            'model.bbox_head.criterion',
            BASE_CONFIG,
            num_classes=num_classes,
            num_keypoints=num_keypoints,
            **losses,
            heatmap_target=heatmap_target)
        self.num_classes = num_classes
        self.num_keypoints = num_keypoints
        self.heatmap_target = heatmap_target
        self.heatmap_prob_eps = heatmap_prob_eps
        self.assigner = None if assigner is None else build_assigner(assigner)
        for name in LOSS_KEYS:
            setattr(self, name, build_model(losses[name]))
        if not self.loss_cls.use_sigmoid:
            raise ValueError('PETRCriterion needs a sigmoid class loss '
                             '(criterion.loss_cls.use_sigmoid=True)')

    def forward(self, outputs, gt_bboxes, gt_labels, gt_keypoints, gt_areas,
                img_metas, query_groups):
        """Losses of every (decoder layer, query group), of the proposals and
        the heatmaps, and the persons the refine decoder trains on.

        Each query group is matched and normalised on its own at every
        decoder layer, against the ground truth repeated that group's K at
        that layer (see ``HybridQueryGroups.loss``).

        Args:
            outputs (dict): Of ``PETRHead.forward`` in training:
                ``cls_scores`` [num_layers, bs, Q, C], ``poses``
                [num_layers, bs, Q, 2K] in [0, 1] of the image, ``enc_cls``
                [bs, S, C], ``enc_poses`` [bs, S, 2K], ``hm_logits``
                [bs, K, h, w], ``hm_padding`` [bs, h, w] bool.
            gt_bboxes (list[Tensor]): Per image [G, 4] person boxes, pixels.
            gt_labels (list[Tensor]): Per image [G].
            gt_keypoints (list[Tensor]): Per image [G, K, 3] (x, y, v),
                pixels.
            gt_areas (list[Tensor]): Per image [G] areas, pixels^2.
            img_metas (list[dict]): Per image, need ``img_shape``.
            query_groups (HybridQueryGroups): The groups of the Q queries.

        Returns:
            tuple[dict, dict]: The losses (and ``num_matched*``), and the
            persons matched at the last layer by every group, for the
            refine decoder (see :meth:`layer_losses`; without any, the
            :meth:`placeholder_positives`).
        """

        def layer_group_loss(predictions, num_repeats):
            return self.layer_losses(*predictions, gt_labels, gt_keypoints,
                                     gt_areas, img_metas, self.loss_kpt,
                                     self.loss_oks, num_repeats)

        losses, last_positives = query_groups.loss(layer_group_loss,
                                                   outputs['cls_scores'],
                                                   outputs['poses'])
        positives = {
            name: torch.cat([group[name] for group in last_positives])
            for name in last_positives[0]
        }
        losses.update(
            self.encoder_losses(outputs['enc_cls'], outputs['enc_poses'],
                                gt_labels, gt_keypoints, gt_areas, img_metas))
        losses['loss_hm'] = self.heatmap_loss(outputs['hm_logits'],
                                              outputs['hm_padding'],
                                              gt_keypoints, gt_bboxes)
        if positives['poses'].size(0) == 0:
            positives = self.placeholder_positives(outputs['poses'])
        return losses, positives

    def required_assigner(self):
        """The assigner, or a clear error for a criterion built without."""
        if self.assigner is None:
            raise RuntimeError(
                'PETRCriterion has no assigner, so it cannot compute '
                'losses: give model.train_cfg.assigner (a criterion built '
                'alone: assigner=...), see ' + BASE_CONFIG)
        return self.assigner

    def pose_targets(self, cls_score, poses, gt_labels, gt_keypoints,
                     gt_areas, img_meta, num_repeats=1):
        """Match one image's queries and build their targets.

        Args:
            cls_score (Tensor): [Q, C] class logits.
            poses (Tensor): [Q, 2K] poses normalised by the image (w, h).
            gt_labels (Tensor): [G].
            gt_keypoints (Tensor): [G, K, 3] (x, y, v) in pixels.
            gt_areas (Tensor): [G] areas in pixels^2.
            img_meta (dict): Needs ``img_shape``.
            num_repeats (int): Each person gets up to K queries.

        Returns:
            tuple: labels [Q] (``num_classes`` = background), pose targets
            [Q, 2K] normalised, pose weights [Q, 2K] (1 at the visible
            coordinates of matched queries), areas [Q], matched count (int).
        """
        num_query = poses.size(0)
        assign_result = self.required_assigner().assign(
            cls_score,
            poses,
            gt_labels,
            gt_keypoints,
            gt_areas,
            img_meta,
            num_repeats=num_repeats)
        pos_inds, gt_inds = matched_pairs(assign_result, gt_labels.size(0))
        matched = gt_keypoints.reshape(gt_labels.size(0), self.num_keypoints,
                                       3)[gt_inds]
        img_h, img_w = img_meta['img_shape'][:2]

        labels = gt_labels.new_full((num_query, ), self.num_classes)
        labels[pos_inds] = gt_labels[gt_inds]
        targets = poses.new_zeros(poses.shape)
        targets[pos_inds] = (matched[..., :2] /
                             poses.new_tensor([img_w, img_h])).flatten(1)
        weights = poses.new_zeros(poses.shape)
        weights[pos_inds] = (matched[..., 2:] > 0).to(poses.dtype).expand(
            -1, -1, 2).flatten(1)
        areas = poses.new_zeros(num_query)
        areas[pos_inds] = gt_areas[gt_inds].to(poses.dtype)
        return labels, targets, weights, areas, pos_inds.numel()

    def oks_term(self, loss_oks, poses, targets, weights, areas, sizes,
                 avg_factor):
        """OKS loss in pixels of normalised poses [n, 2K] (sizes [n, 2])."""
        scale = sizes.repeat(1, self.num_keypoints)
        return loss_oks(
            poses * scale,
            targets * scale,
            weights[:, 0::2],
            areas,
            avg_factor=avg_factor)

    def layer_losses(self,
                     cls_scores,
                     poses,
                     gt_labels,
                     gt_keypoints,
                     gt_areas,
                     img_metas,
                     loss_kpt,
                     loss_oks=None,
                     num_repeats=1):
        """Losses of one set of predictions for the whole batch.

        Args:
            cls_scores (Tensor): [bs, Q, C] logits.
            poses (Tensor): [bs, Q, 2K] normalised poses.
            gt_labels, gt_keypoints, gt_areas (list[Tensor]): Per image.
            img_metas (list[dict]): Per image.
            loss_kpt (nn.Module): Keypoint L1 loss.
            loss_oks (nn.Module | None): OKS loss, skipped if None.
            num_repeats (int): Matched against the persons repeated K times.

        Returns:
            tuple[dict, int, dict]: ``loss_cls``, ``loss_kpt``
            (``loss_oks``); the matched queries of this process; and the
            matched queries with a visible keypoint: ``poses``
            [n, 2K], ``targets`` [n, 2K], ``weights`` [n, 2K], ``areas`` [n],
            ``img_inds`` [n].
        """
        bs, num_query = cls_scores.shape[:2]
        per_image = [
            self.pose_targets(cls_scores[i], poses[i], gt_labels[i],
                              gt_keypoints[i], gt_areas[i], img_metas[i],
                              num_repeats)
            for i in range(bs)
        ]
        labels, targets, weights, areas = (
            torch.cat(parts) for parts in list(zip(*per_image))[:4])
        device = cls_scores.device
        num_matched = sum(p[4] for p in per_image)
        num_pos = mean_over_gpus(num_matched, device)
        poses = poses.flatten(0, 1)

        losses = dict(
            loss_cls=self.loss_cls(
                cls_scores.flatten(0, 1), labels, avg_factor=num_pos),
            loss_kpt=loss_kpt(
                poses,
                targets,
                weights,
                avg_factor=mean_over_gpus(weights.sum(), device)))
        img_inds = torch.arange(
            bs, device=device).repeat_interleave(num_query)
        keep = weights.sum(-1) > 0
        positives = dict(
            poses=poses[keep],
            targets=targets[keep],
            weights=weights[keep],
            areas=areas[keep],
            img_inds=img_inds[keep])
        if loss_oks is not None:
            sizes = image_sizes(img_metas, device)[positives['img_inds']]
            losses['loss_oks'] = self.oks_term(
                loss_oks, positives['poses'], positives['targets'],
                positives['weights'], positives['areas'], sizes, num_pos)
        return losses, num_matched, positives

    def encoder_losses(self, enc_cls, enc_poses, gt_labels, gt_keypoints,
                       gt_areas, img_metas):
        """Class-agnostic class and keypoint L1 losses of the proposals
        (enc_cls [bs, S, C], enc_poses [bs, S, 2K]): ``enc_loss_cls``,
        ``enc_loss_kpt``."""
        person_labels = [torch.zeros_like(labels) for labels in gt_labels]
        losses, _, _ = self.layer_losses(enc_cls, enc_poses, person_labels,
                                         gt_keypoints, gt_areas, img_metas,
                                         self.loss_kpt_rpn)
        return {'enc_' + name: value for name, value in losses.items()}

    def heatmap_loss(self, hm_logits, hm_padding, gt_keypoints, gt_bboxes):
        """Gaussian focal loss of the auxiliary keypoint heatmaps.

        Args:
            hm_logits (Tensor): [bs, K, h, w].
            hm_padding (Tensor): [bs, h, w] bool, True at padding (no
                negatives there).
            gt_keypoints (list[Tensor]): Per image [G, K, 3] pixels.
            gt_bboxes (list[Tensor]): Per image [G, 4] pixels.

        Returns:
            Tensor: Summed loss over the positive count (or over 1 without
            positives).
        """
        size = hm_logits.shape[-2:]
        targets = torch.stack([
            keypoint_heatmap_target(
                kpts.reshape(kpts.size(0), self.num_keypoints, 3), boxes,
                size, **self.heatmap_target)
            for kpts, boxes in zip(gt_keypoints, gt_bboxes)
        ])
        eps = self.heatmap_prob_eps
        probs = hm_logits.sigmoid().clamp(min=eps, max=1 - eps)
        valid = (~hm_padding)[:, None].expand_as(targets).to(probs.dtype)
        num_peaks = targets.eq(1).sum().clamp(min=1).item()
        return self.loss_hm(probs, targets, valid, avg_factor=num_peaks)

    def placeholder_positives(self, poses):
        """One zero-weight person in image 0 (``poses``: any tensor of the
        poses' dtype and device), so that the refine decoder stays in the
        graph (every parameter gets a gradient) when no query matched a
        person; the keys of :meth:`layer_losses`' positives, n = 1."""
        pose = poses.new_full((1, 2 * self.num_keypoints), 0.5)
        return dict(
            poses=pose,
            targets=torch.zeros_like(pose),
            weights=torch.zeros_like(pose),
            areas=pose.new_ones(1),
            img_inds=pose.new_zeros(1, dtype=torch.long))

    def refine_losses(self, refined, positives, img_metas):
        """L1 and OKS losses of every refine-decoder layer.

        Args:
            refined (Tensor): [num_refine_layers, n, K, 2] keypoints in
                [0, 1].
            positives (dict): The persons they refine (see
                :meth:`layer_losses`).
            img_metas (list[dict]): Per image, need ``img_shape``.

        Returns:
            dict: ``d{i}.loss_kpt_refine`` and ``d{i}.loss_oks_refine``.
        """
        device = refined.device
        targets, weights = positives['targets'], positives['weights']
        sizes = image_sizes(img_metas, device)[positives['img_inds']]
        num_visible = mean_over_gpus(weights.sum(), device)
        # Persons with a visible keypoint: the zero-weight placeholder used
        # when a process has no positives must not count as one.
        num_persons = mean_over_gpus((weights.sum(-1) > 0).sum(), device)
        losses = dict()
        for layer, keypoints in enumerate(refined):
            poses = keypoints.flatten(1)
            losses[f'd{layer}.loss_kpt_refine'] = self.loss_kpt_refine(
                poses, targets, weights, avg_factor=num_visible)
            losses[f'd{layer}.loss_oks_refine'] = self.oks_term(
                self.loss_oks_refine, poses, targets, weights,
                positives['areas'], sizes, num_persons)
        return losses
