# DINO-4scale Swin-L, 36 epochs (reference: 58.0 box AP), lr drop at 30.
_base_ = './dino_swin_large_4scale_12ep.py'
lr_config = dict(step=[30])
runner = dict(max_epochs=36)
