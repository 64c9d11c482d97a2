"""Refuse pipelines that would move the image but not its keypoints.

mmdet's geometric steps (``Resize``, ``RandomFlip``, ``RandomCrop``,
``RandomAffine``, ``Expand``, ...) update the image, the boxes and the masks,
and know nothing of ``gt_keypoints``: after one of them the keypoints no
longer lie on the person, and training goes on, on wrong targets. The same
names are what every mmdet user writes, so a dataset checks its pipeline
when it is built.

The rule, applied to every step after one that loads keypoints (a step whose
``loads_keypoints`` is true, i.e. ``opera.LoadAnnotations`` with
``with_keypoint=True``):

- a keypoint-aware step (class attribute ``keypoint_aware = True``: opera's
  ``Resize``, ``RandomFlip``, ``RandomCrop``, ``RandomAffine``,
  ``DefaultFormatBundle``) is accepted;
- a step that moves no pixel and drops no instance is accepted: mmdet's
  photometric, padding, loading and formatting steps listed in
  :data:`GEOMETRY_KEEPING`, or a class with ``keeps_geometry = True``;
- any other step is refused, naming it and the opera step to use. Steps
  opera does not know are refused too: whether they move pixels or drop
  instances cannot be told from outside.

The wrappers ``AutoAugment`` and ``MultiScaleFlipAug`` are looked into.
Pipelines that load no keypoints (test pipelines: predictions are mapped
back by the scale factor) are not checked.
"""
from mmdet.datasets.pipelines import (AutoAugment, BrightnessTransform,
                                      Collect, ColorTransform, Compose,
                                      ContrastTransform, EqualizeTransform,
                                      ImageToTensor, LoadImageFromFile,
                                      LoadImageFromWebcam,
                                      LoadMultiChannelImageFromFiles,
                                      MultiScaleFlipAug, Normalize, Pad,
                                      PhotoMetricDistortion, ToDataContainer,
                                      ToTensor, Transpose, YOLOXHSVRandomAug)
from mmdet.datasets.pipelines.formatting import WrapFieldsToLists
from mmdet.datasets.pipelines.transforms import Corrupt

from ..builder import PIPELINES

# mmdet steps that change pixel values only (or pad at the bottom and
# right, which moves no coordinate), load inputs, or format results.
GEOMETRY_KEEPING = (
    BrightnessTransform, Collect, ColorTransform, ContrastTransform, Corrupt,
    EqualizeTransform, ImageToTensor, LoadImageFromFile, LoadImageFromWebcam,
    LoadMultiChannelImageFromFiles, Normalize, Pad, PhotoMetricDistortion,
    ToDataContainer, ToTensor, Transpose, WrapFieldsToLists,
    YOLOXHSVRandomAug)


class KeypointPipelineError(ValueError):
    """A pipeline step would leave the keypoints behind the image."""


def check_keypoint_pipeline(pipeline, where):
    """Raise if a step after keypoint loading does not keep them aligned.

    Args:
        pipeline (mmdet.datasets.pipelines.Compose): A dataset's pipeline.
        where (str): What the pipeline belongs to (the annotation file),
            for the message.

    Raises:
        KeypointPipelineError: Naming the step, where it is in the config,
            and the keypoint-aware opera step to use.
    """
    _check_steps(pipeline, 'pipeline', None, where)


def _check_steps(compose, path, loader, where):
    """Walk the steps of ``compose``; return the keypoint-loading step's
    path once one is found (``loader`` when it was found before)."""
    for index, step in enumerate(compose.transforms):
        step_path = f'{path}[{index}]'
        inner = _inner_pipelines(step, step_path)
        if inner:
            found = [_check_steps(c, p, loader, where) for c, p in inner]
            loader = next((f for f in found if f is not None), loader)
        elif loader is not None:
            _check_step(step, step_path, loader, where)
        elif getattr(step, 'loads_keypoints', False):
            loader = f'{step_path} ({type(step).__name__})'
    return loader


def _inner_pipelines(step, path):
    """``(Compose, path)`` of the steps a wrapper runs (none for others)."""
    if isinstance(step, AutoAugment):
        return [(policy, f'{path}.policies[{index}]')
                for index, policy in enumerate(step.transforms)]
    if isinstance(step, MultiScaleFlipAug):
        return [(step.transforms, f'{path}.transforms')]
    if isinstance(step, Compose):
        return [(step, path)]
    return []


def _check_step(step, path, loader, where):
    """Raise unless ``step`` moves keypoints or keeps the geometry."""
    cls = type(step)
    if (getattr(cls, 'keypoint_aware', False)
            or getattr(cls, 'keeps_geometry', False)
            or cls in GEOMETRY_KEEPING):
        return
    replacement = keypoint_aware_replacement(cls)
    if replacement is None:
        advice = (f'opera has no keypoint-aware {cls.__name__}: remove the '
                  'step, or give its class keypoint_aware = True once it '
                  'moves gt_keypoints with the image (keeps_geometry = True '
                  'if it moves no pixel and drops no instance)')
    else:
        advice = f"use type='{replacement}' instead"
    raise KeypointPipelineError(
        f'{where}: {path} {cls.__module__}.{cls.__name__} comes after '
        f'{loader} loads keypoints, but does not update them: it may move '
        'the image, boxes or instances and leave gt_keypoints where they '
        f'were, so the targets would be wrong; {advice}')


def keypoint_aware_replacement(cls):
    """The registered name (``opera.X``) of opera's keypoint-aware version
    of the pipeline step ``cls`` (a subclass, or a class of the same name),
    or None."""
    for name, candidate in PIPELINES.module_dict.items():
        if getattr(candidate, 'keypoint_aware', False) and (
                issubclass(candidate, cls)
                or candidate.__name__ == cls.__name__):
            return f'{PIPELINES.scope}.{name}'
    return None
