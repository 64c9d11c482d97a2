# Deformable-DETR, two-stage + iterative box refinement, R50, 36 epochs
# (reference: 46.8 box AP on COCO val2017).
_base_ = [
    '../_base_/models/deformable_detr_r50_two_stage.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_36e.py', '../_base_/default_runtime.py'
]
# The lr above is for a total batch of 16, 8 GPUs x 2 images: the official
# recipe (public HDETR/H-Deformable-DETR code: its README trains on 8 GPUs,
# main.py --batch_size 2 per GPU); --auto-scale-lr scales from that batch.
auto_scale_lr = dict(base_batch_size=16)
