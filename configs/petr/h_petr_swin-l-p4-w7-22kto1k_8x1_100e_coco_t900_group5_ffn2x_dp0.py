# H-PETR, Swin-L (ImageNet-22k pre-trained, 1k fine-tuned), drop path 0.5,
# lr 1e-4 (reference: 74.9 keypoint AP): the H-PETR R50 recipe with the
# backbone of petr_swin-l-p4-w7-22kto1k_16x2_100e_coco.py.
_base_ = './h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py'
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
        drop_path_rate=0.5,
        patch_norm=True,
        out_indices=(1, 2, 3),
        with_cp=True,
        convert_weights=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/swin_large_patch4_window7_224_22kto1k.pth')
    ),
    neck=dict(in_channels=[384, 768, 1536]))
optimizer = dict(lr=1e-4)
