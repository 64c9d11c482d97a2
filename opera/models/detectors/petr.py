"""PETR: end-to-end multi-person pose estimation with transformers."""
from mmdet.models.detectors import DETR
from mmdet.models.detectors.single_stage import SingleStageDetector

from opera.core.keypoint import bbox_kpt2result
from opera.core.keypoint.aug_merge import merge_aug_poses
from opera.core.visualization import imshow_det_keypoints, split_result
from ..builder import DETECTORS
from .query_group_epoch import QueryGroupEpochMixin

# test_cfg keys of the test-time augmentation (read here, not by the head).
AUG_TEST_CFG_KEYS = ('nms', 'score_thr')


@DETECTORS.register_module()
class PETR(QueryGroupEpochMixin, DETR):
    """Backbone + neck + :class:`PETRHead`; NMS-free pose estimation.

    Works with any batch size in training and testing (test-time
    augmentation included), on CPU and GPU. ``test_cfg`` holds the head's
    ``max_per_img`` and, for :meth:`aug_test`, ``nms`` and ``score_thr``.
    """

    def __init__(self,
                 backbone,
                 neck,
                 bbox_head,
                 train_cfg=None,
                 test_cfg=None,
                 init_cfg=None):
        head_test_cfg = None if test_cfg is None else {
            key: value
            for key, value in test_cfg.items() if key not in AUG_TEST_CFG_KEYS
        }
        # mmdet's DETR has no neck; its parent does.
        SingleStageDetector.__init__(
            self,
            backbone,
            neck,
            bbox_head,
            train_cfg=train_cfg,
            test_cfg=head_test_cfg,
            init_cfg=init_cfg)
        self.test_cfg = test_cfg

    def forward_train(self,
                      img,
                      img_metas,
                      gt_bboxes,
                      gt_labels,
                      gt_keypoints,
                      gt_areas,
                      gt_bboxes_ignore=None):
        """Losses of a batch.

        Args:
            img (Tensor): [bs, 3, H, W] normalised, padded images.
            img_metas (list[dict]): Per image: ``img_shape``, ... .
            gt_bboxes (list[Tensor]): [G, 4] person boxes (x1, y1, x2, y2).
            gt_labels (list[Tensor]): [G] class indices (0 = person).
            gt_keypoints (list[Tensor]): [G, K, 3] (x, y, v) in pixels.
            gt_areas (list[Tensor]): [G] person areas in pixels^2 of ``img``.
            gt_bboxes_ignore: Not supported.

        Returns:
            dict[str, Tensor]: Losses.
        """
        # Sets ``batch_input_shape`` in every meta.
        super(SingleStageDetector, self).forward_train(img, img_metas)
        return self.bbox_head.forward_train(
            self.extract_feat(img), img_metas, gt_bboxes, gt_labels,
            gt_keypoints, gt_areas, gt_bboxes_ignore)

    def simple_test(self, img, img_metas, rescale=False):
        """Persons of a batch without test-time augmentation.

        Returns:
            list[tuple[list[np.ndarray], list[np.ndarray]]]: Per image
            ``(bbox_results, keypoint_results)``, lists over classes of
            [m, 5] (x1, y1, x2, y2, score) and [m, K, 3] (x, y, score).
        """
        batch_input_shape = tuple(img.shape[-2:])
        for meta in img_metas:
            meta['batch_input_shape'] = batch_input_shape
        results = self.bbox_head.simple_test(
            self.extract_feat(img), img_metas, rescale=rescale)
        return [
            bbox_kpt2result(boxes, labels, keypoints,
                            self.bbox_head.num_classes)
            for boxes, labels, keypoints in results
        ]

    def forward_test(self, imgs, img_metas, **kwargs):
        """mmdet's, except that several augmentations go to
        :meth:`aug_test` for any batch size (mmdet asserts 1).

        Args:
            imgs (list[Tensor]): Per augmentation [bs, 3, H, W].
            img_metas (list[list[dict]]): Per augmentation, per image.
        """
        if isinstance(imgs, list) and len(imgs) > 1:
            if len(imgs) != len(img_metas):
                raise ValueError(f'{len(imgs)} augmentations of the images '
                                 f'but {len(img_metas)} of their metas')
            return self.aug_test(imgs, img_metas, **kwargs)
        return super().forward_test(imgs, img_metas, **kwargs)

    def aug_test(self, imgs, img_metas, rescale=False):
        """Persons of a batch from several runs, e.g. each image and its
        horizontal flip (``MultiScaleFlipAug(flip=True)``), as Opera's
        ``PETR.aug_test``.

        Every run's keypoints are mapped back to the original image (the
        flip undone, left and right keypoints swapped by the head's keypoint
        layout), the persons of all runs concatenated and an NMS
        (``test_cfg.nms``) keeps at most ``test_cfg.max_per_img``; see
        :func:`opera.core.keypoint.aug_merge.merge_aug_poses`.

        Args:
            imgs (list[Tensor]): Per run [bs, 3, H, W].
            img_metas (list[list[dict]]): Per run, per image.
            rescale (bool): Results in pixels of the original images
                (else of each run's resized image: one scale only).

        Returns:
            list[tuple[list[np.ndarray], list[np.ndarray]]]: As
            :meth:`simple_test`.
        """
        runs = []
        for img, metas in zip(imgs, img_metas):
            for meta in metas:
                meta['batch_input_shape'] = tuple(img.shape[-2:])
            runs.append(
                self.bbox_head.simple_test(
                    self.extract_feat(img), metas, rescale=False))
        results = []
        for img_id in range(len(img_metas[0])):
            boxes, labels, keypoints = merge_aug_poses(
                [run[img_id] for run in runs],
                [metas[img_id] for metas in img_metas],
                self.bbox_head.keypoint_layout, self.test_cfg, rescale)
            results.append(
                bbox_kpt2result(boxes, labels, keypoints,
                                self.bbox_head.num_classes))
        return results

    def show_result(self,
                    img,
                    result,
                    score_thr=0.3,
                    kpt_score_thr=0.3,
                    skeleton=None,
                    thickness=2,
                    radius=4,
                    font_size=13,
                    win_name='',
                    show=False,
                    wait_time=0,
                    out_file=None,
                    bbox_color=None,
                    text_color=None,
                    mask_color=None):
        """Draw persons (box, score, keypoints and limbs) over ``img``.

        Used by ``tools/test.py --show-dir``. Each person gets its own
        colour; see :func:`opera.core.visualization.imshow_det_keypoints`
        for the other arguments.

        Args:
            img (str | np.ndarray): The image, [H, W, 3] BGR.
            result (tuple): ``(bbox_results, keypoint_results)`` of one image
                as :meth:`simple_test` returns it.
            score_thr (float): Persons scoring at most this are not drawn.
            kpt_score_thr (float): Nor are keypoints scoring at most this.
            skeleton (list[list[int]], optional): Limbs; by default those
                of the head's keypoint layout.
            bbox_color, text_color, mask_color: Accepted for mmdet's
                ``show_result`` interface (its test loop passes the
                dataset palette); unused, as colours go by person.

        Returns:
            np.ndarray: The drawn image.
        """
        bboxes, labels, keypoints = split_result(result)
        if skeleton is None:
            skeleton = self.bbox_head.keypoint_layout.skeleton
        return imshow_det_keypoints(
            img,
            bboxes,
            labels,
            keypoints,
            class_names=self.CLASSES,
            score_thr=score_thr,
            kpt_score_thr=kpt_score_thr,
            skeleton=skeleton,
            thickness=thickness,
            radius=radius,
            font_size=font_size,
            show=show,
            win_name=win_name,
            wait_time=wait_time,
            out_file=out_file)
