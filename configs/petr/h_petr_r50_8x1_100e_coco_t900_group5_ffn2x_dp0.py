# H-PETR, R50: PETR + a one-to-many group of 900 queries matched to the
# ground truth tiled K=5 times (t900_group5), FFN 2048 in the pose and refine
# decoders (ffn2x), and dropout 0 in every FFN and multi-head self-attention
# (dp0) (reference: 70.9 keypoint AP). As in the released recipe, the
# deformable attentions (encoder, pose decoder, refine decoder, heatmap
# encoder) keep PETR's dropout 0.1. Only the 300 one-to-one queries run at
# test time.
_base_ = './petr_r50_16x2_100e_coco.py'
num_query_one2one = 300
num_query_one2many = 900
self_attn_dp0 = dict(
    type='opera.MultiheadAttention',
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
            encoder=dict(transformerlayers=dict(ffn_cfgs=ffn_dp0)),
            decoder=dict(
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn_dp0,
                        dict(
                            type='opera.PoseDeformableAttention',
                            embed_dims=256,
                            dropout=0.1)
                    ],
                    ffn_cfgs=ffn_2x_dp0)),
            hm_encoder=dict(transformerlayers=dict(ffn_cfgs=ffn_dp0)),
            refine_decoder=dict(
                transformerlayers=dict(
                    attn_cfgs=[
                        self_attn_dp0,
                        dict(
                            type='opera.MultiScaleDeformableAttention',
                            embed_dims=256,
                            dropout=0.1)
                    ],
                    ffn_cfgs=ffn_2x_dp0)))))
# 8 GPUs x 1 image, lr unchanged (H-PETR's recipe): --auto-scale-lr scales
# from that batch of 8.
data = dict(samples_per_gpu=1)
auto_scale_lr = dict(base_batch_size=8)
