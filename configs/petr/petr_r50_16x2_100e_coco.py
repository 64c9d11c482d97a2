# PETR, R50, COCO person keypoints, 100 epochs, 16 GPUs x 2 images
# (reference: 68.8 keypoint AP on COCO val2017; 69.3 reproduced).
_base_ = [
    '../_base_/models/petr_r50.py', '../_base_/datasets/coco_keypoint.py',
    '../_base_/schedules/adamw_100e.py', '../_base_/default_runtime.py'
]
# The lr is Opera's for 16 GPUs x 2 images; --auto-scale-lr scales from
# that batch.
auto_scale_lr = dict(base_batch_size=32)
