# petr_r50_16x2_100e_coco tested on each image and its horizontal flip, the
# two sets of persons merged as Opera's flip test: keypoints of the flipped
# run mapped back (left/right swapped), soft-NMS (IoU 0.5) on the keypoint
# boxes, top 100. For an NMS by pose similarity use
# nms=dict(type='oks_nms', oks_thr=0.9) (docs/model_zoo.md).
_base_ = './petr_r50_16x2_100e_coco.py'
model = dict(
    test_cfg=dict(
        max_per_img=100,
        score_thr=0.,
        nms=dict(type='soft_nms', iou_threshold=0.5)))
test_pipeline = {{_base_.flip_test_pipeline}}
data = dict(
    val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
