# The PETR recipe at CPU-test size: R18, 1 encoder / 2 pose-decoder /
# 2 refine-decoder layers, FFN 64, pose branches 64 wide, 10 queries, no
# pretrained weights. Every dropout is 0 so train and eval outputs compare.
_base_ = ['../../configs/petr/petr_r50_16x2_100e_coco.py']
ffn = dict(feedforward_channels=64, ffn_drop=0.)
self_attn = dict(
    type='opera.MultiheadAttention',
    embed_dims=256,
    num_heads=8,
    attn_drop=0.,
    proj_drop=0.)
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[128, 256, 512]),
    bbox_head=dict(
        num_query=10,
        kpt_hidden_dims=64,
        transformer=dict(
            encoder=dict(
                num_layers=1,
                transformerlayers=dict(
                    attn_cfgs=dict(dropout=0.), ffn_cfgs=ffn)),
            decoder=dict(
                num_layers=2,
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn,
                        dict(
                            type='opera.PoseDeformableAttention',
                            embed_dims=256,
                            dropout=0.)
                    ],
                    ffn_cfgs=ffn)),
            hm_encoder=dict(
                transformerlayers=dict(
                    attn_cfgs=dict(dropout=0.), ffn_cfgs=ffn)),
            refine_decoder=dict(
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn,
                        dict(
                            type='opera.MultiScaleDeformableAttention',
                            embed_dims=256,
                            dropout=0.)
                    ],
                    ffn_cfgs=ffn)))),
    test_cfg=dict(max_per_img=5))
