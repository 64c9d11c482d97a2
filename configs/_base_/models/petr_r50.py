# PETR, R50 (Opera's petr_r50_16x2_100e_coco): two-stage pose proposals,
# 6-layer deformable encoder, 3-layer pose decoder, 2-layer refine decoder,
# heatmap branch in training; FFN 1024, dropout 0.1, 300 queries, COCO's 17
# keypoints: the head's keypoint_layout defaults to 'coco', and K and the OKS
# sigmas of the transformer, criterion (losses) and matcher follow from it
# (set bbox_head.keypoint_layout to a name or a dict for other keypoints,
# docs/custom_datasets.md; it is not written here so that a dict can replace
# it). H-PETR variants set num_query_one2many / k_one2many on the head.
# The opera.* encoder, attentions and assigner are mmdet's / mmcv's with the
# same parameters, plus: per-group decoder self-attention, fp32 deformable
# attention under fp16, with_cp, one-to-many matching from untiled costs
# (docs/hybrid_matching.md, docs/benchmark.md).
embed_dims = 256
ffn = dict(
    type='FFN',
    embed_dims=embed_dims,
    feedforward_channels=1024,
    num_fcs=2,
    ffn_drop=0.1,
    act_cfg=dict(type='ReLU', inplace=True))
self_attn = dict(
    type='opera.MultiheadAttention',
    embed_dims=embed_dims,
    num_heads=8,
    attn_drop=0.1,
    proj_drop=0.1)
deformable_attn = dict(
    type='opera.MultiScaleDeformableAttention',
    embed_dims=embed_dims,
    dropout=0.1)
model = dict(
    type='opera.PETR',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='opera.ChannelMapper',
        in_channels=[512, 1024, 2048],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        bias='auto',  # Opera uses mmdet's ChannelMapper: no bias before GN
        num_outs=4),
    bbox_head=dict(
        type='opera.PETRHead',
        num_classes=1,
        num_query=300,
        num_query_one2many=0,
        k_one2many=5,
        lambda_one2many=1.0,
        num_kpt_fcs=2,
        kpt_hidden_dims=512,
        transformer=dict(
            type='opera.PETRTransformer',
            encoder=dict(
                type='opera.DetrTransformerEncoder',
                num_layers=6,
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=deformable_attn,
                    ffn_cfgs=ffn,
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
            decoder=dict(
                type='opera.PETRPoseDecoder',
                num_layers=3,
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=[
                        self_attn,
                        dict(
                            type='opera.PoseDeformableAttention',
                            embed_dims=embed_dims,
                            dropout=0.1)
                    ],
                    ffn_cfgs=ffn,
                    operation_order=('self_attn', 'norm', 'cross_attn', 'norm',
                                     'ffn', 'norm'))),
            hm_encoder=dict(
                type='opera.DetrTransformerEncoder',
                num_layers=1,
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=dict(deformable_attn, num_levels=1),
                    ffn_cfgs=ffn,
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
            refine_decoder=dict(
                type='opera.DeformableDetrTransformerDecoder',
                num_layers=2,
                return_intermediate=True,  # every layer's keypoints trained
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=[self_attn, deformable_attn],
                    ffn_cfgs=ffn,
                    operation_order=('self_attn', 'norm', 'cross_attn', 'norm',
                                     'ffn', 'norm')))),
        positional_encoding=dict(
            type='SinePositionalEncoding',
            num_feats=128,
            normalize=True,
            offset=-0.5),
        # The losses; the head fills in num_classes, K, the OKS sigmas and
        # train_cfg.assigner.
        criterion=dict(
            type='opera.PETRCriterion',
            loss_cls=dict(
                type='mmdet.FocalLoss',
                use_sigmoid=True,
                gamma=2.0,
                alpha=0.25,
                loss_weight=2.0),
            loss_kpt=dict(type='mmdet.L1Loss', loss_weight=70.0),
            loss_oks=dict(type='opera.OKSLoss', loss_weight=2.0),
            loss_kpt_rpn=dict(type='mmdet.L1Loss', loss_weight=70.0),
            loss_hm=dict(type='mmdet.GaussianFocalLoss', loss_weight=4.0),
            loss_kpt_refine=dict(type='mmdet.L1Loss', loss_weight=80.0),
            loss_oks_refine=dict(type='opera.OKSLoss', loss_weight=3.0),
            heatmap_target=dict(stride=8, min_overlap=0.9, max_radius=3))),
    train_cfg=dict(
        assigner=dict(
            type='opera.PoseHungarianAssigner',
            cls_cost=dict(type='opera.FocalLossCost', weight=2.0),
            kpt_cost=dict(type='opera.KptL1Cost', weight=70.0),
            oks_cost=dict(type='opera.OksCost', weight=7.0))),
    # Top-100 persons by score, no NMS.
    test_cfg=dict(max_per_img=100))
