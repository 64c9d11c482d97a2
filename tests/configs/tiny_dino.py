# The DINO-4scale recipe at CPU-test size: R18, 2+2 layers, FFN 256,
# 30 queries, denoising with dn_number 10, no pretrained weights; the data
# of tiny_coco_detection.py.
_base_ = [
    '../../configs/_base_/models/dino_r50_4scale.py',
    './tiny_coco_detection.py',
    '../../configs/_base_/schedules/dino_adamw_12e.py',
    '../../configs/_base_/default_runtime.py'
]
num_layers = 2
ffn = dict(feedforward_channels=256)
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[128, 256, 512]),
    bbox_head=dict(
        num_query=30,
        in_channels=512,
        fixed_target_groups=[
            dict(type='opera.ContrastiveDenoisingQueries', dn_number=10)
        ],
        transformer=dict(
            encoder=dict(
                num_layers=num_layers, transformerlayers=dict(ffn_cfgs=ffn)),
            decoder=dict(
                num_layers=num_layers,
                transformerlayers=dict(ffn_cfgs=ffn)))),
    test_cfg=dict(max_per_img=100))
# Short runs, a log line per iteration.
log_config = dict(interval=1)
runner = dict(max_epochs=2)
evaluation = dict(save_best=None)
