# Co-Deformable-DETR, Swin-T, 36 epochs (Co-DETR README: 54.1 box AP):
# the 12-epoch recipe with drop path 0.3 and the lr step at epoch 30.
_base_ = './co_deformable_detr_swin_tiny_12ep.py'
model = dict(backbone=dict(drop_path_rate=0.3))
lr_config = dict(step=[30])
runner = dict(max_epochs=36)
