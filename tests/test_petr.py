"""PETR: training and test passes, batching, pose attention."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv import Config

from conftest import REPO_ROOT, pose_inputs

import opera  # noqa: F401  (registers modules)
from opera.models import build_detector
from opera.models.attention import pose_attention
from opera.models.attention.pose_attention import pose_sampling_locations

TINY_PETR = osp.join(REPO_ROOT, 'tests', 'configs', 'tiny_petr.py')
NUM_KEYPOINTS = 17

pytestmark = pytest.mark.usefixtures('single_thread')


def build_tiny(path=TINY_PETR, seed=0, **head_options):
    cfg = Config.fromfile(path)
    cfg.model.bbox_head.update(head_options)
    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    model.init_weights()
    return model


def total_loss(losses):
    return sum(value for name, value in losses.items() if 'loss' in name)


def test_crowdpose_config_uses_14_keypoints_and_3_refine_layers():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'petr',
                 'petr_r50_16x2_100e_crowdpose.py'))
    cfg.model.backbone.init_cfg = None
    head = build_detector(cfg.model).bbox_head
    assert head.num_keypoints == 14
    assert head.kpt_branches[0][-1].out_features == 28
    assert head.transformer.refine_query_embedding.num_embeddings == 14
    assert len(head.refine_kpt_branches) == 3
    assert (head.criterion.loss_oks.sigmas ==
            head.criterion.assigner.oks_cost.sigmas)
    assert len(head.criterion.loss_oks.sigmas) == 14


def test_forward_train_batch_of_two_gives_finite_losses_and_gradients():
    model = build_tiny().train()
    # Image 0 has no person; image 1's first person has no visible keypoint.
    inputs = pose_inputs([(128, 160), (112, 128)], num_persons=(0, 3))
    losses = model.forward_train(**inputs)
    for name in ('loss_cls', 'loss_kpt', 'loss_oks', 'd0.loss_cls',
                 'enc_loss_cls', 'enc_loss_kpt', 'loss_hm',
                 'd1.loss_kpt_refine', 'd1.loss_oks_refine'):
        assert name in losses
    assert all(torch.isfinite(v).all() for v in losses.values())
    total_loss(losses).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name


def test_forward_train_without_any_person():
    model = build_tiny().train()
    inputs = pose_inputs([(128, 128), (128, 128)], num_persons=(0, 0))
    losses = model.forward_train(**inputs)
    total = total_loss(losses)
    assert torch.isfinite(total)
    total.backward()


def test_heatmap_branch_runs_only_in_training():
    model = build_tiny()
    inputs = pose_inputs([(128, 128)])
    head = model.bbox_head
    feats = model.extract_feat(inputs['img'])
    for meta in inputs['img_metas']:
        meta['batch_input_shape'] = (128, 128)
    head.train()
    assert head(feats, inputs['img_metas'])['hm_logits'].shape == (1, 17, 16,
                                                                   16)
    head.eval()
    with torch.no_grad():
        assert head(feats, inputs['img_metas'])['hm_logits'] is None


def test_simple_test_result_format_and_rescale():
    model = build_tiny().eval()
    inputs = pose_inputs([(128, 160), (112, 128)])
    with torch.no_grad():
        results = model.simple_test(inputs['img'], inputs['img_metas'])
        for meta in inputs['img_metas']:
            meta['scale_factor'] = np.array([2., 4., 2., 4.],
                                            dtype=np.float32)
        rescaled = model.simple_test(
            inputs['img'], inputs['img_metas'], rescale=True)
    assert len(results) == 2
    max_per_img = model.bbox_head.test_cfg['max_per_img']
    for (bboxes, keypoints), meta in zip(results, inputs['img_metas']):
        assert len(bboxes) == len(keypoints) == 1
        assert bboxes[0].shape == (max_per_img, 5)
        assert keypoints[0].shape == (max_per_img, NUM_KEYPOINTS, 3)
        img_h, img_w = meta['img_shape'][:2]
        assert (keypoints[0][..., 0] <= img_w).all()
        assert (keypoints[0][..., 1] <= img_h).all()
        # Boxes enclose the keypoints; scores sorted.
        np.testing.assert_allclose(bboxes[0][:, 0],
                                   keypoints[0][..., 0].min(1))
        np.testing.assert_allclose(bboxes[0][:, 3],
                                   keypoints[0][..., 1].max(1))
        assert (np.diff(bboxes[0][:, 4]) <= 0).all()
    for (_, keypoints), (_, scaled) in zip(results, rescaled):
        np.testing.assert_allclose(
            scaled[0][..., :2],
            keypoints[0][..., :2] / np.array([2., 4.]),
            rtol=1e-5)


def test_batch_of_two_equals_one_by_one():
    model = build_tiny().eval()
    inputs = pose_inputs([(128, 160), (128, 160)])
    with torch.no_grad():
        batched = model.simple_test(inputs['img'], inputs['img_metas'])
        single = [
            model.simple_test(inputs['img'][i:i + 1],
                              inputs['img_metas'][i:i + 1])[0]
            for i in range(2)
        ]
    for (bboxes, keypoints), (bboxes_1, keypoints_1) in zip(batched, single):
        np.testing.assert_allclose(bboxes[0], bboxes_1[0], atol=1e-3)
        np.testing.assert_allclose(keypoints[0], keypoints_1[0], atol=1e-3)


def test_pose_sampling_locations_hand_computed():
    # One query, one head, one level, two keypoints: box 0.4 x 0.2.
    poses = torch.tensor([0.2, 0.3, 0.6, 0.5]).view(1, 1, 1, 2, 2)
    offsets = torch.tensor([1., -1., -0.5, 2.]).view(1, 1, 1, 1, 2, 2)
    locations = pose_sampling_locations(poses, offsets)
    expected = torch.tensor([[0.2 + 1 * 0.4 * 0.5, 0.3 - 1 * 0.2 * 0.5],
                             [0.6 - 0.5 * 0.4 * 0.5, 0.5 + 2 * 0.2 * 0.5]])
    torch.testing.assert_close(locations.view(2, 2), expected)
    # A pose collapsed to one point: box size clamped to 1e-4.
    point = torch.full((1, 1, 1, 2, 2), 0.5)
    locations = pose_sampling_locations(point, offsets)
    torch.testing.assert_close(locations.view(2, 2),
                               0.5 + offsets.view(2, 2) * 1e-4 * 0.5)


def test_pose_attention_samples_where_the_formula_says(monkeypatch):
    num_heads, num_levels, num_points = 2, 2, 3
    attn = pose_attention.PoseDeformableAttention(
        embed_dims=8,
        num_heads=num_heads,
        num_levels=num_levels,
        num_points=num_points)
    bias = torch.randn(num_heads, num_levels, num_points, 2)
    attn.sampling_offsets.bias.data = bias.flatten()
    seen = {}

    def capture(value, shapes, locations, weights):
        seen['locations'], seen['weights'] = locations, weights
        return value.new_zeros(value.size(0), locations.size(1), 8)

    monkeypatch.setattr(pose_attention, 'multi_scale_deformable_attn_pytorch',
                        capture)
    shapes = torch.tensor([[4, 4], [2, 2]])
    poses = torch.tensor([[0.1, 0.2, 0.5, 0.4, 0.3, 0.8]])
    reference = poses.view(1, 1, 1, 6).expand(1, 1, num_levels, 6)
    attn(
        torch.randn(1, 1, 8),
        value=torch.randn(20, 1, 8),
        reference_points=reference,
        spatial_shapes=shapes,
        level_start_index=torch.tensor([0, 16]))
    # Box around the pose: w = 0.5 - 0.1 = 0.4, h = 0.8 - 0.2 = 0.6.
    keypoints = poses.view(3, 2)
    expected = keypoints + bias * torch.tensor([0.4, 0.6]) * 0.5
    torch.testing.assert_close(seen['locations'][0, 0], expected)
    # Zero-initialised weights: uniform over levels x keypoints.
    torch.testing.assert_close(seen['weights'],
                               torch.full_like(seen['weights'], 1 / 6))


def test_short_overfit_lowers_the_loss():
    model = build_tiny().train()
    inputs = pose_inputs([(128, 128), (128, 128)],
                         num_persons=(2, 1),
                         seed=3)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=2e-4)
    history = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = total_loss(model.forward_train(**inputs))
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert np.mean(history[-5:]) < 0.8 * np.mean(history[:5])
