# PETR, R50, CrowdPose: the CrowdPose keypoint layout (names, OKS sigmas,
# flip pairs, skeleton; opera/core/keypoint/layouts.py) is named once, for
# the head; the number of keypoints and the sigmas of the OKS losses and the
# matcher follow from it (the datasets, opera.CrowdPoseDataset, have it by
# type). 3 refine-decoder layers.
_base_ = [
    '../_base_/models/petr_r50.py', '../_base_/datasets/crowdpose_keypoint.py',
    '../_base_/schedules/adamw_100e.py', '../_base_/default_runtime.py'
]
model = dict(
    bbox_head=dict(
        keypoint_layout='crowdpose',
        transformer=dict(refine_decoder=dict(num_layers=3))))
# The recipe's batch (--auto-scale-lr scales lr by the effective batch over
# this).
auto_scale_lr = dict(base_batch_size=32)
