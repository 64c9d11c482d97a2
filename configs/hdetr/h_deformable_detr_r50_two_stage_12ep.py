# H-Deformable-DETR, R50, 12 epochs (reference: 48.7 box AP on COCO
# val2017; detrex conversion 48.9).
_base_ = [
    '../_base_/models/h_deformable_detr_r50_two_stage.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_12e.py', '../_base_/default_runtime.py'
]
