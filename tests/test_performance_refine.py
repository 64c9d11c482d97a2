"""PETR's refine decoder projects each image's memory once (issue 19).

Before, every person's K queries were batched with a copy of its image's
memory (``memory[img_inds]``), so each refine layer's value projection ran
over the whole memory once per person. Now the cross-attention regroups the
persons by image (``opera.models.transformers.PerImageQueries``). The old
formulation is rebuilt here (:func:`forward_refine_per_person`) as the
reference: outputs and gradients must be the same up to float rounding.
"""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmcv import Config
from torch.utils.flop_counter import FlopCounterMode

from conftest import REPO_ROOT, pose_inputs
from opera.models import build_detector
from opera.models.transformers import PerImageQueries
from opera.models.transformers.deformable_encoder import flatten_levels
from test_petr import build_tiny, total_loss

pytestmark = pytest.mark.usefixtures('single_thread')
PETR_R50 = osp.join(REPO_ROOT, 'configs', 'petr', 'petr_r50_16x2_100e_coco.py')
H_PETR_R50 = osp.join(REPO_ROOT, 'configs', 'petr',
                      'h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py')
TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')
# fp32 rounding of the same sums computed in another order / blocking.
TOLERANCES = dict(rtol=1e-4, atol=1e-5)


def forward_refine_per_person(transformer, memory, levels, poses, img_inds,
                              refine_branches):
    """The refine decoder as it was: the memory, mask and valid ratios of
    each person's image copied per person, value projection per person."""
    num_persons = poses.size(0)
    query_pos, query = transformer.refine_query_embedding.weight.split(
        transformer.embed_dims, dim=1)
    _, keypoints = transformer.refine_decoder(
        query=query.unsqueeze(1).expand(-1, num_persons, -1),
        key=None,
        value=memory[img_inds].permute(1, 0, 2),
        query_pos=query_pos.unsqueeze(1).expand(-1, num_persons, -1),
        key_padding_mask=levels['mask'][img_inds],
        reference_points=poses.view(num_persons, transformer.num_keypoints,
                                    2),
        spatial_shapes=levels['spatial_shapes'],
        level_start_index=levels['level_start_index'],
        valid_ratios=levels['valid_ratios'][img_inds],
        reg_branches=refine_branches,
        return_predictions=True)
    return keypoints


def use_per_person_refine(model):
    """Make ``model``'s refine decoder the old per-person formulation."""
    transformer = model.bbox_head.transformer
    transformer.forward_refine = (
        lambda *args: forward_refine_per_person(transformer, *args))


def build_r50(config):
    """The config's model, randomly initialised, every dropout off (so
    both formulations see the same network), refine branches that use what
    the decoder samples (their zero-initialised last layers would return
    the input keypoints whatever the memory)."""
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.
        if isinstance(module, nn.MultiheadAttention):
            module.dropout = 0.
    for branch in model.bbox_head.refine_kpt_branches:
        nn.init.normal_(branch[-1].weight, std=0.1)
    return model


def padded_levels(transformer, level_shapes, valid_fractions):
    """Flattened levels of a padded batch: image i is valid on the first
    ``valid_fractions[i]`` (h, w) of every level, so masks and valid ratios
    differ between images."""
    feats, masks, positions = [], [], []
    for height, width in level_shapes:
        mask = torch.ones(len(valid_fractions), height, width,
                          dtype=torch.bool)
        for image, (fh, fw) in enumerate(valid_fractions):
            mask[image, :max(1, round(fh * height)),
                 :max(1, round(fw * width))] = False
        masks.append(mask)
        feats.append(torch.randn(len(valid_fractions), 256, height, width))
        positions.append(torch.randn_like(feats[-1]))
    return flatten_levels(feats, masks, positions, transformer.level_embeds)


def refine_outputs_and_gradients(model, forward_refine, memory, levels,
                                 poses, img_inds):
    """Refined keypoints, and the gradients of a weighted sum of them with
    respect to the memory and every refine parameter."""
    head = model.bbox_head
    head.zero_grad(set_to_none=True)
    memory = memory.detach().requires_grad_()
    keypoints = forward_refine(memory, levels, poses, img_inds,
                               head.refine_kpt_branches)
    weights = torch.linspace(-1, 1, keypoints.numel()).view_as(keypoints)
    (keypoints * weights).sum().backward()
    grads = {
        name: p.grad.clone()
        for name, p in head.named_parameters() if p.grad is not None
    }
    grads['memory'] = memory.grad
    return keypoints.detach(), grads


