"""The extension points of the layout: a new group kind is one class plus a
config, a criterion option switches the class targets, old registered names
still build, and the packages import only downwards."""
import ast
import math
from collections import Counter
import os
import os.path as osp

import pytest
import torch
from conftest import REPO_ROOT, detection_inputs, targets_of
from mmcv import Config
from test_co_dino import quality_focal_by_hand
from mmcv.cnn.bricks.registry import ATTENTION as MMCV_ATTENTION

import opera  # noqa: F401
from opera.models import MODELS, build_detector
from opera.models.attention import PoseDeformableAttention
from opera.models.criteria import DETRCriterion
from opera.models.criteria.class_targets import ClassTargets
from opera.models.dense_heads import DETRDetectionHead
from opera.models.detectors import DETRDetector
from opera.models.query_groups import CoDETRAuxiliaryQueries
from opera.models.query_groups.fixed_target_groups import (
    FixedTargetGroup, FixedTargetGroupMaker)

pytestmark = pytest.mark.usefixtures('single_thread')
TINY = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'
QFL = dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0,
           loss_weight=1.0)
SHIFT = 0.05


@MODELS.register_module(force=True)
class ShiftedBoxQueries(FixedTargetGroupMaker):
    """A group kind written for this test: one query per object at its box
    moved right by ``SHIFT`` (of the image width), no content, supervised
    by its object."""

    reference_kind = 'box'

    def __init__(self, num_classes, embed_dims, name='shift'):
        super().__init__()
        self.embed_dims = embed_dims
        self.name = name

    def forward(self, transformer, memory, levels, targets, img_metas):
        self.check_transformer(transformer)
        boxes = targets['gt_bboxes']
        num = max(box.size(0) for box in boxes)
        if num == 0:
            return None
        reference = memory.new_full((len(boxes), num, 4), 0.5)
        for index, (box, meta) in enumerate(zip(boxes, img_metas)):
            h, w = meta['img_shape'][:2]
            cx = (box[:, 0] + box[:, 2]) / (2 * w) + SHIFT
            cy = (box[:, 1] + box[:, 3]) / (2 * h)
            reference[index, :box.size(0)] = torch.stack(
                [cx, cy, (box[:, 2] - box[:, 0]) / w,
                 (box[:, 3] - box[:, 1]) / h], 1).clamp(0, 1)
        content = memory.new_zeros(len(boxes), num, self.embed_dims)
        queries = transformer.queries_from_boxes(reference, content)
        matches = [(torch.arange(b.size(0)), torch.arange(b.size(0)))
                   for b in boxes]
        return FixedTargetGroup(queries, matches, self.name)


def tiny(**head):
    cfg = Config.fromfile(TINY)
    for key, value in head.items():  # replaced, not merged
        cfg.model.bbox_head[key] = value
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    return model


def test_a_new_group_kind_is_one_class_and_a_config():
    model = tiny(fixed_target_groups=[dict(type='opera.ShiftedBoxQueries')])
    inputs = detection_inputs([(96, 128), (64, 96)], num_boxes=(3, 2))
    decoded = []
    decoder = model.bbox_head.transformer.forward_decoder

    def record(queries, *args, **kwargs):
        decoded.append(queries.reference.clone())
        return decoder(queries, *args, **kwargs)

    model.bbox_head.transformer.forward_decoder = record
    losses = model.forward_train(**inputs)
    # 20 + 40 matching queries, then 3 of the new group (the batch's most).
    reference = decoded[0]
    assert reference.shape == (2, 63, 4)
    box = inputs['gt_bboxes'][1][0]
    assert reference[1, 60, 0].item() == pytest.approx(
        (box[0] + box[2]).item() / 192 + SHIFT, abs=1e-6)
    for name in ('loss_cls_shift', 'loss_bbox_shift', 'd0.loss_iou_shift'):
        assert torch.isfinite(losses[name])
    assert losses['num_matched_shift'].item() == 5  # 3 + 2 objects
    model.eval()
    with torch.no_grad():
        model.simple_test(inputs['img'], inputs['img_metas'])
    assert decoded[-1].shape[1] == 20  # at test, no group is made


def test_a_maker_of_another_reference_kind_or_no_maker_is_refused():

    @MODELS.register_module(force=True)
    class PoseOnly(ShiftedBoxQueries):
        reference_kind = 'pose'

    model = tiny(fixed_target_groups=[dict(type='opera.PoseOnly')])
    inputs = detection_inputs([(64, 64)], num_boxes=(2, ))
    with pytest.raises(TypeError, match='queries_from_poses'):
        model.forward_train(**inputs)
    @MODELS.register_module(force=True)
    class NotAMaker(torch.nn.Module):

        def __init__(self, num_classes, embed_dims):
            super().__init__()

    with pytest.raises(TypeError, match='not a group maker'):
        tiny(fixed_target_groups=[dict(type='opera.NotAMaker')])


def criterion(class_targets):
    return DETRCriterion(
        num_classes=3,
        loss_cls=QFL,
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        class_targets=class_targets)


