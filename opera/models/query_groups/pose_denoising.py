"""Contrastive denoising for multi-person pose (PETR) as a fixed-target
group.

The group kind of DINO's box CDN (:mod:`.denoising`) on poses: every
training batch, each person gives, in each of G groups, a positive query
(its keypoints noised within the inner band, supervised by the person's
pose) and a negative one (noised between the inner and the outer band,
supervised as background). G = ``dn_number`` // (the batch's largest person
count), at least 1. The groups are blocks that do not see each other and
see the matching queries one way (:class:`.FixedTargetGroup`,
``num_blocks``); nothing of it runs at test.

Keypoint noise: each coordinate moves by ``keypoint_noise_scale`` x half
the person's box width (x) or height (y) x a signed magnitude in [0, 1)
for positives and [1, 2) for negatives (the unit of DINO's box-corner
noise), then the pose is clamped to [0, 1]. A keypoint that is not
labelled (v = 0; COCO stores it at (0, 0)) starts at its person's box
centre, the point from which a PETR proposal spreads all its keypoints,
and is noised like the others; it is not supervised (the criterion weighs
only visible keypoints, as for the matching queries). Labels are flipped
as in the box CDN (:func:`.noised_labels`; with one person class a flip
keeps the label).

Draws, on the persons of the batch concatenated image after image and
copied 2G times (even copies positive, odd negative): the label draws of
:func:`.noised_labels`, then keypoint signs [R, 2K] and magnitudes [R, 2K]
(R = 2 G N).
"""
import torch

from opera.core.bbox import normalised_cxcywh
from ..builder import MODELS
from .denoising import DenoisingQueries


def normalised_poses(keypoints, boxes, img_meta):
    """One image's poses as queries take them.

    Args:
        keypoints (Tensor): [G, K, 3] (x, y, v) pixels.
        boxes (Tensor): [G, 4] (cx, cy, w, h) in [0, 1] (the image's valid
            area).
        img_meta (dict): Needs ``img_shape``.

    Returns:
        Tensor: [G, 2K] (x1, y1, ..., xK, yK) in [0, 1]; keypoints with
        v = 0 at their person's box centre.
    """
    h, w = img_meta['img_shape'][:2]
    xy = keypoints[..., :2] / keypoints.new_tensor([w, h])
    labelled = keypoints[..., 2:] > 0
    centres = boxes[:, None, :2].expand_as(xy)
    return torch.where(labelled, xy, centres).flatten(1)


def noised_poses(poses, half_sizes, negative, noise_scale):
    """Poses [R, 2K] in [0, 1] with every keypoint moved.

    Each coordinate moves by ``noise_scale`` x ``half_sizes`` [R, 2] (half
    the person's box width for x, height for y) x a signed magnitude in
    [0, 1) for positive rows and [1, 2) for ``negative`` rows [R] bool; the
    result is clamped to [0, 1]. Draws: ``randint`` [R, 2K] (signs), then
    ``rand`` [R, 2K].
    """
    if noise_scale <= 0:
        return poses
    signs = torch.randint_like(poses, low=0, high=2,
                               dtype=torch.float32) * 2.0 - 1.0
    magnitudes = torch.rand_like(poses)
    magnitudes[negative] += 1.0
    scale = half_sizes.repeat(1, poses.size(-1) // 2) * noise_scale
    return (poses + magnitudes * signs * scale).clamp(min=0.0, max=1.0)


def batch_poses(targets, img_metas, num_keypoints):
    """The batch's persons, image after image: poses [N, 2K] (see
    :func:`normalised_poses`) and half box sizes [N, 2] (w / 2, h / 2), in
    [0, 1] of each image's valid area."""
    boxes = [
        normalised_cxcywh(box, meta['img_shape'])
        for box, meta in zip(targets['gt_bboxes'], img_metas)
    ]
    poses = [
        normalised_poses(
            kpts.reshape(kpts.size(0), num_keypoints, 3), box, meta)
        for kpts, box, meta in zip(targets['gt_keypoints'], boxes, img_metas)
    ]
    return torch.cat(poses), torch.cat(boxes)[:, 2:] / 2


@MODELS.register_module()
class PoseDenoisingQueries(DenoisingQueries):
    """Contrastive pose denoising queries (see the module docstring).

    Needs ``opera.PETRTransformer`` with ``given_pose_queries=True`` (the
    positional query of a given pose, :meth:`.PETRTransformer.
    queries_from_poses`).

    Args:
        num_classes, embed_dims, dn_number, label_noise_ratio, name,
            loss_weight: See :class:`.DenoisingQueries` (``name`` is the
            loss suffix, ``loss_kpt_dn``).
        keypoint_noise_scale (float): Keypoint noise, in half box sizes
            (the unit of DINO's ``box_noise_scale``, whose 0.4 is the
            default; not tuned for poses).
    """

    def __init__(self,
                 num_classes,
                 embed_dims=256,
                 dn_number=100,
                 keypoint_noise_scale=0.4,
                 label_noise_ratio=0.5,
                 name='dn',
                 loss_weight=1.0):
        super().__init__(num_classes, embed_dims, dn_number,
                         label_noise_ratio, name, loss_weight)
        if keypoint_noise_scale < 0:
            raise ValueError(f'keypoint_noise_scale must be >= 0, got '
                             f'{keypoint_noise_scale}')
        self.keypoint_noise_scale = keypoint_noise_scale

    reference_kind = 'pose'

    def batch_references(self, transformer, targets, img_metas):
        """The batch's poses [N, 2K] in [0, 1] and half box sizes [N, 2]
        (the noise unit)."""
        poses, half_sizes = batch_poses(targets, img_metas,
                                        transformer.num_keypoints)
        return poses, [half_sizes]

    def noised_references(self, references, noise_args, negative):
        half_sizes, = noise_args
        return noised_poses(references, half_sizes, negative,
                            self.keypoint_noise_scale)

    def queries_at(self, transformer, references, content):
        return transformer.queries_from_poses(references, content)

    def reference_dims(self, transformer):
        return 2 * transformer.num_keypoints
