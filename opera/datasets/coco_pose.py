"""COCO person keypoints as an mmdet dataset with keypoint evaluation."""
import contextlib
import io
from collections import OrderedDict

import mmcv
import numpy as np
from mmcv.utils import print_log
from xtcocotools.coco import COCO as XTCOCO
from xtcocotools.cocoeval import COCOeval as XTCOCOeval

from opera.core.keypoint import COCO, get_keypoint_layout
from .builder import DATASETS
from .coco import DEGENERATE_BOX, CocoDataset
from .data_checks import (check_number_lists, examples, fail_on_annotation,
                          keypoints_outside)

NO_KEYPOINTS = 'person without a labelled keypoint (PETR trains on none)'
NO_AREA = 'person with a non-positive area (OKS is undefined)'
KEYPOINT_OUTSIDE = ('person with a visible keypoint outside the image '
                    '(skip_outside_keypoints=True)')
# How far outside its image a visible keypoint may lie, as a fraction of the
# image's width / height (labels on the border, rounding). Farther out it is
# a conversion error: the normalised keypoint loss of such a target is
# about 100 times the usual one.
KEYPOINT_MARGIN = 0.1
RESULTS_FORMAT = (
    'one (bbox_results, keypoint_results) tuple per image, each a list over '
    'classes of [n, 5] arrays (x1, y1, x2, y2, score) and [n, K, 3] arrays '
    '(x, y, keypoint score)')


