# H-Deformable-DETR, Swin-T, 36 epochs (reference: 53.2 box AP; detrex 53.5).
_base_ = './h_deformable_detr_swin_tiny_two_stage_12ep.py'
lr_config = dict(step=[30])
runner = dict(max_epochs=36)
