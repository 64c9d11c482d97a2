# H-PETR, R101 (reference: 71.0 keypoint AP). As the released R101 model, the
# refine decoder keeps FFN 1024 (only the pose decoder is ffn2x).
_base_ = './petr_r101_16x2_100e_coco.py'
num_query_one2one = 300
num_query_one2many = 900
self_attn_dp0 = dict(
    type='MultiheadAttention',
    embed_dims=256,
    num_heads=8,
    attn_drop=0.,
    proj_drop=0.)
ffn_dp0 = dict(ffn_drop=0.)
ffn_2x_dp0 = dict(feedforward_channels=2048, ffn_drop=0.)
model = dict(
    bbox_head=dict(
        num_query=num_query_one2one,
        num_query_one2many=num_query_one2many,
        k_one2many=5,
        lambda_one2many=1.0,
        transformer=dict(
            encoder=dict(
                transformerlayers=dict(
                    attn_cfgs=dict(dropout=0.), ffn_cfgs=ffn_dp0)),
            decoder=dict(
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn_dp0,
                        dict(
                            type='PoseDeformableAttention',
                            embed_dims=256,
                            num_points=17,
                            dropout=0.)
                    ],
                    ffn_cfgs=ffn_2x_dp0)),
            hm_encoder=dict(
                transformerlayers=dict(
                    attn_cfgs=dict(dropout=0.), ffn_cfgs=ffn_dp0)),
            refine_decoder=dict(
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn_dp0,
                        dict(
                            type='MultiScaleDeformableAttention',
                            embed_dims=256,
                            dropout=0.)
                    ],
                    ffn_cfgs=ffn_dp0)))))
# 8 GPUs x 1 image, lr unchanged.
data = dict(samples_per_gpu=1)
