# The H-Deformable-DETR recipe (hybrid branch, dp0, mixed query selection,
# look forward twice) at CPU-test size: R18, 2+2 layers, FFN 256,
# 20 one-to-one + 40 one-to-many queries with K=2, no pretrained weights;
# the data of tiny_coco_detection.py.
_base_ = [
    '../../configs/_base_/models/h_deformable_detr_r50_two_stage.py',
    './tiny_coco_detection.py', '../../configs/_base_/schedules/adamw_12e.py',
    '../../configs/_base_/default_runtime.py'
]
auto_scale_lr = dict(base_batch_size=16)
num_layers = 2
ffn = dict(feedforward_channels=256)
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[128, 256, 512]),
    bbox_head=dict(
        num_query=20,
        num_query_one2many=40,
        k_one2many=2,
        in_channels=512,
        transformer=dict(
            encoder=dict(
                num_layers=num_layers, transformerlayers=dict(ffn_cfgs=ffn)),
            decoder=dict(
                num_layers=num_layers,
                transformerlayers=dict(ffn_cfgs=ffn)))))
# Short runs, a log line per iteration, gloo for distributed tests on CPU.
log_config = dict(interval=1)
runner = dict(max_epochs=2)
evaluation = dict(save_best=None)
dist_params = dict(backend='gloo')
