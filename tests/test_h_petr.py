"""H-PETR: the hybrid (one-to-one + one-to-many) branch of the PETR head."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmcv.ops import MultiScaleDeformableAttention

from conftest import REPO_ROOT, pose_inputs, targets_of
from test_petr import NUM_KEYPOINTS, build_tiny, total_loss

TINY_H_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_h_petr.py')
ONE2ONE, ONE2MANY = 10, 20


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """One intra-op thread (see test_petr.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def head_outputs(model, inputs):
    """Head outputs of the model's current mode, batch_input_shape set."""
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = tuple(inputs['img'].shape[-2:])
    return model.bbox_head(
        model.extract_feat(inputs['img']), inputs['img_metas'])


def test_self_attention_mask_reaches_multihead_attention():
    # The masked form (one attention over all queries); the default
    # per-group form is checked in test_performance_attention.py.
    model = build_tiny(TINY_H_PETR, split_self_attn=False).train()
    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs.get('attn_mask'))

    decoder = model.bbox_head.transformer.decoder
    for layer in decoder.layers:
        attn = layer.attentions[0].attn
        assert isinstance(attn, nn.MultiheadAttention)
        attn.register_forward_pre_hook(record, with_kwargs=True)
    inputs = pose_inputs([(128, 128), (128, 128)])
    head_outputs(model, inputs)
    expected = torch.zeros(30, 30, dtype=torch.bool)
    expected[ONE2ONE:, :ONE2ONE] = True
    expected[:ONE2ONE, ONE2ONE:] = True
    assert len(seen) == decoder.num_layers
    for mask in seen:
        assert mask is not None and torch.equal(mask, expected)

    seen.clear()
    model.eval()
    with torch.no_grad():
        outputs = head_outputs(model, inputs)
    assert outputs['poses'].size(2) == ONE2ONE
    assert seen == [None] * decoder.num_layers


def test_one2many_queries_do_not_change_one2one_outputs():
    model = build_tiny(TINY_H_PETR).train()
    inputs = pose_inputs([(128, 128), (128, 96)])
    with torch.no_grad():
        before = head_outputs(model, inputs)
        model.bbox_head.query_embedding.weight[ONE2ONE:] += 3 * torch.randn(
            ONE2MANY, 512)
        after = head_outputs(model, inputs)
    for name in ('states', 'cls_scores', 'poses'):
        torch.testing.assert_close(after[name][:, :, :ONE2ONE],
                                   before[name][:, :, :ONE2ONE])
    # (Poses start at the proposals: the last pose layers are zero-init.)
    assert not torch.allclose(after['states'][:, :, ONE2ONE:],
                              before['states'][:, :, ONE2ONE:])


def test_eval_equals_all_queries_in_training_kept_to_one2one():
    model = build_tiny(TINY_H_PETR)
    inputs = pose_inputs([(128, 128), (128, 96)])
    with torch.no_grad():
        model.train()
        trained = head_outputs(model, inputs)
        model.eval()
        evaluated = head_outputs(model, inputs)
    assert evaluated['poses'].size(2) == ONE2ONE
    for name in ('states', 'cls_scores', 'poses'):
        torch.testing.assert_close(evaluated[name],
                                   trained[name][:, :, :ONE2ONE])


def test_one2many_losses_are_suffixed_and_scaled_by_lambda():
    inputs = pose_inputs([(128, 128), (128, 96)], num_persons=(2, 3))
    losses = {}
    for lambda_one2many in (1.0, 0.5):
        model = build_tiny(TINY_H_PETR, lambda_one2many=lambda_one2many)
        losses[lambda_one2many] = model.train().forward_train(**inputs)
    full, half = losses[1.0], losses[0.5]
    for name in ('loss_cls', 'loss_kpt', 'loss_oks', 'd0.loss_cls'):
        assert name + '_one2many' in full
        torch.testing.assert_close(half[name + '_one2many'],
                                   0.5 * full[name + '_one2many'])
        torch.testing.assert_close(half[name], full[name])
    assert not any(
        name.startswith('enc_') and name.endswith('_one2many')
        for name in full)
    total = total_loss(full)
    assert torch.isfinite(total)


