"""Gaussian keypoint heatmaps: the targets of PETR's auxiliary heatmap loss.

The loss itself is mmdet's ``GaussianFocalLoss`` (CornerNet focal loss with
exponents 2 and 4); the peaks are drawn with mmdet's ``gen_gaussian_target``.
"""
import torch
from mmdet.models.utils.gaussian_target import gen_gaussian_target


def centernet_gaussian_radius(heights, widths, min_overlap=0.9):
    """Gaussian radius of boxes in the form of CenterNet's code, used by PETR.

    It keeps the three quadratics of CornerNet's radius (one corner inside,
    both inside, both outside the box) but, like CenterNet's released code,
    takes ``(b + sqrt(b^2 - 4ac)) / 2`` for each of them. The result is
    larger than the corrected ``mmdet.models.utils.gaussian_radius`` (a
    40 x 20 box at overlap 0.9: about 2.6 against 0.7), so PETR's heatmap
    targets need this form.

    Args:
        heights (Tensor): Box heights, shape [n].
        widths (Tensor): Box widths, shape [n].
        min_overlap (float): Overlap that defines the radius.

    Returns:
        Tensor: Radii, shape [n], same unit as the box sides.
    """
    sides = heights + widths
    areas = heights * widths
    quadratics = [
        (1, sides, areas * (1 - min_overlap) / (1 + min_overlap)),
        (4, 2 * sides, areas * (1 - min_overlap)),
        (4 * min_overlap, -2 * min_overlap * sides, areas * (min_overlap - 1)),
    ]
    radii = [(b + torch.sqrt(b**2 - 4 * a * c)) / 2 for a, b, c in quadratics]
    return torch.stack(radii).min(dim=0).values


def keypoint_heatmap_target(gt_keypoints,
                            gt_bboxes,
                            heatmap_size,
                            stride=8,
                            min_overlap=0.9,
                            max_radius=3):
    """Gaussian heatmap target of one image, one channel per keypoint.

    Every labelled keypoint (v > 0) puts a peak of 1 at the cell
    ``floor((x, y) / stride)`` with radius
    ``clamp(floor(centernet_gaussian_radius(box / stride)), 0, max_radius)``
    of its person box; overlapping peaks keep the maximum. Keypoints whose
    cell lies outside the heatmap are skipped.

    Args:
        gt_keypoints (Tensor): Shape [num_gt, K, 3], (x, y, v) in pixels of
            the network input image.
        gt_bboxes (Tensor): Person boxes (x1, y1, x2, y2), shape [num_gt, 4],
            same pixels.
        heatmap_size (tuple[int]): (h, w) of the heatmap.
        stride (int): Pixels per heatmap cell.
        min_overlap (float): Overlap of the Gaussian radius.
        max_radius (int): Largest radius in cells.

    Returns:
        Tensor: Shape [K, h, w], values in [0, 1].
    """
    height, width = heatmap_size
    num_keypoints = gt_keypoints.size(1)
    heatmap = gt_keypoints.new_zeros((num_keypoints, height, width))
    boxes = gt_bboxes / stride
    radii = centernet_gaussian_radius(boxes[:, 3] - boxes[:, 1],
                                      boxes[:, 2] - boxes[:, 0], min_overlap)
    radii = radii.floor().clamp(0, max_radius).long().tolist()
    cells = (gt_keypoints[..., :2] / stride).floor().long()
    drawn = (gt_keypoints[..., 2]
             > 0) & (cells >= 0).all(-1) & (cells[..., 0] < width) & (
                 cells[..., 1] < height)
    # One device-to-host copy of all cells, not one per keypoint.
    host_cells = cells.tolist()
    for gt_ind, kpt_ind in drawn.nonzero().tolist():
        gen_gaussian_target(heatmap[kpt_ind], host_cells[gt_ind][kpt_ind],
                            radii[gt_ind])
    return heatmap
