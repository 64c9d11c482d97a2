# PETR, Swin-L (ImageNet-22k pre-trained, 1k fine-tuned), CrowdPose, 16 GPUs
# x 1 image: Opera's petr_swin-l-p4-w7-224-22kto1k_16x1_100e_crowdpose
# (reference: 71.7 AP on CrowdPose test, 72.3 with the flip test). As in
# Opera: drop path 0.3, lr 1e-4, SIX pose-decoder layers (its COCO models
# have 3) and 3 refine-decoder layers; 14 keypoints from the dataset's
# keypoint layout. Put the official swin_large_patch4_window7_224_22kto1k.pth
# under checkpoints/.
_base_ = './petr_r50_16x2_100e_crowdpose.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.3,
        patch_norm=True,
        out_indices=(1, 2, 3),
        with_cp=False,
        convert_weights=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/swin_large_patch4_window7_224_22kto1k.pth')
    ),
    neck=dict(in_channels=[384, 768, 1536]),
    bbox_head=dict(transformer=dict(decoder=dict(num_layers=6))))
data = dict(samples_per_gpu=1, workers_per_gpu=1)
# 16 GPUs x 1 image (--auto-scale-lr takes 16 as the base).
auto_scale_lr = dict(base_batch_size=16)
optimizer = dict(lr=1e-4)
# Opera's lr for 16 GPUs x 1 image; --auto-scale-lr scales from that batch.
auto_scale_lr = dict(base_batch_size=16)