def test_refine_decoder_reads_the_memory_of_each_persons_own_image():
    """Persons only in image 1: every refine query must read image 1's
    memory. Indexing positives by ``flat index // queries per image`` over
    the concatenated one-to-one and one-to-many groups (the reference's
    indexing) sends the one-to-one positives of image 1 to image 0."""
    model = build_tiny(TINY_H_PETR).train()
    inputs = pose_inputs([(128, 128), (128, 128)], num_persons=(0, 3))
    # Very different images, hence very different memories.
    inputs['img'][1] = inputs['img'][1] * 5 + 3
    transformer = model.bbox_head.transformer
    seen = {}

    def record_memory(module, args, output):
        seen['memory'] = output.detach()  # [S, bs, c]

    def record_value(module, args, kwargs):
        # mmcv's layers pass (query, key, value, identity) positionally.
        seen.setdefault('values', []).append(args[2].detach())
        seen.setdefault('persons', []).append(kwargs['per_image_queries'])

    transformer.encoder.register_forward_hook(record_memory)
    cross_attn = transformer.refine_decoder.layers[0].attentions[1]
    assert isinstance(cross_attn, MultiScaleDeformableAttention)
    cross_attn.register_forward_pre_hook(record_value, with_kwargs=True)
    model.forward_train(**inputs)

    # The values are the images' memories, one per image (value [S, bs, c],
    # projected once per image); each person's queries sample the value
    # entry of its slot's image.
    memory, value = seen['memory'], seen['values'][0]
    torch.testing.assert_close(value, memory)
    assert not torch.allclose(value[:, 1], value[:, 0])
    persons = seen['persons'][0]
    # 2 persons with visible keypoints, once in the one-to-one group and
    # k_one2many = 2 times in the one-to-many group.
    assert persons.num_persons == 2 + 2 * 2
    assert (persons.slots // persons.max_persons).tolist() == [1] * 6


def test_refine_at_test_time_uses_each_images_memory():
    """Batch of two different images: each image's results equal those of
    running it alone, so no refine query read the other image."""
    model = build_tiny(TINY_H_PETR).eval()
    # Zero-initialised refine branches would return their input keypoints
    # whatever memory they read.
    for branch in model.bbox_head.refine_kpt_branches:
        nn.init.normal_(branch[-1].weight, std=0.1)
    inputs = pose_inputs([(128, 128), (128, 128)])
    inputs['img'][0] = inputs['img'][0] * 5 + 3
    with torch.no_grad():
        batched = model.simple_test(inputs['img'], inputs['img_metas'])
        alone = model.simple_test(inputs['img'][1:], inputs['img_metas'][1:])
    torch.testing.assert_close(
        torch.as_tensor(batched[1][1][0]),
        torch.as_tensor(alone[0][1][0]),
        atol=1e-3,
        rtol=1e-4)


def test_branch_keypoint_losses_are_tiled_and_normalised_per_branch():
    """Hand-checked keypoint L1 losses of both groups.

    Three persons, all keypoints visible. The one-to-one queries 0-2 sit e
    off every target coordinate, the one-to-many queries 10-15 d off the
    targets tiled K = 2 times, every other query far away. With each group
    normalised by its own visible coordinates (3K and 2 x 3K), the
    weight-70 L1 gives 70 e and lambda 70 d at every layer, whatever K.
    """
    model = build_tiny(TINY_H_PETR, lambda_one2many=0.5).train()
    head = model.bbox_head
    h, w = 96, 128
    inputs = pose_inputs([(h, w)], num_persons=(3, ))
    gen = torch.Generator().manual_seed(3)
    normalised = 0.1 + 0.5 * torch.rand(3, NUM_KEYPOINTS, 2, generator=gen)
    pixels = normalised * torch.tensor([w, h])
    inputs['gt_keypoints'] = [
        torch.cat([pixels, torch.full((3, NUM_KEYPOINTS, 1), 2.)], -1)
    ]
    inputs['gt_bboxes'] = [torch.cat([pixels.amin(1), pixels.amax(1)], -1)]
    inputs['gt_areas'] = [(inputs['gt_bboxes'][0][:, 2:] -
                           inputs['gt_bboxes'][0][:, :2]).prod(-1)]
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = (h, w)
    outputs = head(model.extract_feat(inputs['img']), inputs['img_metas'])

    e, d, k = 0.01, 0.02, head.query_groups.groups[1].num_repeats
    target = normalised.flatten(1)  # [3, 2K]
    poses = torch.full_like(outputs['poses'], 0.97)
    poses[:, 0, :3] = target + e
    poses[:, 0, ONE2ONE:ONE2ONE + 3 * k] = target.repeat(k, 1) + d
    outputs['poses'] = poses
    outputs['cls_scores'] = torch.zeros_like(outputs['cls_scores'])
    losses = head.loss(outputs, targets_of(inputs), inputs['img_metas'])
    weight = head.criterion.loss_kpt.loss_weight
    for prefix in ('', 'd0.'):
        torch.testing.assert_close(losses[prefix + 'loss_kpt'],
                                   torch.tensor(weight * e))
        torch.testing.assert_close(losses[prefix + 'loss_kpt_one2many'],
                                   torch.tensor(0.5 * weight * d))
