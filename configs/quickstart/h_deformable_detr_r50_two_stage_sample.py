# Quick start: H-Deformable-DETR R50 (the full architecture and losses of
# configs/hdetr/h_deformable_detr_r50_two_stage_12ep.py, randomly initialised)
# trained for a few iterations on the 8 images bundled in demo/data and
# evaluated on the same images, at a small input size so that it runs in a
# few minutes on a laptop CPU. It shows the pipeline working end to end; the
# AP it reaches is not meaningful.
_base_ = ['../hdetr/h_deformable_detr_r50_two_stage_12ep.py']
data_root = 'demo/data/coco_sample/'
model = dict(backbone=dict(init_cfg=None))  # no download at run time
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
img_scale = (480, 320)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=1),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
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
    ann_file=data_root + 'annotations/instances_sample.json',
    img_prefix=data_root + 'images/')
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=1,
    train=dict(**sample, pipeline=train_pipeline),
    val=dict(**sample, pipeline=test_pipeline),
    test=dict(**sample, pipeline=test_pipeline))
optimizer = dict(lr=1e-3)
lr_config = dict(step=[100])
runner = dict(max_epochs=4)
log_config = dict(interval=4)
checkpoint_config = dict(interval=4)
evaluation = dict(interval=4, save_best=None)
dist_params = dict(backend='gloo')
