# PETR, R50, COCO person keypoints, 100 epochs, 16 GPUs x 2 images
# (reference: 68.8 keypoint AP on COCO val2017; 69.3 reproduced).
_base_ = [
    '../_base_/models/petr_r50.py', '../_base_/datasets/coco_keypoint.py',
    '../_base_/schedules/adamw_100e.py', '../_base_/default_runtime.py'
]
# The recipe's batch (--auto-scale-lr scales lr by the effective batch over
# this).
auto_scale_lr = dict(base_batch_size=32)
