# H-DINO-4scale R50, 36 epochs (no published number), lr drop at 30.
_base_ = './h_dino_r50_4scale_12ep.py'
lr_config = dict(step=[30])
runner = dict(max_epochs=36)