@pytest.mark.parametrize('config', [PETR_R50, H_PETR_R50])
def test_refine_outputs_and_gradients_equal_the_per_person_refine(config):
    """The R50 configs' refine decoders (train mode, dropout off) on a
    padded batch of two: 7 persons of image 0 and 4 of image 1,
    interleaved as the positives of two query groups are."""
    model = build_r50(config).train()
    transformer = model.bbox_head.transformer
    torch.manual_seed(1)
    levels = padded_levels(transformer, [(20, 24), (10, 12), (5, 6), (3, 3)],
                           [(1., 1.), (0.7, 0.8)])
    memory = torch.randn(2, levels['mask'].size(1), 256)
    img_inds = torch.tensor([1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0])
    poses = torch.rand(img_inds.numel(), 2 * 17) * 0.8 + 0.1

    keypoints, grads = refine_outputs_and_gradients(
        model, transformer.forward_refine, memory, levels, poses, img_inds)
    old_keypoints, old_grads = refine_outputs_and_gradients(
        model, lambda *args: forward_refine_per_person(transformer, *args),
        memory, levels, poses, img_inds)

    assert keypoints.shape == (2, img_inds.numel(), 17, 2)
    torch.testing.assert_close(keypoints, old_keypoints, **TOLERANCES)
    # The memory, and every parameter of the refine decoder, its query
    # embedding and its branches.
    refine_params = {
        name
        for name, _ in model.bbox_head.named_parameters()
        if 'refine' in name
    }
    assert set(grads) == set(old_grads) == refine_params | {'memory'}
    # Padding holds no information: no gradient reaches it.
    assert not grads['memory'][levels['mask']].any()
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(
            grad,
            old_grads[name],
            **TOLERANCES,
            msg=lambda m, name=name: f'{name}: {m}')


def total_loss_and_gradients(model, inputs):
    model.zero_grad(set_to_none=True)
    losses = model.forward_train(**inputs)
    total_loss(losses).backward()
    grads = {
        name: p.grad.clone()
        for name, p in model.named_parameters() if p.grad is not None
    }
    return {k: v.detach() for k, v in losses.items()}, grads


def test_training_losses_and_gradients_equal_the_per_person_refine():
    """A whole H-PETR training step (tiny config): the refine decoder
    trains on the positives of both groups and both images, the images
    interleaved; every loss and gradient is unchanged."""
    model = build_tiny(TINY_H_PETR).train()
    inputs = pose_inputs([(128, 128), (96, 128)], num_persons=(3, 2))
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = (128, 128)
    seen = {}
    refine = model.bbox_head.refine

    def record_refine(outputs, poses, img_inds):
        seen['img_inds'] = img_inds
        return refine(outputs, poses, img_inds)

    model.bbox_head.refine = record_refine
    losses, grads = total_loss_and_gradients(model, inputs)
    # Image 0's one-to-many persons come after image 1's one-to-one ones.
    img_inds = seen['img_inds']
    assert set(img_inds.tolist()) == {0, 1}
    assert not bool((img_inds[1:] >= img_inds[:-1]).all())

    use_per_person_refine(model)
    old_losses, old_grads = total_loss_and_gradients(model, inputs)
    assert set(losses) == set(old_losses)
    assert any('refine' in name for name in losses)
    for name in losses:
        torch.testing.assert_close(
            losses[name], old_losses[name], **TOLERANCES, msg=name)
    assert set(grads) == set(old_grads)
    for name in grads:
        torch.testing.assert_close(
            grads[name],
            old_grads[name],
            **TOLERANCES,
            msg=lambda m, name=name: f'{name}: {m}')


