"""Pose matching costs of PETR: keypoint L1 and negative OKS."""
from opera.core.keypoint import pairwise_oks, resolve_sigmas

from ..builder import MATCH_COST


@MATCH_COST.register_module()
class KptL1Cost:
    """L1 distance over the labelled keypoints of each ground truth.

    ``cost[q, g] = weight * sum_{k labelled in g} (|dx_qgk| + |dy_qgk|)
    / max(2 * n_g, 1)`` with ``n_g`` the number of labelled keypoints (v > 0)
    of ground truth ``g``, i.e. the mean absolute error per labelled
    coordinate. A ground truth without labelled keypoints costs 0.

    Args:
        weight (float): Factor on the cost.
    """

    def __init__(self, weight=1.0):
        self.weight = weight

    def __call__(self, kpt_pred, gt_keypoints):
        """Pairwise cost.

        Args:
            kpt_pred (Tensor): Predicted poses (x1, y1, ..., xK, yK),
                shape [num_query, 2K], normalised by the image (w, h).
            gt_keypoints (Tensor): Ground-truth (x, y, v), shape
                [num_gt, K, 3], x and y normalised like ``kpt_pred``.

        Returns:
            Tensor: Shape [num_query, num_gt].
        """
        num_query, num_keypoints = kpt_pred.size(0), gt_keypoints.size(1)
        pred = kpt_pred.reshape(num_query, 1, num_keypoints, 2)
        errors = (pred - gt_keypoints[None, ..., :2]).abs().sum(-1)
        labelled = gt_keypoints[..., 2] > 0
        errors = errors.masked_fill(~labelled[None], 0)
        num_coords = (2 * labelled.sum(-1)).clamp(min=1)
        return self.weight * errors.sum(-1) / num_coords


@MATCH_COST.register_module()
class OksCost:
    """Negative object keypoint similarity, ``cost = -weight * OKS``.

    OKS as in :mod:`opera.core.keypoint.oks`: pixel distances, the
    ground-truth area in the same pixels, the ground truth's labelled
    keypoints only (a ground truth without any costs 0).

    Args:
        weight (float): Factor on the cost.
        num_keypoints (int): K; without ``sigmas`` or ``keypoint_layout``
            picks the sigmas of the registered layout of K keypoints (17:
            COCO, 14: CrowdPose).
        sigmas (Sequence[float], optional): Explicit per-keypoint constants.
        keypoint_layout (str | dict, optional): Take the sigmas of this
            layout (see :mod:`opera.core.keypoint.layouts`).
    """

    def __init__(self,
                 weight=1.0,
                 num_keypoints=17,
                 sigmas=None,
                 keypoint_layout=None):
        self.weight = weight
        self.sigmas = resolve_sigmas(num_keypoints, sigmas, keypoint_layout)

    def __call__(self, kpt_pred, gt_keypoints, gt_areas):
        """Pairwise cost.

        Args:
            kpt_pred (Tensor): Predicted poses (x1, y1, ..., xK, yK),
                shape [num_query, 2K], pixels.
            gt_keypoints (Tensor): Ground-truth (x, y, v), shape
                [num_gt, K, 3], pixels.
            gt_areas (Tensor): Ground-truth areas, shape [num_gt],
                pixels^2, positive.

        Returns:
            Tensor: Shape [num_query, num_gt].
        """
        num_query, num_keypoints = kpt_pred.size(0), gt_keypoints.size(1)
        oks = pairwise_oks(
            kpt_pred.reshape(num_query, num_keypoints, 2),
            gt_keypoints[..., :2], gt_keypoints[..., 2] > 0, gt_areas,
            kpt_pred.new_tensor(self.sigmas))
        return -self.weight * oks
