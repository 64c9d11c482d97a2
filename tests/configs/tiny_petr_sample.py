# tiny_petr.py on the person keypoints of the bundled sample
# (demo/data/coco_sample) at a small input size, with a plain pipeline
# (load, resize, flip) so that short CPU runs learn something. Point it at
# other COCO-keypoint data with --cfg-options data_root=... and the
# ann_file / img_prefix keys.
_base_ = ['./tiny_petr.py']
data_root = 'demo/data/coco_sample/'
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
img_scale = (320, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='opera.LoadAnnotations',
        with_bbox=True,
        with_keypoint=True,
        with_area=True),
    dict(type='opera.Resize', img_scale=img_scale, keep_ratio=True),
    dict(type='opera.RandomFlip', flip_ratio=0.0),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=1),
    dict(type='opera.DefaultFormatBundle'),
    dict(
        type='Collect',
        keys=['img', 'gt_bboxes', 'gt_labels', 'gt_keypoints', 'gt_areas'])
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
            dict(type='DefaultFormatBundle'),
            dict(type='Collect', keys=['img'])
        ])
]
# Opera's flip test (the *_flip_test.py configs): each image and its
# horizontal flip; the head maps the flipped persons back and merges both.
flip_test_pipeline = [test_pipeline[0], dict(test_pipeline[1], flip=True)]
sample = dict(
    type='opera.CocoPoseDataset',
    ann_file=data_root + 'annotations/person_keypoints_sample.json',
    img_prefix=data_root + 'images/')
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=0,
    train=dict(**sample, pipeline=train_pipeline),
    val=dict(**sample, pipeline=test_pipeline),
    test=dict(**sample, pipeline=test_pipeline))
optimizer = dict(lr=1e-3)
runner = dict(max_epochs=2)
log_config = dict(interval=1)
checkpoint_config = dict(interval=1)
evaluation = dict(interval=1, save_best=None)
dist_params = dict(backend='gloo')
