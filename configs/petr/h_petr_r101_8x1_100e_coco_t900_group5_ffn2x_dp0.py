# H-PETR, R101 (reference: 71.0 keypoint AP). As the released R101 model, the
# refine decoder keeps FFN 1024 (only the pose decoder is ffn2x).
_base_ = './h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py'
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')),
    bbox_head=dict(
        transformer=dict(
            refine_decoder=dict(
                transformerlayers=dict(
                    ffn_cfgs=dict(feedforward_channels=1024))))))