def test_inference_results_equal_the_per_person_refine():
    """PETR R50 at test time: 100 persons per image of a padded batch of
    two, same boxes, scores and keypoints."""
    model = build_r50(PETR_R50).eval()
    inputs = pose_inputs([(128, 160), (112, 128)])
    with torch.no_grad():
        results = model.simple_test(inputs['img'], inputs['img_metas'])
        use_per_person_refine(model)
        old_results = model.simple_test(inputs['img'], inputs['img_metas'])
    for image, (new, old) in enumerate(zip(results, old_results)):
        (boxes, ), (keypoints, ) = new
        (old_boxes, ), (old_keypoints, ) = old
        assert boxes.shape == (100, 5) and keypoints.shape == (100, 17, 3)
        torch.testing.assert_close(
            torch.as_tensor(boxes), torch.as_tensor(old_boxes),
            rtol=1e-5, atol=1e-3, msg=f'image {image} boxes (pixels)')
        torch.testing.assert_close(
            torch.as_tensor(keypoints), torch.as_tensor(old_keypoints),
            rtol=1e-5, atol=1e-3, msg=f'image {image} keypoints (pixels)')


def test_value_projection_runs_once_per_image():
    """The refine cross-attentions project [bs, S, c], and the refine
    FLOPs drop by exactly the per-person copies of that projection."""
    model = build_tiny(TINY_H_PETR).eval()
    inputs = pose_inputs([(128, 128), (96, 128)])
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = (128, 128)
    head, transformer = model.bbox_head, model.bbox_head.transformer
    with torch.no_grad():
        outputs = head(model.extract_feat(inputs['img']), inputs['img_metas'])
    memory, levels = outputs['memory'], outputs['levels']
    num_images, num_positions, channels = memory.shape
    poses = outputs['poses'][-1].flatten(0, 1)  # every query of both images
    img_inds = torch.arange(num_images).repeat_interleave(
        outputs['poses'].size(2))
    shapes = []
    layers = transformer.refine_decoder.layers
    for layer in layers:
        layer.attentions[1].value_proj.register_forward_hook(
            lambda m, args, out: shapes.append(tuple(args[0].shape)))

    def refine_flops(forward_refine):
        # FlopCounterMode's module tracking needs gradients enabled.
        with FlopCounterMode(display=False) as counter:
            keypoints = forward_refine(memory, levels, poses, img_inds,
                                       head.refine_kpt_branches)
        return counter.get_total_flops(), keypoints.detach()

    flops, keypoints = refine_flops(transformer.forward_refine)
    assert shapes == [(num_images, num_positions, channels)] * len(layers)
    old_flops, old_keypoints = refine_flops(
        lambda *args: forward_refine_per_person(transformer, *args))
    torch.testing.assert_close(keypoints, old_keypoints, **TOLERANCES)
    copies = poses.size(0) - num_images
    assert old_flops - flops == (
        len(layers) * copies * num_positions * 2 * channels * channels)


def test_per_image_queries_slots_round_trip_and_bad_images():
    img_inds = torch.tensor([1, 0, 1, 1, 0])
    groups = PerImageQueries(img_inds, num_images=3)
    # Image 1's persons 0, 2, 3 take its slots 0-2, image 0's 1, 4 its 0-1.
    assert groups.max_persons == 3
    assert groups.slots.tolist() == [3, 0, 4, 5, 1]
    per_person = torch.randn(5, 2, 4)
    per_image = groups.to_images(per_person)
    assert per_image.shape == (3, 6, 4)
    slots = per_image.view(3, 3, 2, 4)
    torch.testing.assert_close(slots[1], per_person[[0, 2, 3]])
    torch.testing.assert_close(slots[0, :2], per_person[[1, 4]])
    assert not slots[0, 2].any() and not slots[2].any()
    assert torch.equal(groups.to_persons(per_image, 2), per_person)
    with pytest.raises(ValueError, match=r'\[0, 2\).*\[0, 3\]'):
        PerImageQueries(torch.tensor([0, 3]), num_images=2)
    with pytest.raises(ValueError, match='1-D long'):
        PerImageQueries(torch.tensor([0., 1.]), num_images=2)


def test_refine_decoder_refuses_a_cross_attention_without_per_image_values():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs',
                                   'tiny_petr.py'))
    cross_attn = cfg.model.bbox_head.transformer.refine_decoder[
        'transformerlayers']['attn_cfgs'][1]
    cross_attn['type'] = 'MultiScaleDeformableAttention'  # mmcv's
    with pytest.raises(ValueError,
                       match='refine_decoder layer 0.*opera.MultiScale'
                       'DeformableAttention.*mmcv.ops.*MultiScaleDeformable'):
        build_detector(cfg.model)
