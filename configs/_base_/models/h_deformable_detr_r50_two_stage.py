# H-Deformable-DETR R50 (official recipe
# "hybrid_branch_lambda1_group6_t1500_dp0_mqs_lft"): the two-stage
# Deformable-DETR base plus
#   hybrid branch: 300 one-to-one + 1500 one-to-many queries, K=6, lambda 1;
#   dp0: every dropout 0, the deformable attention's own included;
#   mqs: mixed query selection; lft: look forward twice.
_base_ = './deformable_detr_r50_two_stage.py'
no_dropout_ffn = dict(ffn_drop=0.0)
model = dict(
    bbox_head=dict(
        num_query=300,
        num_query_one2many=1500,
        k_one2many=6,
        lambda_one2many=1.0,
        transformer=dict(
            mixed_selection=True,
            encoder=dict(
                transformerlayers=dict(
                    attn_cfgs=dict(dropout=0.0), ffn_cfgs=no_dropout_ffn)),
            decoder=dict(
                look_forward_twice=True,
                transformerlayers=dict(
                    attn_cfgs=[
                        dict(
                            type='opera.MultiheadAttention',
                            embed_dims=256,
                            num_heads=8,
                            attn_drop=0.0,
                            proj_drop=0.0),
                        dict(
                            type='opera.MultiScaleDeformableAttention',
                            embed_dims=256,
                            dropout=0.0)
                    ],
                    ffn_cfgs=no_dropout_ffn)))))
