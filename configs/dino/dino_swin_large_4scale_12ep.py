# DINO-4scale Swin-L, 12 epochs (reference: 56.8 box AP; 36 epochs 58.0).
# Backbone from the Swin-L ImageNet-22k 384x384 checkpoint (window 12), as
# DINO's swin_L_384_22k: put swin_large_patch4_window12_384_22k.pth under
# checkpoints/. with_cp recomputes the Swin blocks in the backward pass
# (DINO's use_checkpoint=True).
_base_ = './dino_r50_4scale_12ep.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        pretrain_img_size=384,
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        window_size=12,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(1, 2, 3),
        with_cp=True,
        convert_weights=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/swin_large_patch4_window12_384_22k.pth')),
    neck=dict(in_channels=[384, 768, 1536]),
    bbox_head=dict(in_channels=1536))
