# DINO-4scale R50, 24 epochs (reference: 50.4 box AP). The DINO repository
# does not give the lr step of its longer runs; here it drops at epoch 20.
_base_ = './dino_r50_4scale_12ep.py'
lr_config = dict(step=[20])
runner = dict(max_epochs=24)
