# The H-Deformable-DETR recipe (hybrid branch, dp0, mixed query selection,
# look forward twice) at CPU-test size: R18, 2+2 layers, FFN 256,
# 20 one-to-one + 40 one-to-many queries with K=2, images resized to at most
# 320x256, no pretrained weights. Tests point data_root at
# ../shared/data/coco_mini via --cfg-options.
_base_ = ['../../configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py']
data_root = 'data/coco/'
num_layers = 2
ffn = dict(feedforward_channels=256)
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[128, 256, 512]),
    bbox_head=dict(
        num_query=20,
        num_query_one2many=40,
        k_one2many=2,
        in_channels=512,
        transformer=dict(
            encoder=dict(
                num_layers=num_layers, transformerlayers=dict(ffn_cfgs=ffn)),
            decoder=dict(
                num_layers=num_layers,
                transformerlayers=dict(ffn_cfgs=ffn)))))
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=(320, 256), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.0),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=1),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(320, 256),
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=1),
            dict(type='DefaultFormatBundle'),  # batches of any size
            dict(type='Collect', keys=['img'])
        ])
]
# Train and evaluate on the same images (overfitting / smoke runs).
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=0,
    train=dict(
        ann_file=data_root + 'annotations/instances_train2017.json',
        img_prefix=data_root + 'train2017/',
        pipeline=train_pipeline),
    val=dict(
        ann_file=data_root + 'annotations/instances_train2017.json',
        img_prefix=data_root + 'train2017/',
        pipeline=test_pipeline),
    test=dict(
        ann_file=data_root + 'annotations/instances_train2017.json',
        img_prefix=data_root + 'train2017/',
        pipeline=test_pipeline))
log_config = dict(interval=1)
runner = dict(max_epochs=2)
evaluation = dict(save_best=None)
dist_params = dict(backend='gloo')
