# Quick start: H-Deformable-DETR (the recipe of
# configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py: two-stage proposals,
# box refinement, hybrid branch, dp0, mixed query selection, look forward
# twice) shrunk to learn on a CPU in about two minutes: ResNet-18 from random
# init, 2 encoder + 2 decoder layers, FFN 256, 30 one-to-one + 90
# one-to-many queries with K=3, images at most 320x256, 40 iterations.
# It trains and evaluates on the same 2 images of demo/data/coco_sample
# (instances_quickstart.json: 418049 and 551757, 6 objects of 5 classes;
# all 8 images need more iterations than the quick start's time allows).
# It shows a DETR fitting a few images, not a detector that generalises.
_base_ = ['../hdetr/h_deformable_detr_r50_two_stage_12ep.py']
data_root = 'demo/data/coco_sample/'
num_layers = 2
ffn = dict(feedforward_channels=256)
model = dict(
    # Random init (no download at run time), so every stage and every
    # batch norm trains.
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[128, 256, 512]),
    bbox_head=dict(
        num_query=30,
        num_query_one2many=90,
        k_one2many=3,
        in_channels=512,
        transformer=dict(
            encoder=dict(
                num_layers=num_layers, transformerlayers=dict(ffn_cfgs=ffn)),
            decoder=dict(
                num_layers=num_layers,
                transformerlayers=dict(ffn_cfgs=ffn)))))
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
img_scale = (320, 256)
# No augmentation: the point is to fit these images.
train_pipeline = [
    dict(type='opera.LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.0),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=1),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])
]
test_pipeline = [
    dict(type='opera.LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=img_scale,
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
sample = dict(
    ann_file=data_root + 'annotations/instances_quickstart.json',
    img_prefix=data_root + 'images/')
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=0,
    train=dict(**sample, pipeline=train_pipeline),
    val=dict(**sample, pipeline=test_pipeline),
    test=dict(**sample, pipeline=test_pipeline))
# A randomly initialised backbone learns at the full rate (the x0.1 of the
# base recipe is for pretrained weights).
optimizer = dict(
    lr=1e-3,
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))
lr_config = dict(policy='step', step=[1000])  # constant lr
# 2 images, 2 per batch: one iteration per epoch.
runner = dict(max_epochs=40)
log_config = dict(interval=1)
checkpoint_config = dict(interval=40, max_keep_ckpts=1)
evaluation = dict(interval=10, save_best=None)
dist_params = dict(backend='gloo')
# The lr is set for one process x 2 images.
auto_scale_lr = dict(base_batch_size=2)
