# Quick start, pose (bash tools/quickstart.sh --pose): H-PETR (the recipe of
# configs/petr/h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py) shrunk to
# fit the persons of 2 images of demo/data/coco_sample on a CPU (images
# 30752 and 183872, one person each: annotations/person_keypoints_quickstart.json):
# ResNet-18 from random init, 1 encoder / 2 pose-decoder / 2 refine-decoder
# layers, FFN 256, pose branches 64 wide, 10 one-to-one + 30 one-to-many
# queries with K=3, images at most 320x256, every dropout 0, 80 iterations.
# Trained and evaluated (keypoint AP) on the same images.
_base_ = ['../petr/h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py']
data_root = 'demo/data/coco_sample/'
ffn = dict(feedforward_channels=256, ffn_drop=0.)
self_attn = dict(
    type='opera.MultiheadAttention',
    embed_dims=256,
    num_heads=8,
    attn_drop=0.,
    proj_drop=0.)
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
        num_query=10,
        num_query_one2many=30,
        k_one2many=3,
        kpt_hidden_dims=64,
        transformer=dict(
            encoder=dict(
                num_layers=1,
                transformerlayers=dict(
                    attn_cfgs=dict(dropout=0.), ffn_cfgs=ffn)),
            decoder=dict(
                num_layers=2,
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn,
                        dict(
                            type='opera.PoseDeformableAttention',
                            embed_dims=256,
                            dropout=0.)
                    ],
                    ffn_cfgs=ffn)),
            hm_encoder=dict(
                transformerlayers=dict(
                    attn_cfgs=dict(dropout=0.), ffn_cfgs=ffn)),
            refine_decoder=dict(
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn,
                        dict(
                            type='opera.MultiScaleDeformableAttention',
                            embed_dims=256,
                            dropout=0.)
                    ],
                    ffn_cfgs=ffn)))),
    test_cfg=dict(max_per_img=10))  # at most the 10 one-to-one queries
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
img_scale = (320, 256)
# No augmentation: the point is to fit these images.
train_pipeline = [
    dict(type='opera.LoadImageFromFile'),
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
            dict(type='DefaultFormatBundle'),
            dict(type='Collect', keys=['img'])
        ])
]
sample = dict(
    type='opera.CocoPoseDataset',
    ann_file=data_root + 'annotations/person_keypoints_quickstart.json',
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
# 2 images, 2 per batch: 80 iterations.
runner = dict(max_epochs=80)
log_config = dict(interval=1)
checkpoint_config = dict(interval=80, max_keep_ckpts=1)
evaluation = dict(interval=20, save_best=None)
dist_params = dict(backend='gloo')
# The lr is set for one process x 2 images.
auto_scale_lr = dict(base_batch_size=2)
