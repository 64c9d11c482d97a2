# H-Deformable-DETR, R50, 36 epochs (reference: 50.0 box AP on COCO
# val2017; detrex conversion 50.3).
_base_ = [
    '../_base_/models/h_deformable_detr_r50_two_stage.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_36e.py', '../_base_/default_runtime.py'
]
