# H-Deformable-DETR, Swin-L, 12 epochs (reference: 55.9 box AP; detrex 56.2).
# Backbone from the official Swin ImageNet-22k checkpoint: put
# swin_large_patch4_window7_224_22k.pth under checkpoints/.
# with_cp: Swin blocks are recomputed in the backward pass to fit in memory
# (as the official code does); the transformer layers can be too, with
# model.bbox_head.transformer.{encoder,decoder}.with_cp=True.
_base_ = './h_deformable_detr_swin_tiny_two_stage_12ep.py'
model = dict(
    backbone=dict(
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        with_cp=True,
        init_cfg=dict(
            checkpoint='checkpoints/swin_large_patch4_window7_224_22k.pth')),
    neck=dict(in_channels=[384, 768, 1536]),
    bbox_head=dict(in_channels=1536))
