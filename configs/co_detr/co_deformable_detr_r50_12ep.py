# Co-Deformable-DETR, R50, 12 epochs (Co-DETR README: 49.5 box AP on COCO
# val2017). The Deformable-DETR + tricks base (two-stage, box refine, mixed
# query selection, look forward twice, dropout 0, 300 queries) plus Co-DETR's
# two auxiliary heads on a pyramid made from the encoder memory, whose
# positives supervise the decoder in training (docs/co_detr.md):
#   aux0: RPN + Faster R-CNN RoI head (Shared2FC box head, GIoU loss);
#   aux1: ATSS (one 3x3 conv per branch).
# Their own losses are mmdet's weights times num_dec_layer x lambda_2; their
# decoder queries' losses weigh lambda_1 = 1. Nothing of them runs at test.
# Co-DETR's neck convolutions have no bias (the norm follows).
_base_ = '../hdetr/deformable_detr_tricks_r50_two_stage_12ep.py'
num_dec_layer = 6
lambda_2 = 2.0
aux_weight = num_dec_layer * lambda_2
roi_queries = dict(
    type='opera.CoRoIQueries',
    max_per_image=300,
    loss_weight=1.0,
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=True,
            loss_weight=1.0 * aux_weight),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0 * aux_weight)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[8, 16, 32, 64],
            finest_scale=112),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False,
                loss_weight=1.0 * aux_weight),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0 * aux_weight))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=256,
                pos_fraction=0.5,
                neg_pos_ub=-1,
                add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(
            nms_pre=4000,
            max_per_img=1000,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=512,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False)))
atss_queries = dict(
    type='opera.CoATSSQueries',
    max_per_image=300,
    loss_weight=1.0,
    head=dict(
        type='ATSSHead',
        in_channels=256,
        stacked_convs=1,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0 * aux_weight),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0 * aux_weight),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True,
            loss_weight=1.0 * aux_weight)),
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1,
        debug=False))
model = dict(
    neck=dict(bias=False),
    bbox_head=dict(fixed_target_groups=[
        dict(
            type='opera.CoDETRAuxiliaryQueries',
            heads=[roi_queries, atss_queries])
    ]))