def test_align_detr_class_targets_by_hand():
    """One matched query (IoU 0.5 with its object, logit 0.5 for its class)
    and one background query: Align-DETR's target t = s^a IoU^(1-a)."""
    logits = torch.tensor([[[1.0, -2.0, 0.5], [-1.0, 0.3, -0.7]]])
    boxes = torch.tensor([[[.5, .5, .2, .2], [.2, .2, .1, .1]]])
    targets = dict(gt_bboxes=[torch.tensor([[30., 40., 70., 60.]])],
                   gt_labels=[torch.tensor([2])])
    metas = [dict(img_shape=(100, 100, 3))]
    matches = [(torch.tensor([0]), torch.tensor([0]))]
    s = 1 / (1 + math.exp(-0.5))
    expected_target = {'iou': 0.5, 'align': s**0.25 * 0.5**0.75}
    for kind, target in expected_target.items():
        align = criterion(dict(type=kind))
        labels, scores = align.class_targets(
            logits[0], boxes[0], torch.tensor([[.5, .5, .4, .2], [0] * 4]),
            torch.tensor([2, 3]), 3)
        assert labels.tolist() == [2, 3]
        assert scores.tolist() == pytest.approx([target, 0.0])
        losses, _, _ = align.layer_losses(logits, boxes, targets, metas,
                                          matches)
        expected = quality_focal_by_hand(logits[0], (0, 2), target)
        assert losses['loss_cls'].item() == pytest.approx(
            expected.item(), rel=1e-5)


def test_class_targets_are_a_config_option_of_the_head():
    """The same model with the class-target rule switched in the config:
    equal until the class loss, which differs."""
    inputs = detection_inputs([(96, 128), (64, 96)], num_boxes=(3, 2))
    values = {}
    for kind in ('iou', 'align'):
        model = tiny(loss_cls=QFL,
                     criterion=dict(class_targets=dict(type=kind)))
        assert model.bbox_head.criterion.class_targets.type == kind
        torch.manual_seed(0)
        values[kind] = model.forward_train(**inputs)
    assert torch.equal(values['iou']['loss_bbox'],
                       values['align']['loss_bbox'])
    assert not torch.equal(values['iou']['loss_cls'],
                           values['align']['loss_cls'])


def test_class_targets_and_head_values_are_checked():
    with pytest.raises(ValueError, match='class_targets'):
        criterion(None)  # a QualityFocalLoss needs target scores
    with pytest.raises(ValueError, match="type='align'"):
        ClassTargets(type='iou', alpha=0.5)
    with pytest.raises(TypeError, match=r"unknown keys \['alhpa'\]"):
        criterion(dict(type='align', alhpa=0.5))
    with pytest.raises(ValueError,
                       match='criterion.num_classes is set by the head'):
        tiny(criterion=dict(num_classes=3))


def test_assign_hook_sees_every_assignment():
    model = tiny()
    inputs = detection_inputs([(64, 64), (64, 64)], num_boxes=(2, 1))
    seen = []

    class Record:

        def __init__(self, num_queries, num_repeats):
            seen.append((num_queries, num_repeats))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    head = model.bbox_head
    handle = head.criterion.register_assign_hook(Record)
    head.loss(head(model.extract_feat(inputs['img']), inputs['img_metas'],
                   targets_of(inputs)), targets_of(inputs),
              inputs['img_metas'])
    # Per image: the encoder proposals (all S of them, K = 1), then 2
    # layers of 20 one-to-one queries (K = 1) and 2 of 40 one-to-many (K =
    # 2).
    num_proposals = seen[0][0]
    assert num_proposals > 40
    assert Counter(seen) == {(num_proposals, 1): 2, (20, 1): 4, (40, 2): 4}
    handle.remove()
    seen.clear()
    head.criterion.match(torch.zeros(1, 20, 80), torch.rand(1, 20, 4),
                         dict(gt_bboxes=[torch.tensor([[0., 0., 8., 8.]])],
                              gt_labels=[torch.tensor([1])]),
                         inputs['img_metas'][:1], 1)
    assert seen == []


def test_old_registered_names_build_the_renamed_modules():
    assert MODELS.get('HybridDeformableDETRHead') is DETRDetectionHead
    assert MODELS.get('DeformableDETR') is DETRDetector
    assert MODELS.get('CoDETRAuxiliaryHeads') is CoDETRAuxiliaryQueries
    assert MMCV_ATTENTION.get('PoseDeformableAttention') is \
        PoseDeformableAttention
    assert MMCV_ATTENTION.get('opera.PoseDeformableAttention') is \
        PoseDeformableAttention


def imported_modules(path, module):
    """The absolute names of the modules ``path`` (module ``module``)
    imports from opera."""
    tree = ast.parse(open(path).read())
    package = module.split('.')
    if not path.endswith('__init__.py'):
        package = package[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names.append('.'.join(base + ([node.module]
                                              if node.module else [])))
            else:
                names.append(node.module)
    return [name for name in names if name.split('.')[0] == 'opera']


def opera_modules(folder):
    root = osp.join(REPO_ROOT, 'opera', folder)
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(dirpath, name)
                module = osp.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.')
                yield path, module.replace('.__init__', '')


@pytest.mark.parametrize('folder, forbidden', [
    ('core', ('opera.models', 'opera.apis', 'opera.datasets',
              'opera.converters')),
    ('utils', ('opera.models', 'opera.apis', 'opera.datasets',
               'opera.converters')),
    ('datasets', ('opera.models', 'opera.apis', 'opera.converters')),
    ('models', ('opera.apis', 'opera.converters')),
])
def test_packages_import_only_downwards(folder, forbidden):
    wrong = [(module, name) for path, module in opera_modules(folder)
             for name in imported_modules(path, module)
             if name.startswith(forbidden)]
    assert wrong == []


def test_models_utils_holds_only_small_utilities():
    sizes = {
        module: len(open(path).read().splitlines())
        for path, module in opera_modules('models/utils')
    }
    assert len(sizes) <= 5 and max(sizes.values()) < 150, sizes
