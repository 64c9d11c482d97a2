"""The losses of PETR / H-PETR, as one module built from its config.

Every set of pose predictions (each pose-decoder layer of every query group,
the encoder proposals) is matched to the ground truth by the Hungarian
assigner (a fixed-target group, such as pose denoising, comes with its
pairs) and trained with a focal class loss, an L1 loss on the visible
keypoint coordinates (normalised by the image size) and, for decoder layers,
an OKS loss in pixels. The heatmap branch trains on Gaussian keypoint
heatmaps. The refine decoder trains on the persons matched at the last
pose-decoder layer by the matching groups (:func:`refine_positives`): the
head runs it between :meth:`PETRCriterion.forward` (which returns those
persons) and :meth:`PETRCriterion.refine_losses`.
"""
import torch

from opera.core.bbox import build_assigner
from opera.core.keypoint import keypoint_heatmap_target
from ..builder import LOSSES, build_model
from ..utils.arguments import require_cfg_keys
from .set_criterion import SetCriterion, image_sizes, mean_over_gpus

BASE_CONFIG = 'configs/_base_/models/petr_r50.py'
LOSS_KEYS = ('loss_cls', 'loss_kpt', 'loss_oks', 'loss_kpt_rpn', 'loss_hm',
             'loss_kpt_refine', 'loss_oks_refine')


def refine_positives(last_positives, num_matching_groups):
    """The persons the refine decoder trains on: those of the matching
    groups, at the last pose-decoder layer.

    The fixed-target groups' (e.g. pose denoising's) are left out: at test
    the refine decoder refines what matching queries predict, while a
    denoising query starts near its person's pose and is not matched, and
    with DINO's ``dn_number`` its positives would outnumber the matched
    persons several times in the refine losses' normalisation.

    Args:
        last_positives (list[dict]): Per group, in query order (matching
            groups first), the last layer's positives of
            :meth:`PETRCriterion.layer_losses`.
        num_matching_groups (int): The matching groups among them.

    Returns:
        dict: The matching groups' positives concatenated.
    """
    matching = last_positives[:num_matching_groups]
    return {
        name: torch.cat([group[name] for group in matching])
        for name in matching[0]
    }


