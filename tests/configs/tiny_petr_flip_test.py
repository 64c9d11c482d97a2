# tiny_petr_sample.py tested with the flip test of
# configs/petr/petr_r50_16x2_100e_coco_flip_test.py: each image and its
# horizontal flip, merged by soft-NMS (IoU 0.5), top max_per_img.
_base_ = ['./tiny_petr_sample.py']
model = dict(
    test_cfg=dict(
        max_per_img=5,
        score_thr=0.,
        nms=dict(type='soft_nms', iou_threshold=0.5)))
test_pipeline = {{_base_.flip_test_pipeline}}
data = dict(
    val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
