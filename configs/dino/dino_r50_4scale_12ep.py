# DINO-4scale R50, 12 epochs (reference: 49.0 box AP on COCO val2017).
_base_ = [
    '../_base_/models/dino_r50_4scale.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/dino_adamw_12e.py', '../_base_/default_runtime.py'
]
# DINO's lr is for 8 GPUs x 2 images; --auto-scale-lr scales from that batch.
auto_scale_lr = dict(base_batch_size=16)
