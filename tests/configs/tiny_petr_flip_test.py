# tiny_petr_sample.py tested with the flip test of
# configs/petr/petr_r50_16x2_100e_coco_flip_test.py: each image and its
# horizontal flip, merged by soft-NMS (IoU 0.5), top max_per_img.
_base_ = ['./tiny_petr_sample.py']
model = dict(
    test_cfg=dict(
        max_per_img=5,
        score_thr=0.,
        nms=dict(type='soft_nms', iou_threshold=0.5)))
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(320, 256),
        flip=True,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=1),
            dict(type='DefaultFormatBundle'),
            dict(type='Collect', keys=['img'])
        ])
]
data = dict(
    val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
