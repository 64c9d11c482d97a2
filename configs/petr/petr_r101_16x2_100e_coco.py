# PETR, R101, COCO person keypoints (reference: 70.0 keypoint AP).
_base_ = './petr_r50_16x2_100e_coco.py'
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
