# petr_swin-l-p4-w7-224-22kto1k_16x1_100e_crowdpose tested with Opera's flip
# test (reference: 72.3 AP on CrowdPose test, 71.7 without): each image and
# its horizontal flip, keypoints of the flipped run mapped back (left/right
# swapped), soft-NMS (IoU 0.5) on the keypoint boxes, top 100.
_base_ = './petr_swin-l-p4-w7-224-22kto1k_16x1_100e_crowdpose.py'
model = dict(
    test_cfg=dict(
        max_per_img=100,
        score_thr=0.,
        nms=dict(type='soft_nms', iou_threshold=0.5)))
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(1333, 800),
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
