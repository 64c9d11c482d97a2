# PETR, R50, CrowdPose (14 keypoints): 3 refine-decoder layers, CrowdPose
# OKS sigmas in the OKS loss and cost.
_base_ = [
    '../_base_/models/petr_r50.py', '../_base_/datasets/crowdpose_keypoint.py',
    '../_base_/schedules/adamw_100e.py', '../_base_/default_runtime.py'
]
num_keypoints = 14
model = dict(
    bbox_head=dict(
        num_keypoints=num_keypoints,
        transformer=dict(
            num_keypoints=num_keypoints,
            decoder=dict(
                num_keypoints=num_keypoints,
                transformerlayers=dict(attn_cfgs=[
                    {{_base_.self_attn}},
                    dict(
                        type='PoseDeformableAttention',
                        embed_dims={{_base_.embed_dims}},
                        num_points=num_keypoints,
                        dropout=0.1)
                ])),
            refine_decoder=dict(num_layers=3)),
        loss_oks=dict(num_keypoints=num_keypoints),
        loss_oks_refine=dict(num_keypoints=num_keypoints)),
    train_cfg=dict(
        assigner=dict(oks_cost=dict(num_keypoints=num_keypoints))))