@LOSSES.register_module()
class PETRCriterion(SetCriterion):
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

    BASE_CONFIG = BASE_CONFIG

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

    def forward(self, outputs, targets, img_metas, query_groups):
        """Losses of every (decoder layer, query group), of the proposals and
        the heatmaps, and the persons the refine decoder trains on.

        Each query group is matched and normalised on its own at every
        decoder layer, against the ground truth repeated that group's K at
        that layer (see ``SetCriterion.query_group_losses``).

        Args:
            outputs (dict): Of ``PETRHead.forward`` in training:
                ``cls_scores`` [num_layers, bs, Q, C], ``poses``
                [num_layers, bs, Q, 2K] in [0, 1] of the image, ``enc_cls``
                [bs, S, C], ``enc_poses`` [bs, S, 2K], ``hm_logits``
                [bs, K, h, w], ``hm_padding`` [bs, h, w] bool.
            targets (dict): Per-image lists: ``gt_bboxes`` [G, 4] person
                boxes, pixels; ``gt_labels`` [G]; ``gt_keypoints``
                [G, K, 3] (x, y, v), pixels; ``gt_areas`` [G], pixels^2.
            img_metas (list[dict]): Per image, need ``img_shape``.
            query_groups (HybridQueryGroups): The groups of the Q queries.

        Returns:
            tuple[dict, dict]: The losses (and ``num_matched*``), and the
            persons matched at the last layer by every matching group, for
            the refine decoder (see :func:`refine_positives`; without any,
            the :meth:`placeholder_positives`).
        """
        losses, last_positives = self.query_group_losses(
            (outputs['cls_scores'], outputs['poses']), targets, img_metas,
            query_groups, outputs.get('fixed_groups', ()))
        positives = refine_positives(last_positives, len(query_groups.groups))
        losses.update(
            self.encoder_losses(outputs['enc_cls'], outputs['enc_poses'],
                                targets, img_metas))
        losses['loss_hm'] = self.heatmap_loss(outputs['hm_logits'],
                                              outputs['hm_padding'],
                                              targets['gt_keypoints'],
                                              targets['gt_bboxes'])
        if positives['poses'].size(0) == 0:
            positives = self.placeholder_positives(outputs['poses'])
        return losses, positives

    def assign(self, cls_score, pred, targets, img_meta, num_repeats):
        """Assign one image's queries (cls_score [Q, C], pred [Q, 2K]) to
        its persons."""
        return self.required_assigner().assign(
            cls_score,
            pred,
            targets['gt_labels'],
            targets['gt_keypoints'],
            targets['gt_areas'],
            img_meta,
            num_repeats=num_repeats)

    def pose_targets(self, poses, gt_labels, gt_keypoints, gt_areas,
                     img_meta, pos_inds, gt_inds):
        """One image's targets from its matched pairs.

        Args:
            poses (Tensor): [Q, 2K] poses normalised by the image (w, h).
            gt_labels (Tensor): [G].
            gt_keypoints (Tensor): [G, K, 3] (x, y, v) in pixels.
            gt_areas (Tensor): [G] areas in pixels^2.
            img_meta (dict): Needs ``img_shape``.
            pos_inds, gt_inds (Tensor): [n] matched queries, their persons.

        Returns:
            tuple[Tensor]: labels [Q] (``num_classes`` = background), pose
            targets [Q, 2K] normalised, pose weights [Q, 2K] (1 at the
            visible coordinates of matched queries), areas [Q].
        """
        num_query = poses.size(0)
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
        return labels, targets, weights, areas

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
                     targets,
                     img_metas,
                     matches,
                     proposals=False):
        """Losses of one set of predictions given its matched pairs.

        Args:
            cls_scores (Tensor): [bs, Q, C] logits.
            poses (Tensor): [bs, Q, 2K] normalised poses.
            targets (dict): The batch's ground truth (see :meth:`forward`).
            img_metas (list[dict]): Per image.
            matches (list[tuple[Tensor, Tensor]]): Per image, matched
                queries and their persons (see :meth:`match`).
            proposals (bool): The encoder proposals: the proposal keypoint
                loss (``loss_kpt_rpn``) and no OKS loss.

        Returns:
            tuple[dict, int, dict]: ``loss_cls``, ``loss_kpt``
            (``loss_oks``); the matched queries of this process; and the
            matched queries with a visible keypoint: ``poses``
            [n, 2K], ``targets`` [n, 2K], ``weights`` [n, 2K], ``areas`` [n],
            ``img_inds`` [n].
        """
        bs, num_query = cls_scores.shape[:2]
        per_image = [
            self.pose_targets(poses[img_id], targets['gt_labels'][img_id],
                              targets['gt_keypoints'][img_id],
                              targets['gt_areas'][img_id], img_metas[img_id],
                              pos_inds, gt_inds)
            for img_id, (pos_inds, gt_inds) in enumerate(matches)
        ]
        labels, pose_targets, weights, areas = (
            torch.cat(parts) for parts in zip(*per_image))
        device = cls_scores.device
        num_matched = sum(pos_inds.numel() for pos_inds, _ in matches)
        num_pos = mean_over_gpus(num_matched, device)
        poses = poses.flatten(0, 1)
        loss_kpt = self.loss_kpt_rpn if proposals else self.loss_kpt

        losses = dict(
            loss_cls=self.loss_cls(
                cls_scores.flatten(0, 1), labels, avg_factor=num_pos),
            loss_kpt=loss_kpt(
                poses,
                pose_targets,
                weights,
                avg_factor=mean_over_gpus(weights.sum(), device)))
        img_inds = torch.arange(
            bs, device=device).repeat_interleave(num_query)
        keep = weights.sum(-1) > 0
        positives = dict(
            poses=poses[keep],
            targets=pose_targets[keep],
            weights=weights[keep],
            areas=areas[keep],
            img_inds=img_inds[keep])
        if not proposals:
            sizes = image_sizes(img_metas, device)[positives['img_inds']]
            losses['loss_oks'] = self.oks_term(
                self.loss_oks, positives['poses'], positives['targets'],
                positives['weights'], positives['areas'], sizes, num_pos)
        return losses, num_matched, positives

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
