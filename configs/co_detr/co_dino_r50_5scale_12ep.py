# Co-DINO-5scale R50, 12 epochs (Co-DETR README: 52.1 box AP on COCO
# val2017, this DETR augmentation). Co-DETR's two auxiliary heads on DINO
# (docs/co_detr.md), as Co-DETR's co_dino_5scale_r50_1x_coco.py differs
# from DINO-5scale:
#   one class / box branch per decoder layer (not shared);
#   a quality focal class loss (the IoU of each matched box as its class
#     target), for the matching, denoising, encoder and auxiliary queries;
#   denoising box noise 1.0 (DINO: 0.4);
#   auxiliary heads on the 5 encoder levels + one stride-128 level (strides
#     4-128; the RoI head reads strides 4-64, finest scale 56), their
#     queries content only (DINO's decoder makes the positions);
#   neck convolutions without bias; lr 2e-4, 2 images per GPU;
#   at test a class-wise soft-NMS (IoU 0.8) over the 900 best pairs, 300
#     kept.
_base_ = '../dino/dino_r50_5scale_12ep.py'
num_dec_layer = 6
lambda_2 = 2.0
aux_weight = num_dec_layer * lambda_2
aux_strides = [4, 8, 16, 32, 64, 128]
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
            strides=aux_strides),
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
            featmap_strides=aux_strides[:5],
            finest_scale=56),
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
            strides=aux_strides),
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
    bbox_head=dict(
        share_decoder_branches=False,
        fixed_target_groups=[
            dict(
                type='opera.ContrastiveDenoisingQueries',
                dn_number=100,
                box_noise_scale=1.0,
                label_noise_ratio=0.5),
            dict(
                type='opera.CoDETRAuxiliaryQueries',
                heads=[roi_queries, atss_queries],
                query_embedding=dict(type='opera.AuxiliaryContentEmbedding'))
        ],
        loss_cls=dict(
            _delete_=True,
            type='QualityFocalLoss',
            use_sigmoid=True,
            beta=2.0,
            loss_weight=1.0),
        # The quality focal loss's target score of a matched query's class:
        # its box's IoU with its object.
        criterion=dict(class_targets=dict(type='iou'))),
    test_cfg=dict(max_per_img=300, nms=dict(type='soft_nms',
                                            iou_threshold=0.8)))
data = dict(samples_per_gpu=2)
optimizer = dict(lr=2e-4)
auto_scale_lr = dict(base_batch_size=16)
