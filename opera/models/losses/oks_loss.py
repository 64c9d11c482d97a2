"""OKS loss: pose regression through the COCO keypoint similarity."""
import torch
import torch.nn as nn
from mmdet.models.losses.utils import weighted_loss

from ..builder import LOSSES
from opera.core.keypoint import aligned_oks, resolve_sigmas


@weighted_loss
def oks_loss(pred, target, visible, areas, sigmas, linear=False, eps=1e-6):
    """Per-pose OKS loss, ``-log(OKS)`` or ``1 - OKS``.

    Args:
        pred (Tensor): Predicted poses (x1, y1, x2, y2, ...), shape [n, 2K],
            pixels.
        target (Tensor): Matched ground-truth poses, shape [n, 2K], pixels.
        visible (Tensor): Labelled flags of the targets (> 0), shape [n, K].
        areas (Tensor): Target areas, shape [n], pixels^2, positive.
        sigmas (Tensor): Per-keypoint OKS constants, shape [K].
        linear (bool): ``1 - OKS`` instead of ``-log(OKS)``.
        eps (float): Lower bound of OKS inside the log.

    Returns:
        Tensor: Shape [n]; 0 for a target with no labelled keypoint.
    """
    num_poses = pred.size(0)
    visible = visible > 0
    oks = aligned_oks(
        pred.reshape(num_poses, -1, 2), target.reshape(num_poses, -1, 2),
        visible, areas, sigmas)
    loss = 1 - oks if linear else -oks.clamp(min=eps).log()
    return torch.where(visible.any(-1), loss, loss.new_zeros(()))


@LOSSES.register_module()
class OKSLoss(nn.Module):
    """Loss on the object keypoint similarity of matched poses (PETR).

    Each pose contributes ``-log(max(OKS, eps))`` (or ``1 - OKS`` when
    ``linear``); see :mod:`opera.core.keypoint.oks` for OKS. Poses whose
    target has no labelled keypoint contribute 0. ``weight`` ([n]) and
    ``avg_factor`` act as in mmdet's losses: with ``reduction='mean'`` the
    weighted sum is divided by ``avg_factor`` (the head passes the number of
    positives) or else averaged over the n poses.

    Args:
        linear (bool): Use ``1 - OKS``. Default False.
        num_keypoints (int): K; without ``sigmas`` or ``keypoint_layout``
            picks the sigmas of the registered layout of K keypoints (17:
            COCO, 14: CrowdPose).
        eps (float): Lower bound of OKS inside the log.
        reduction (str): 'none', 'mean' or 'sum'.
        loss_weight (float): Factor on the loss.
        sigmas (Sequence[float], optional): Explicit per-keypoint constants.
        keypoint_layout (str | dict, optional): Take the sigmas of this
            layout (see :mod:`opera.core.keypoint.layouts`).
    """

    def __init__(self,
                 linear=False,
                 num_keypoints=17,
                 eps=1e-6,
                 reduction='mean',
                 loss_weight=1.0,
                 sigmas=None,
                 keypoint_layout=None):
        super().__init__()
        self.linear = linear
        self.sigmas = resolve_sigmas(num_keypoints, sigmas, keypoint_layout)
        self.eps = eps
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                pred,
                target,
                visible,
                areas,
                weight=None,
                avg_factor=None,
                reduction_override=None):
        """Weighted OKS loss.

        Args:
            pred (Tensor): Predicted poses, shape [n, 2K], pixels of the
                network input image.
            target (Tensor): Matched ground-truth poses, shape [n, 2K], same
                pixels.
            visible (Tensor): Labelled flags of the targets, shape [n, K].
            areas (Tensor): Target areas in the same pixel space (the head
                scales the annotation area by the resize factors), [n].
            weight (Tensor, optional): Per-pose weights, shape [n].
            avg_factor (float, optional): Divisor of the summed loss.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: Scalar loss, or shape [n] with reduction 'none'; a
            zero (still attached to ``pred``) when there is no pose.
        """
        assert reduction_override in (None, 'none', 'mean', 'sum')
        reduction = reduction_override or self.reduction
        if pred.size(0) == 0:
            return pred.sum() * 0
        return self.loss_weight * oks_loss(
            pred,
            target,
            weight,
            reduction=reduction,
            avg_factor=avg_factor,
            visible=visible,
            areas=areas,
            sigmas=pred.new_tensor(self.sigmas),
            linear=self.linear,
            eps=self.eps)
