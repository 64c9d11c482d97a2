_base_ = './adamw_12e.py'
lr_config = dict(step=[30])
runner = dict(max_epochs=36)
