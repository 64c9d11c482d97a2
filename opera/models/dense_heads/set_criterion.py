"""What the detection and pose criteria share: matching split from scoring.

A criterion scores one query group's predictions at one layer in two steps:
:meth:`SetCriterion.match` pairs queries with ground-truth objects (the
Hungarian assigner, against the objects repeated K times) and
``layer_losses`` scores the predictions given those pairs. Groups whose
pairs come from elsewhere (queries made from the ground truth, queries
given by an auxiliary head with their targets) reuse the scoring alone.

The ground truth of a batch is one ``targets`` dict of per-image lists,
the same kind for both criteria: ``gt_bboxes`` [G, 4] (x1, y1, x2, y2)
pixels, ``gt_labels`` [G], and for poses ``gt_keypoints`` [G, K, 3]
(x, y, v) pixels and ``gt_areas`` [G] pixels^2.
"""
import torch
import torch.nn as nn
from mmdet.core import reduce_mean

from opera.core.bbox import matched_pairs


def image_sizes(img_metas, device):
    """[bs, 2] (w, h) of each image's valid area, in pixels."""
    return torch.tensor([meta['img_shape'][1::-1] for meta in img_metas],
                        dtype=torch.float32,
                        device=device)


def mean_over_gpus(count, device):
    """``count`` averaged over GPUs, at least 1 (a loss normaliser)."""
    count = torch.as_tensor(count, dtype=torch.float32, device=device)
    return reduce_mean(count).clamp(min=1).item()


def image_targets(targets, img_id):
    """One image's entries of the batch ``targets`` (a dict of lists)."""
    return {name: values[img_id] for name, values in targets.items()}


def class_agnostic(targets):
    """``targets`` with every label 0 (the encoder proposals are trained to
    find objects, whatever their class)."""
    return dict(
        targets,
        gt_labels=[torch.zeros_like(labels)
                   for labels in targets['gt_labels']])


class SetCriterion(nn.Module):
    """Matching and per-layer scoring of a set of predictions.

    Subclasses say how one image is assigned (:meth:`assign`) and how a
    layer is scored from the matched pairs (``layer_losses(cls_scores,
    preds, targets, img_metas, matches, proposals=False) -> (losses,
    num_matched, extra)``); ``proposals=True`` scores the encoder
    proposals, with the proposal losses where they differ.
    """

    #: Section of the base config that holds the recipe (for errors).
    BASE_CONFIG = None

    def required_assigner(self):
        """The assigner, or a clear error for a criterion built without."""
        if self.assigner is None:
            raise RuntimeError(
                f'{type(self).__name__} has no assigner, so it cannot '
                f'compute losses: give model.train_cfg.assigner (a '
                f'criterion built alone: assigner=...), see '
                f'{self.BASE_CONFIG}')
        return self.assigner

    def assign(self, cls_score, pred, targets, img_meta, num_repeats):
        """The assigner's result for one image (``targets``: its entries
        of the batch targets); see the subclasses."""
        raise NotImplementedError

    def match(self, cls_scores, preds, targets, img_metas, num_repeats):
        """Hungarian pairs of every image.

        Args:
            cls_scores (Tensor): [bs, Q, C] logits.
            preds (Tensor): [bs, Q, D] boxes or poses, normalised.
            targets (dict): The batch's ground truth (see module doc).
            img_metas (list[dict]): Per image, need ``img_shape``.
            num_repeats (int): Each object gets up to K queries.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image, matched query indices
            [n_i] and the indices [n_i] of their objects.
        """
        matches = []
        for img_id, img_meta in enumerate(img_metas):
            gt_labels = targets['gt_labels'][img_id]
            assign_result = self.assign(cls_scores[img_id], preds[img_id],
                                        image_targets(targets, img_id),
                                        img_meta, num_repeats)
            matches.append(matched_pairs(assign_result, gt_labels.size(0)))
        return matches

    def encoder_losses(self, enc_cls, enc_preds, targets, img_metas,
                       class_agnostic_proposals=True):
        """Losses of the encoder proposals (enc_cls [bs, S, C], enc_preds
        [bs, S, D]): matched once (K = 1) to the objects, as one class if
        ``class_agnostic_proposals`` (Deformable-DETR) or with their
        classes (DINO), named ``enc_*``."""
        if class_agnostic_proposals:
            targets = class_agnostic(targets)
        matches = self.match(enc_cls, enc_preds, targets, img_metas, 1)
        losses, _, _ = self.layer_losses(
            enc_cls, enc_preds, targets, img_metas, matches, proposals=True)
        return {'enc_' + name: value for name, value in losses.items()}
