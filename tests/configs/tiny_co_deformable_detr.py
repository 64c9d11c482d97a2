# Co-Deformable-DETR at CPU-test size: the tiny Deformable-DETR + tricks
# (tiny_h_deformable_detr.py without its one-to-many queries: R18, 2+2
# layers, FFN 256, 20 queries) with Co-DETR's two auxiliary heads, as in
# configs/co_detr/co_deformable_detr_r50_12ep.py but narrow (RPN / ATSS
# 32 channels, RoI fc 64) and with fewer sampled anchors and proposals.
_base_ = ['./tiny_h_deformable_detr.py']
aux_weight = 2 * 2.0  # num_dec_layer x lambda_2
strides = [8, 16, 32, 64, 128]
max_iou = dict(type='MaxIoUAssigner', ignore_iof_thr=-1)
delta_coder = dict(
    type='DeltaXYWHBBoxCoder',
    target_means=[0., 0., 0., 0.],
    target_stds=[0.1, 0.1, 0.2, 0.2])
roi_queries = dict(
    type='opera.CoRoIQueries',
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=32,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=strides),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=True,
            loss_weight=aux_weight),
        loss_bbox=dict(type='L1Loss', loss_weight=aux_weight)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=strides[:4],
            finest_scale=112),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=64,
            roi_feat_size=7,
            bbox_coder=delta_coder,
            reg_decoded_bbox=True,
            loss_cls=dict(type='CrossEntropyLoss', loss_weight=aux_weight),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0 * aux_weight))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                max_iou, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
            sampler=dict(
                type='RandomSampler',
                num=64,
                pos_fraction=0.5,
                add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1),
        rpn_proposal=dict(
            nms_pre=300,
            max_per_img=100,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(
            assigner=dict(
                max_iou,
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False),
            sampler=dict(
                type='RandomSampler',
                num=64,
                pos_fraction=0.25,
                add_gt_as_proposals=True),
            pos_weight=-1)))
atss_queries = dict(
    type='opera.CoATSSQueries',
    head=dict(
        type='ATSSHead',
        in_channels=256,
        stacked_convs=1,
        feat_channels=32,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=strides),
        bbox_coder=delta_coder,
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, loss_weight=aux_weight),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0 * aux_weight),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True,
            loss_weight=aux_weight)),
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1))
model = dict(
    neck=dict(bias=False),
    bbox_head=dict(
        num_query_one2many=0,
        fixed_target_groups=[
            dict(
                type='opera.CoDETRAuxiliaryQueries',
                heads=[roi_queries, atss_queries])
        ]))
