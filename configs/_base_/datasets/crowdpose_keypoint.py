# CrowdPose (14 keypoints): train on train + val, test on test, with the
# COCO keypoint augmentation (see coco_keypoint.py) plus +-2 deg shear as in
# the PETR CrowdPose recipe. Layout: data/crowdpose/images/*.jpg and
# data/crowdpose/annotations/json/crowdpose_{train,val,test}.json.
dataset_type = 'opera.CrowdPoseDataset'
data_root = 'data/crowdpose/'
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
# Short side sampled in [400, 1400], long side capped at 1400.
train_scales = [(400, 1400), (1400, 1400)]
train_pipeline = [
    dict(type='opera.LoadImageFromFile', to_float32=True),
    dict(
        type='opera.LoadAnnotations',
        with_bbox=True,
        with_keypoint=True,
        with_area=True),
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18),
    dict(
        type='opera.RandomAffine',
        max_rotate_degree=30.0,
        max_shear_degree=2.0,
        # the image is still BGR here: fill with the mean colour
        border_val=img_norm_cfg['mean'][::-1]),
    dict(type='opera.RandomFlip', flip_ratio=0.5),
    dict(
        type='AutoAugment',
        policies=[[
            dict(
                type='opera.Resize',
                img_scale=train_scales,
                multiscale_mode='range',
                keep_ratio=True)
        ],
                  [
                      dict(
                          type='opera.Resize',
                          # long side 4200: only the short side binds
                          img_scale=[(400, 4200), (500, 4200), (600, 4200)],
                          multiscale_mode='value',
                          keep_ratio=True),
                      dict(
                          type='opera.RandomCrop',
                          crop_type='absolute_range',
                          crop_size=(384, 600),
                          # a crop without persons is redrawn, as in PETR
                          allow_negative_crop=False),
                      dict(
                          type='opera.Resize',
                          img_scale=train_scales,
                          multiscale_mode='range',
                          override=True,
                          keep_ratio=True)
                  ]]),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=1),
    dict(type='opera.DefaultFormatBundle'),
    dict(
        type='Collect',
        keys=['img', 'gt_bboxes', 'gt_labels', 'gt_keypoints', 'gt_areas'])
]
test_pipeline = [
    dict(type='opera.LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(1333, 800),
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
# Opera's flip test (the *_flip_test.py configs): each image and its
# horizontal flip; the head maps the flipped persons back and merges both.
flip_test_pipeline = [test_pipeline[0], dict(test_pipeline[1], flip=True)]
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=2,
    train=dict(
        type='ConcatDataset',
        datasets=[
            dict(
                type=dataset_type,
                ann_file=data_root + 'annotations/json/crowdpose_train.json',
                img_prefix=data_root + 'images/',
                pipeline=train_pipeline),
            dict(
                type=dataset_type,
                ann_file=data_root + 'annotations/json/crowdpose_val.json',
                img_prefix=data_root + 'images/',
                pipeline=train_pipeline)
        ]),
    val=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/json/crowdpose_test.json',
        img_prefix=data_root + 'images/',
        pipeline=test_pipeline),
    test=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/json/crowdpose_test.json',
        img_prefix=data_root + 'images/',
        pipeline=test_pipeline))
evaluation = dict(interval=1, metric='keypoints')
