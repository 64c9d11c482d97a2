# DINO-5scale R50, 12 epochs (reference: 49.4 box AP; 24 epochs 51.3):
# the stride-4 level too (return_interm_indices [0, 1, 2, 3]), 5 levels in
# the encoder and decoder attention. DINO trains it with 1 image per GPU.
_base_ = './dino_r50_4scale_12ep.py'
num_levels = 5
model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[256, 512, 1024, 2048], num_outs=num_levels),
    bbox_head=dict(
        transformer=dict(
            num_feature_levels=num_levels,
            encoder=dict(
                transformerlayers=dict(
                    attn_cfgs=dict(num_levels=num_levels))),
            decoder=dict(
                transformerlayers=dict(attn_cfgs=[
                    dict(
                        type='opera.MultiheadAttention',
                        embed_dims=256,
                        num_heads=8,
                        attn_drop=0.0,
                        proj_drop=0.0),
                    dict(
                        type='opera.MultiScaleDeformableAttention',
                        embed_dims=256,
                        num_levels=num_levels,
                        dropout=0.0)
                ])))))
data = dict(samples_per_gpu=1)
auto_scale_lr = dict(base_batch_size=8)
