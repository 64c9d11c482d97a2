# petr_swin-l-p4-w7-224-22kto1k_16x1_100e_crowdpose tested with Opera's flip
# test (reference: 72.3 AP on CrowdPose test, 71.7 without): each image and
# its horizontal flip, keypoints of the flipped run mapped back (left/right
# swapped), soft-NMS (IoU 0.5) on the keypoint boxes, top 100.
_base_ = './petr_swin-l-p4-w7-224-22kto1k_16x1_100e_crowdpose.py'
model = dict(
    test_cfg=dict(
        max_per_img=100,
        score_thr=0.,
        nms=dict(type='soft_nms', iou_threshold=0.5)))
test_pipeline = {{_base_.flip_test_pipeline}}
data = dict(
    val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
