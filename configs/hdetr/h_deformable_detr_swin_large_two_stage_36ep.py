# H-Deformable-DETR, Swin-L, 36 epochs, drop path 0.5 (reference: 57.1 box
# AP; detrex 57.5).
_base_ = './h_deformable_detr_swin_large_two_stage_12ep.py'
model = dict(backbone=dict(drop_path_rate=0.5))
lr_config = dict(step=[30])
runner = dict(max_epochs=36)
