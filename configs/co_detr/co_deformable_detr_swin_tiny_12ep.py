# Co-Deformable-DETR, Swin-T, 12 epochs (Co-DETR README: 51.7 box AP).
# Backbone from the official Swin ImageNet-1k checkpoint: put
# swin_tiny_patch4_window7_224.pth under checkpoints/ (converted on load).
_base_ = './co_deformable_detr_r50_12ep.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(1, 2, 3),
        convert_weights=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/swin_tiny_patch4_window7_224.pth')),
    neck=dict(in_channels=[192, 384, 768]),
    bbox_head=dict(in_channels=768))
optimizer = dict(weight_decay=0.05)
