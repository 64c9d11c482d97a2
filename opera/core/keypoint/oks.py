"""Object keypoint similarity (OKS), the COCO keypoint metric, in torch.

For a predicted pose ``p`` and a ground-truth pose ``g`` with K keypoints::

    OKS(p, g) = sum_k v_k * exp(-d_k^2 / (2 * A * (2 * sigma_k)^2)) / sum_k v_k

``d_k`` is the distance between keypoint ``k`` of ``p`` and of ``g``, ``A``
the area of ``g`` (COCO: segmentation area), ``sigma_k`` the per-keypoint
constant of the dataset and ``v_k`` is 1 for the labelled keypoints of ``g``
(visibility flag > 0) and 0 otherwise; ``(2 * sigma_k)^2`` is what the COCO
API calls the keypoint variance. Distances and areas must be measured in the
same pixel space, and areas must be positive. A ground truth without any
labelled keypoint gets OKS 0 with every prediction. The sigmas of a dataset
come from its keypoint layout (:mod:`opera.core.keypoint.layouts`).
"""
import torch


def _oks_from_squared_distances(squared_distances, visible, areas, sigmas):
    """OKS from keypoint distances; all inputs broadcast against each other.

    Args:
        squared_distances (Tensor): Shape [..., K], pixels^2.
        visible (Tensor): Labelled-keypoint mask (bool), shape [..., K].
        areas (Tensor): Ground-truth areas, shape [...], pixels^2.
        sigmas (Tensor): Shape [K].

    Returns:
        Tensor: OKS, shape [...].
    """
    variances = (2 * sigmas)**2
    similarity = torch.exp(-squared_distances /
                           (2 * areas.unsqueeze(-1) * variances))
    similarity = torch.where(visible, similarity, similarity.new_zeros(()))
    num_visible = visible.sum(-1).clamp(min=1)
    return similarity.sum(-1) / num_visible


def pairwise_oks(pred_keypoints, gt_keypoints, gt_visible, gt_areas, sigmas):
    """OKS between every predicted pose and every ground-truth pose.

    Args:
        pred_keypoints (Tensor): Shape [num_pred, K, 2], pixels.
        gt_keypoints (Tensor): Shape [num_gt, K, 2], pixels.
        gt_visible (Tensor): Labelled-keypoint mask (bool), [num_gt, K].
        gt_areas (Tensor): Shape [num_gt], pixels^2, positive.
        sigmas (Tensor): Shape [K].

    Returns:
        Tensor: Shape [num_pred, num_gt].
    """
    offsets = pred_keypoints[:, None] - gt_keypoints[None]
    squared_distances = (offsets**2).sum(-1)
    return _oks_from_squared_distances(squared_distances, gt_visible[None],
                                       gt_areas[None], sigmas)


def aligned_oks(pred_keypoints, gt_keypoints, gt_visible, gt_areas, sigmas):
    """OKS between the i-th predicted pose and the i-th ground-truth pose.

    Args:
        pred_keypoints (Tensor): Shape [n, K, 2], pixels.
        gt_keypoints (Tensor): Shape [n, K, 2], pixels.
        gt_visible (Tensor): Labelled-keypoint mask (bool), [n, K].
        gt_areas (Tensor): Shape [n], pixels^2, positive.
        sigmas (Tensor): Shape [K].

    Returns:
        Tensor: Shape [n].
    """
    squared_distances = ((pred_keypoints - gt_keypoints)**2).sum(-1)
    return _oks_from_squared_distances(squared_distances, gt_visible, gt_areas,
                                       sigmas)
