# Co-Deformable-DETR, Swin-L, 12 epochs, 300 queries (Co-DETR README: 56.9
# box AP). Backbone from the official Swin ImageNet-22k 384 checkpoint
# (window 12): put swin_large_patch4_window12_384_22k.pth under
# checkpoints/. with_cp: Swin blocks are recomputed in the backward pass to
# fit in memory.
_base_ = './co_deformable_detr_swin_tiny_12ep.py'
model = dict(
    backbone=dict(
        pretrain_img_size=384,
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        window_size=12,
        drop_path_rate=0.3,
        with_cp=True,
        init_cfg=dict(
            checkpoint='checkpoints/swin_large_patch4_window12_384_22k.pth')),
    neck=dict(in_channels=[384, 768, 1536]),
    bbox_head=dict(in_channels=1536))