@DATASETS.register_module()
class CocoPoseDataset(CocoDataset):
    """COCO person keypoints (17 keypoints, one class 'person'), or any
    COCO-format keypoint dataset with its own keypoint layout.

    ``get_ann_info`` returns per image:

    - ``bboxes``: [n, 4] float32 ``(x1, y1, x2, y2)``;
    - ``labels``: [n] int64;
    - ``keypoints``: [n, K, 3] float32 ``(x, y, v)``;
    - ``areas``: [n] float32, the annotated instance area;
    - ``bboxes_ignore``: [m, 4] float32, the crowd regions.

    Persons with ``num_keypoints == 0`` or a non-positive area are skipped
    (they neither become targets nor ignore regions); crowd annotations
    become ignore regions; boxes narrower or lower than 1 pixel, or outside
    the image, are skipped. Skipped annotations are counted in the log. In
    training (``filter_empty_gt``) only images with at least one non-crowd
    person that is not skipped are kept. The annotation file and the image
    files are checked as in :class:`opera.datasets.CocoDataset`; keypoint
    lists must hold 3K finite numbers, and a visible keypoint far outside
    its image stops (or is skipped, see ``skip_outside_keypoints``).

    Every keypoint fact of the dataset (K, names, OKS sigmas of the
    keypoint AP, flip pairs for ``RandomFlip``, skeleton for drawing) is
    read from one :class:`~opera.core.keypoint.KeypointLayout`, the one
    compared with the model's before training and testing
    (``opera.apis.train.check_keypoint_layout``). Arguments that would restate
    one of them (``sigmas=``, ``flip_pairs=``, ...) are refused: define a
    layout instead (``docs/custom_datasets.md``).

    Args:
        keypoint_layout (str | dict, optional): The keypoints: a registered
            layout name ('coco', 'crowdpose', ...) or a dict defining one
            (see :mod:`opera.core.keypoint.layouts`). Defaults to
            ``KEYPOINT_LAYOUT``.
        skip_outside_keypoints (bool): A person with a visible keypoint
            farther than ``KEYPOINT_MARGIN`` (10 %) of the image size
            outside its image is skipped and counted in a warning; by
            default such a file stops with an error naming the annotation.
        *args, **kwargs: Those of :class:`opera.datasets.CocoDataset`.

    Raises:
        TypeError: For any of ``LAYOUT_FIELDS`` given as an argument.
    """

    CLASSES = ('person', )
    # Names, sigmas, flip pairs and skeleton: opera/core/keypoint/layouts.py.
    KEYPOINT_LAYOUT = COCO
    # Keypoint facts that only a layout states (refused as arguments).
    LAYOUT_FIELDS = ('keypoint_names', 'num_keypoints', 'sigmas',
                     'flip_pairs', 'skeleton')
    # xtcocotools evaluation: iou type, whether the OKS scale is the
    # annotated area (else 0.53 x box area), and the names of its stats.
    KEYPOINT_IOU_TYPE = 'keypoints'
    USE_AREA = True
    KEYPOINT_STATS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_m', 'mAP_l', 'AR',
                      'AR_50', 'AR_75', 'AR_m', 'AR_l')
    METRICS = ('keypoints', 'bbox')
    # Keys every annotation needs ('area' scales OKS).
    ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox', 'area', 'keypoints')
    # Skipping unlabelled persons is the PETR recipe, not a data problem.
    EXPECTED_SKIPS = (NO_KEYPOINTS, )

    def __init__(self,
                 *args,
                 keypoint_layout=None,
                 skip_outside_keypoints=False,
                 **kwargs):
        self.skip_outside_keypoints = skip_outside_keypoints
        self._keypoints_outside = set()  # annotation ids
        self.keypoint_layout = get_keypoint_layout(
            keypoint_layout or self.KEYPOINT_LAYOUT)
        restated = [key for key in self.LAYOUT_FIELDS if key in kwargs]
        if restated:
            ann_file = kwargs.get('ann_file', args[0] if args else None)
            raise TypeError(self._restated_message(restated, ann_file))
        super().__init__(*args, **kwargs)

    def _restated_message(self, keys, ann_file):
        """Why ``keys`` are refused and how to define a layout instead."""
        name = self.keypoint_layout.name
        return (f'{type(self).__name__} (ann_file={ann_file!r}) takes no '
                f'{", ".join(keys)}: a pose dataset reads every keypoint '
                f"fact from its keypoint_layout (here '{name}'), the one "
                "the model's is checked against. Define a layout with your "
                'values, a dict of name (a new one), keypoint_names, '
                'sigmas, flip_pairs and skeleton (print(opera.core.keypoint.'
                f"get_keypoint_layout('{name}').to_dict()) gives the "
                'current ones), and give it as keypoint_layout= to the '
                'datasets and to model.bbox_head (docs/custom_datasets.md)')

    @property
    def keypoint_names(self):
        """tuple[str]: The K keypoint names, in annotation order."""
        return self.keypoint_layout.keypoint_names

    @property
    def num_keypoints(self):
        """int: Keypoints per instance (K)."""
        return self.keypoint_layout.num_keypoints

    @property
    def sigmas(self):
        """np.ndarray: [K] float64 OKS sigmas of the keypoint AP."""
        return np.array(self.keypoint_layout.sigmas, dtype=np.float64)

    @property
    def flip_pairs(self):
        """list[list[int]]: ``[left, right]`` pairs a mirror swaps."""
        return [list(pair) for pair in self.keypoint_layout.flip_pairs]

    @property
    def skeleton(self):
        """list[list[int]]: Keypoint index pairs joined when drawing."""
        return [list(pair) for pair in self.keypoint_layout.skeleton]

    def pre_pipeline(self, results):
        """Add the keypoint/area field lists and the flip pairs."""
        super().pre_pipeline(results)
        results['keypoint_fields'] = []
        results['area_fields'] = []
        results['flip_pairs'] = self.flip_pairs

    def check_annotation_dict(self, data):
        """The checks of :class:`CocoDataset`, then the keypoint lists."""
        super().check_annotation_dict(data)
        check_number_lists(data.get('annotations', []), 'keypoints',
                           3 * self.num_keypoints, self.ann_file)
        self._check_keypoints_inside(data)

    def _check_keypoints_inside(self, data):
        """Raise AnnotationError at the first person with a visible keypoint
        outside its image (:func:`~opera.datasets.data_checks.
        keypoints_outside`), or, with ``skip_outside_keypoints``, note them
        all for :meth:`skip_reason`."""
        annotations = data.get('annotations', [])
        images = {image['id']: image for image in data['images']}
        found = keypoints_outside(annotations, images, self.num_keypoints,
                                  KEYPOINT_MARGIN)
        self._keypoints_outside = {annotations[i]['id'] for i, _ in found}
        if not found or self.skip_outside_keypoints:
            return
        index, keypoint = found[0]
        ann = annotations[index]
        x, y = ann['keypoints'][3 * keypoint:3 * keypoint + 2]
        image = images[ann['image_id']]
        name = self.keypoint_layout.keypoint_names[keypoint]
        fail_on_annotation(
            self.ann_file, index, ann,
            f'visible keypoint {keypoint} ({name}) at ({x}, {y}) is outside '
            f'its {image["width"]}x{image["height"]} image by more than '
            f'{KEYPOINT_MARGIN:.0%} of its size; {len(found)} annotation(s) '
            f'have such keypoints (ids '
            f'{examples(sorted(self._keypoints_outside))}). Fix them, or set '
            'skip_outside_keypoints=True in the dataset config to skip them '
            '(counted in a warning)')

    def skip_reason(self, ann, img_info):
        """Why ``_parse_ann_info`` drops ``ann``, or None (also for crowd
        and ``ignore`` annotations, which are dropped by design)."""
        if ann.get('ignore', False) or ann['category_id'] not in self.cat_ids:
            return None
        if self._xyxy_in_image(ann, img_info) is None:
            return DEGENERATE_BOX
        if ann.get('iscrowd', False):
            return None
        if self._num_keypoints(ann) == 0:
            return NO_KEYPOINTS
        if self._instance_area(ann) <= 0:
            return NO_AREA
        if ann['id'] in self._keypoints_outside:
            return KEYPOINT_OUTSIDE
        return None

    @staticmethod
    def _num_keypoints(ann):
        """Labelled keypoints of an annotation (its ``num_keypoints``)."""
        if 'num_keypoints' in ann:
            return ann['num_keypoints']
        return int(np.count_nonzero(np.asarray(ann['keypoints'])[2::3]))

    def _instance_area(self, ann):
        """Area used to scale OKS: the annotated ``area``."""
        return ann['area']

    @staticmethod
    def _xyxy_in_image(ann, img_info):
        """The ``[x1, y1, x2, y2]`` box of ``ann``, or None if degenerate.

        Degenerate: narrower or lower than 1 pixel, or outside the image.
        """
        x1, y1, w, h = ann['bbox']
        inter_w = min(x1 + w, img_info['width']) - max(x1, 0)
        inter_h = min(y1 + h, img_info['height']) - max(y1, 0)
        if w < 1 or h < 1 or inter_w <= 0 or inter_h <= 0:
            return None
        return [x1, y1, x1 + w, y1 + h]

    def _parse_ann_info(self, img_info, ann_info):
        """Turn the COCO annotations of one image into arrays.

        Args:
            img_info (dict): The image entry (``width``, ``height``, ...).
            ann_info (list[dict]): Its COCO annotations.

        Returns:
            dict: ``bboxes`` [n, 4], ``labels`` [n], ``keypoints``
            [n, K, 3], ``areas`` [n], ``bboxes_ignore`` [m, 4].
        """
        bboxes, labels, keypoints, areas, ignores = [], [], [], [], []
        for ann in ann_info:
            if (ann.get('ignore', False)
                    or ann['category_id'] not in self.cat_ids
                    or self.skip_reason(ann, img_info) is not None):
                continue
            box = self._xyxy_in_image(ann, img_info)
            if ann.get('iscrowd', False):
                ignores.append(box)
            else:
                bboxes.append(box)
                labels.append(self.cat2label[ann['category_id']])
                keypoints.append(ann['keypoints'])
                areas.append(self._instance_area(ann))
        return dict(
            bboxes=np.array(bboxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            keypoints=np.array(keypoints, dtype=np.float32).reshape(
                -1, self.num_keypoints, 3),
            areas=np.array(areas, dtype=np.float32),
            bboxes_ignore=np.array(ignores, dtype=np.float32).reshape(-1, 4))

    def _split_results(self, results):
        """Check ``results`` and split it into its bbox and keypoint parts.

        Args:
            results (list): Per image either ``(bbox_results,
                keypoint_results)`` or plain mmdet ``bbox_results``.

        Returns:
            tuple[list, list | None]: Per-image bbox results and keypoint
            results (None for plain bbox results).
        """
        if not isinstance(results, list) or len(results) != len(self):
            raise TypeError(f'expected a list of {len(self)} results, '
                            f'{RESULTS_FORMAT}')
        if all(self._is_bbox_result(r) for r in results):
            return results, None
        if not all(self._is_pose_result(r) for r in results):
            raise TypeError(f'unrecognised results: expected {RESULTS_FORMAT}'
                            ' (or plain mmdet bbox results for bbox AP)')
        return [r[0] for r in results], [r[1] for r in results]

    def _is_pose_result(self, result):
        """Whether ``result`` is a matching ``(bbox_results,
        keypoint_results)`` pair."""
        return (isinstance(result, (tuple, list)) and len(result) == 2
                and self._is_bbox_result(result[0])
                and self._is_keypoint_result(result[1], result[0]))

    def _is_bbox_result(self, result):
        """Whether ``result`` is a per-class list of [n, 5] arrays."""
        return (isinstance(result, (list, tuple))
                and len(result) == len(self.CLASSES) and all(
                    isinstance(a, np.ndarray) and a.ndim == 2
                    and a.shape[1] == 5 for a in result))

    def _is_keypoint_result(self, result, bbox_result):
        """Whether ``result`` is a per-class list of [n, K, 3] arrays that
        matches ``bbox_result`` instance by instance."""
        return (isinstance(result, (list, tuple))
                and len(result) == len(bbox_result) and all(
                    isinstance(a, np.ndarray)
                    and a.shape == (len(b), self.num_keypoints, 3)
                    for a, b in zip(result, bbox_result)))

    def _kpt2json(self, bbox_results, keypoint_results):
        """COCO keypoint result entries; the instance score is the box's."""
        entries = []
        for img_id, boxes_per_class, kpts_per_class in zip(
                self.img_ids, bbox_results, keypoint_results):
            for label, (boxes, kpts) in enumerate(
                    zip(boxes_per_class, kpts_per_class)):
                for box, kpt in zip(boxes, kpts):
                    entries.append(
                        dict(
                            image_id=img_id,
                            category_id=self.cat_ids[label],
                            keypoints=[float(x) for x in kpt.reshape(-1)],
                            score=float(box[4])))
        return entries

    def results2json(self, results, outfile_prefix):
        """Write ``{prefix}.bbox.json`` and ``{prefix}.keypoints.json``.

        Args:
            results (list): See :meth:`evaluate`; plain bbox results write
                the bbox file only.
            outfile_prefix (str): e.g. ``"work_dir/results"``.

        Returns:
            dict[str, str]: Files by kind: 'bbox', 'proposal' (the bbox
            file, as mmdet does) and 'keypoints'.
        """
        bbox_results, keypoint_results = self._split_results(results)
        bbox_file = f'{outfile_prefix}.bbox.json'
        mmcv.dump(self._det2json(bbox_results), bbox_file)
        result_files = dict(bbox=bbox_file, proposal=bbox_file)
        if keypoint_results is not None:
            result_files['keypoints'] = f'{outfile_prefix}.keypoints.json'
            mmcv.dump(
                self._kpt2json(bbox_results, keypoint_results),
                result_files['keypoints'])
        return result_files

    def evaluate(self,
                 results,
                 metric='keypoints',
                 logger=None,
                 jsonfile_prefix=None,
                 classwise=False,
                 proposal_nums=(100, 300, 1000),
                 iou_thrs=None,
                 metric_items=None):
        """COCO keypoint AP (xtcocotools) and/or mmdet's COCO bbox AP.

        Args:
            results (list): One ``(bbox_results, keypoint_results)`` per
                image: lists over classes of [n, 5] arrays ``(x1, y1, x2,
                y2, score)`` and [n, K, 3] arrays ``(x, y, keypoint score)``.
                Plain mmdet bbox results are accepted for 'bbox'.
            metric (str | list[str]): 'keypoints' and/or 'bbox'.
            logger (logging.Logger | str, optional): Where to print.
            jsonfile_prefix (str, optional): Keep the result files there;
                a temporary directory is used otherwise.
            classwise, proposal_nums, iou_thrs, metric_items: Passed to
                mmdet's bbox evaluation (its ``bbox_mAP`` is taken at
                ``proposal_nums[-1]`` detections per image).

        Returns:
            dict[str, float]: ``keypoints_mAP``, ``keypoints_mAP_50``, ...
            (unrounded) and mmdet's ``bbox_mAP``, ... entries.
        """
        self.check_metrics(metric)
        metrics = [metric] if isinstance(metric, str) else list(metric)
        bbox_results, keypoint_results = self._split_results(results)
        if 'keypoints' in metrics and keypoint_results is None:
            raise TypeError(f"metric 'keypoints' needs {RESULTS_FORMAT}; got "
                            'bbox results only')
        result_files, tmp_dir = self.format_results(results, jsonfile_prefix)
        eval_results = OrderedDict()
        for name in metrics:
            if name == 'keypoints':
                eval_results.update(
                    self._evaluate_keypoints(result_files['keypoints'],
                                             logger))
            else:
                eval_results.update(
                    self.evaluate_det_segm(bbox_results, result_files,
                                           self.coco, ['bbox'], logger,
                                           classwise, proposal_nums,
                                           iou_thrs, metric_items))
        if tmp_dir is not None:
            tmp_dir.cleanup()
        return eval_results

    def _evaluate_keypoints(self, keypoint_file, logger=None):
        """Run xtcocotools keypoint evaluation on a result file.

        Returns:
            dict[str, float]: ``keypoints_<stat>`` for ``KEYPOINT_STATS``
            plus ``keypoints_mAP_copypaste`` (the AP stats, 3 decimals).
        """
        print_log('\nEvaluating keypoints...', logger=logger)
        predictions = mmcv.load(keypoint_file)
        if not predictions:
            print_log('No keypoint results to evaluate.', logger=logger)
            return {f'keypoints_{k}': 0.0 for k in self.KEYPOINT_STATS}
        summary = io.StringIO()
        with self.file_client.get_local_path(self.ann_file) as ann_path, \
                contextlib.redirect_stdout(summary):
            coco_gt = XTCOCO(ann_path)
            coco_eval = XTCOCOeval(coco_gt, coco_gt.loadRes(predictions),
                                   self.KEYPOINT_IOU_TYPE, self.sigmas,
                                   self.USE_AREA)
            coco_eval.params.catIds = self.cat_ids
            coco_eval.params.imgIds = self.img_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        print_log('\n' + self._summary_lines(summary.getvalue()), logger)
        stats = [float(s) for s in coco_eval.stats]
        eval_results = OrderedDict(
            (f'keypoints_{k}', s) for k, s in zip(self.KEYPOINT_STATS, stats))
        eval_results['keypoints_mAP_copypaste'] = ' '.join(
            f'{s:.3f}' for k, s in zip(self.KEYPOINT_STATS, stats)
            if k.startswith('mAP'))
        return eval_results

    @staticmethod
    def _summary_lines(printout):
        """Keep the ``Average Precision/Recall`` lines of a printout."""
        return '\n'.join(line for line in printout.splitlines()
                         if line.lstrip().startswith('Average'))
