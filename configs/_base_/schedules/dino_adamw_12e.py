# DINO's AdamW: lr 1e-4, the backbone's 1e-5, weight decay 1e-4, grad clip
# 0.1 (param_dict_type 'default': no lr multiplier for the deformable
# attention's offsets); lr x0.1 after epoch 11.
_base_ = './adamw_12e.py'
optimizer = dict(
    lr=1e-4,
    paramwise_cfg=dict(
        _delete_=True, custom_keys={'backbone': dict(lr_mult=0.1)}))
