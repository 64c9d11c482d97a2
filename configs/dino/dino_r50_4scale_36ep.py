# DINO-4scale R50, 36 epochs (reference: 50.9 box AP). The DINO repository
# does not give the lr step of its longer runs; here it drops at epoch 30.
_base_ = './dino_r50_4scale_12ep.py'
lr_config = dict(step=[30])
runner = dict(max_epochs=36)
