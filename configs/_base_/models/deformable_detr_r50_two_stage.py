# Two-stage Deformable-DETR with iterative box refinement, R50 (the official
# H-Deformable-DETR code's baseline): 6+6 layers, d=256, 8 heads, 4 levels,
# 4 points, FFN 2048, dropout 0.1, 300 queries. Hybrid variants set
# num_query_one2many / k_one2many on the head.
# The opera.* encoder, attentions and assigner are mmdet's / mmcv's with the
# same parameters, plus: per-group decoder self-attention, fp32 deformable
# attention under fp16, with_cp, one-to-many matching from untiled costs
# (docs/hybrid_matching.md, docs/benchmark.md).
model = dict(
    type='opera.DETRDetector',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,  # stem + layer1 frozen, as in the official code
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='opera.ChannelMapper',
        in_channels=[512, 1024, 2048],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        bias=True,  # the official input projection has conv biases
        num_outs=4),
    bbox_head=dict(
        type='opera.DETRDetectionHead',
        num_query=300,
        num_query_one2many=0,
        k_one2many=6,
        lambda_one2many=1.0,
        num_classes=80,
        in_channels=2048,
        sync_cls_avg_factor=True,
        with_box_refine=True,
        as_two_stage=True,
        transformer=dict(
            type='opera.DeformableDetrTransformer',
            mixed_selection=False,
            encoder=dict(
                type='opera.DetrTransformerEncoder',
                num_layers=6,
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=dict(
                        type='opera.MultiScaleDeformableAttention',
                        embed_dims=256,
                        dropout=0.1),
                    ffn_cfgs=dict(
                        type='FFN',
                        embed_dims=256,
                        feedforward_channels=2048,
                        num_fcs=2,
                        ffn_drop=0.1,
                        act_cfg=dict(type='ReLU', inplace=True)),
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
            decoder=dict(
                type='opera.DeformableDetrTransformerDecoder',
                num_layers=6,
                return_intermediate=True,
                look_forward_twice=False,
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=[
                        dict(
                            type='opera.MultiheadAttention',
                            embed_dims=256,
                            num_heads=8,
                            attn_drop=0.1,
                            proj_drop=0.1),
                        dict(
                            type='opera.MultiScaleDeformableAttention',
                            embed_dims=256,
                            dropout=0.1)
                    ],
                    ffn_cfgs=dict(
                        type='FFN',
                        embed_dims=256,
                        feedforward_channels=2048,
                        num_fcs=2,
                        ffn_drop=0.1,
                        act_cfg=dict(type='ReLU', inplace=True)),
                    operation_order=('self_attn', 'norm', 'cross_attn', 'norm',
                                     'ffn', 'norm')))),
        positional_encoding=dict(
            type='SinePositionalEncoding',
            num_feats=128,
            normalize=True,
            offset=-0.5),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='opera.HungarianAssigner',
            # opera's costs are mmdet's, computed faster (target-major).
            cls_cost=dict(type='opera.FocalLossCost', weight=2.0),
            reg_cost=dict(
                type='opera.BBoxL1Cost', weight=5.0, box_format='xywh'),
            iou_cost=dict(
                type='opera.IoUCost', iou_mode='giou', weight=2.0))),
    # Top-100 of (queries x classes) sigmoid scores, no NMS.
    test_cfg=dict(max_per_img=100))
