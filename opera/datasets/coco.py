"""mmdet's COCO dataset with its input checked (see docs/reliability.md)."""
import json
import logging
import os.path as osp
from collections import defaultdict

import mmcv
from mmdet.datasets import CocoDataset as MMDetCocoDataset

from opera.utils import get_root_logger
from .builder import DATASETS
from .data_checks import (AnnotationError, ImageFileError, check_coco_dict,
                          check_image_file, examples, missing_files)
from .pipelines import check_keypoint_pipeline

# Errors pycocotools and mmdet raise on a malformed file, without naming it.
LOADING_ERRORS = (AssertionError, AttributeError, KeyError, TypeError,
                  ValueError)
DEGENERATE_BOX = ('degenerate box (narrower or lower than 1 pixel, zero '
                  'area, or outside the image)')
# mmdet's _filter_imgs leaves smaller training images out.
MIN_IMAGE_SIZE = 32


@DATASETS.register_module()
class CocoDataset(MMDetCocoDataset):
    """COCO detection (mmdet's ``CocoDataset``) that checks its input.

    At construction, before any training:

    - an annotation file that is not JSON, lacks a section or a key, refers
      to an unknown image or category id, has a bbox that is not 4 finite
      numbers, or whose categories lack one of ``CLASSES`` raises
      :class:`~opera.datasets.data_checks.AnnotationError` naming the file,
      the entry and the problem;
    - for training (not ``test_mode``), missing image files raise
      :class:`~opera.datasets.data_checks.ImageFileError` listing them (a
      test-mode dataset may be built to evaluate saved results without its
      images; :meth:`check_image_files` checks it on request);
    - annotations that are skipped as mmdet does (degenerate boxes) are
      counted in the log;
    - in training, images without a usable annotation (none of the
      ``classes`` that is neither crowd nor skipped) are counted in the log
      and left out (``filter_empty_gt=True``, mmdet's default) or kept as
      images without objects (``filter_empty_gt=False``, the detection
      recipe, as the official H-Deformable-DETR code);
    - a dataset without images (none listed, or none left for training),
      or a training set without any usable annotation, raises
      ``AnnotationError`` saying why;
    - a pipeline that loads keypoints and then moves the image with a step
      that does not move them raises
      :class:`~opera.datasets.pipelines.KeypointPipelineError`.

    When an item is loaded, a missing, truncated or corrupt image (a JPEG is
    decoded strictly, see :func:`~opera.datasets.data_checks.
    check_image_file`) raises ``ImageFileError`` naming the file (in a
    data-loader worker, the error is re-raised in the main process with that
    message), or, in training with ``skip_corrupt_images``, is replaced by
    another image and counted in the log.

    Args:
        check_images (bool): Check the image files as above (local files
            only).
        skip_corrupt_images (bool): In training, skip an image file found
            broken when loaded instead of stopping (a warning names it and
            counts the files skipped so far by the process). Test-mode
            datasets always stop: each image needs a result.
        *args, **kwargs: Those of mmdet's ``CocoDataset``.
    """

    # Keys every annotation needs (mmdet reads 'area' to skip empty boxes).
    ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox', 'area')
    # Skip reasons (see skip_reason) that are part of the recipe, logged as
    # information; the others are data problems, logged as warnings.
    EXPECTED_SKIPS = ()
    # What evaluate() computes (mmdet's CocoDataset).
    METRICS = ('bbox', 'segm', 'proposal', 'proposal_fast')

    def __init__(self,
                 *args,
                 check_images=True,
                 skip_corrupt_images=False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_corrupt_images = skip_corrupt_images and not self.test_mode
        self._skipped_images = set()
        self._check_not_empty()
        if not self.test_mode:
            self._check_has_targets()
        check_keypoint_pipeline(self.pipeline, self.ann_file)
        backend = kwargs.get('file_client_args', {}).get('backend', 'disk')
        # Other backends (object stores) have no cheap existence check.
        self.check_images = check_images and backend == 'disk'
        # opera.LoadImageFromFile checks the file in its own decode.
        self.loader_checks_images = any(
            getattr(step, 'checks_image', False)
            for step in self.pipeline.transforms)
        if self.check_images and not self.test_mode:
            self.check_image_files()
        self._log_left_out_images()

    def load_annotations(self, ann_file):
        """mmdet's loading, with the file checked and problems named.

        Args:
            ann_file (str): Local path of ``self.ann_file``.

        Returns:
            list[dict]: The image infos.
        """
        try:
            data_infos = super().load_annotations(ann_file)
        except json.JSONDecodeError as error:
            raise AnnotationError(
                f'{self.ann_file}: not valid JSON ({error})') from error
        except LOADING_ERRORS as error:
            raise self._explain_loading_error(ann_file, error) from error
        self.check_annotation_dict(self.coco.dataset)
        self._log_skipped_annotations()
        return data_infos

    def _explain_loading_error(self, ann_file, error):
        """An AnnotationError naming the entry pycocotools or mmdet tripped
        over (found by checking the whole file), or else one quoting
        ``error``."""
        try:
            self.check_annotation_dict(mmcv.load(ann_file, file_format='json'))
        except AnnotationError as found:
            return found
        return AnnotationError(f'{self.ann_file}: cannot be read as COCO '
                               f'annotations ({error!r})')

    def check_annotation_dict(self, data):
        """Raise AnnotationError at the first problem of the loaded json."""
        check_coco_dict(data, self.ann_file, self.CLASSES, self.ANN_KEYS,
                        not self.test_mode)

    def skip_reason(self, ann, img_info):
        """Why ``_parse_ann_info`` drops ``ann`` (mmdet's rules), or None.

        Crowd annotations and those marked ``ignore`` are not counted: they
        are ignore regions by design.
        """
        if ann.get('ignore', False) or ann['category_id'] not in self.cat_ids:
            return None
        x1, y1, w, h = ann['bbox']
        inter_w = min(x1 + w, img_info['width']) - max(x1, 0)
        inter_h = min(y1 + h, img_info['height']) - max(y1, 0)
        if (inter_w <= 0 or inter_h <= 0 or ann['area'] <= 0 or w < 1
                or h < 1):
            return DEGENERATE_BOX
        return None

    def _log_skipped_annotations(self):
        """Log how many annotations are skipped, and why."""
        skipped = defaultdict(list)
        for ann in self.coco.anns.values():
            reason = self.skip_reason(ann, self.coco.imgs[ann['image_id']])
            if reason is not None:
                skipped[reason].append(ann['id'])
        logger = get_root_logger()
        for reason, ann_ids in skipped.items():
            level = (logging.INFO
                     if reason in self.EXPECTED_SKIPS else logging.WARNING)
            logger.log(
                level, f'{self.ann_file}: {len(ann_ids)} of '
                f'{len(self.coco.anns)} annotations skipped: {reason}; ids '
                f'{examples(ann_ids)}')

    def is_target(self, ann):
        """Whether ``ann`` becomes a training target: of the ``classes``,
        neither crowd nor ``ignore``, and not skipped (:meth:`skip_reason`).
        """
        return (ann['category_id'] in self.cat_ids
                and not ann.get('iscrowd', False)
                and not ann.get('ignore', False) and self.skip_reason(
                    ann, self.coco.imgs[ann['image_id']]) is None)

    def _filter_imgs(self, min_size=MIN_IMAGE_SIZE):
        """Indices of the training images: at least ``min_size`` pixels on
        each side and, with ``filter_empty_gt``, with a usable annotation.

        mmdet's filter keeps an image whose only annotations are crowd or
        skipped (it then trains as an image without objects); here "empty"
        means without a target (:meth:`is_target`) whatever the reason.
        Sets ``self.img_ids`` to the kept images' ids, and counts the
        images without a target (``images_without_targets``) and the small
        ones (``small_images``) for the log.
        """
        with_targets = {
            ann['image_id']
            for ann in self.coco.anns.values() if self.is_target(ann)
        }
        self.images_without_targets = sum(
            info['id'] not in with_targets for info in self.data_infos)
        self.small_images = sum(
            min(info['width'], info['height']) < min_size
            for info in self.data_infos)
        kept = [
            index for index, info in enumerate(self.data_infos)
            if min(info['width'], info['height']) >= min_size and (
                info['id'] in with_targets or not self.filter_empty_gt)
        ]
        self.img_ids = [self.data_infos[index]['id'] for index in kept]
        return kept

    def _check_has_targets(self):
        """Raise AnnotationError when no training image has a target:
        training would run with zero box losses and learn nothing."""
        if self.images_without_targets < len(self.coco.imgs):
            return
        raise AnnotationError(
            f'{self.ann_file}: none of its {len(self.coco.anns)} annotations '
            f'is usable for training (of the classes '
            f'{examples(self.CLASSES)}, not crowd, not skipped; the skipped '
            'ones are counted in the log above): nothing to train on')

    def _check_not_empty(self):
        """Raise AnnotationError when no image is left to train or test on
        (a sampler would otherwise fail without naming the file, or an
        iteration-based runner wait forever for a first batch)."""
        if self.data_infos:
            return
        images = list(self.coco.imgs.values())
        purpose = 'testing' if self.test_mode else 'training'
        if not images:
            raise AnnotationError(f'{self.ann_file}: "images" is empty: no '
                                  f'image for {purpose}')
        small = sum(
            min(image['width'], image['height']) < MIN_IMAGE_SIZE
            for image in images)
        raise AnnotationError(
            f'{self.ann_file}: none of its {len(images)} images can be used '
            f'for training: {small} are smaller than {MIN_IMAGE_SIZE} pixels '
            f'and {len(images) - small} have no usable annotation of the '
            f'classes {examples(self.CLASSES)} (the skipped annotations are '
            'counted in the log above); check the annotations and the '
            '`classes` of the dataset config')

    def _log_left_out_images(self):
        """Log how many training images have no target, and whether they
        are left out or kept (``filter_empty_gt``), and how many are too
        small."""
        if self.test_mode:
            return
        total = len(self.coco.imgs)
        logger = get_root_logger()
        if self.images_without_targets:
            fate = ('left out of training (filter_empty_gt=True)'
                    if self.filter_empty_gt else 'kept for training as '
                    'images without objects (filter_empty_gt=False)')
            logger.info(
                f'{self.ann_file}: {self.images_without_targets} of {total} '
                'images have no usable annotation of the classes (none, '
                f'crowd only or skipped only): {fate}')
        if self.small_images:
            logger.info(f'{self.ann_file}: {self.small_images} of {total} '
                        f'images are smaller than {MIN_IMAGE_SIZE} pixels: '
                        'left out of training')

    def check_metrics(self, metrics):
        """Raise KeyError if ``evaluate`` cannot compute one of ``metrics``
        (str or list of str), naming it and the metrics it can."""
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [name for name in names if name not in self.METRICS]
        if unknown:
            raise KeyError(
                f'{type(self).__name__} ({self.ann_file}) cannot evaluate '
                f'metric {", ".join(repr(name) for name in unknown)}: use '
                f'{", ".join(self.METRICS)}')

    def image_path(self, img_info):
        """Local path of an image."""
        if self.img_prefix:
            return osp.join(self.img_prefix, img_info['filename'])
        return img_info['filename']

    def check_image_files(self):
        """Raise ImageFileError listing the image files that are missing."""
        missing = missing_files(self.image_path(info)
                                for info in self.data_infos)
        if missing:
            raise ImageFileError(
                f'{self.ann_file}: {len(missing)} of {len(self.data_infos)} '
                f'image files are missing under img_prefix '
                f'{self.img_prefix!r}: {examples(missing)}')

    def prepare_train_img(self, idx):
        """mmdet's, after checking that the image file is complete; None
        (mmdet then draws another image) for a broken one that
        ``skip_corrupt_images`` skips."""
        try:
            self._check_image(idx)
            return super().prepare_train_img(idx)
        except ImageFileError as error:
            if not self.skip_corrupt_images:
                raise ImageFileError(
                    f'{error}. To skip such images in training, set '
                    'skip_corrupt_images=True in the dataset config'
                ) from error
            return self._skip_image(idx, error)

    def _skip_image(self, idx, error):
        """Log the first skip of image ``idx``; return None."""
        if idx in self._skipped_images:
            return None
        self._skipped_images.add(idx)
        if len(self._skipped_images) == len(self):
            raise ImageFileError(f'{self.ann_file}: all {len(self)} images '
                                 f'are broken, e.g. {error}')
        get_root_logger().warning(
            f'skipped: {error}; {len(self._skipped_images)} of {len(self)} '
            'image files skipped so far by this process '
            '(skip_corrupt_images=True)')
        return None

    def prepare_test_img(self, idx):
        """mmdet's, after checking that the image file is complete."""
        self._check_image(idx)
        return super().prepare_test_img(idx)

    def pre_pipeline(self, results):
        """mmdet's, plus ``image_context`` (for messages about the image)
        when ``results`` has an ``img_info``."""
        super().pre_pipeline(results)
        if 'img_info' in results:
            results['image_context'] = (
                f'image id {results["img_info"]["id"]} of {self.ann_file}')

    def _check_image(self, idx):
        """Raise ImageFileError if image ``idx`` is missing or broken (not
        when the pipeline's loader checks it while decoding)."""
        if self.check_images and not self.loader_checks_images:
            img_info = self.data_infos[idx]
            check_image_file(
                self.image_path(img_info),
                f'image id {img_info["id"]} of {self.ann_file}')
