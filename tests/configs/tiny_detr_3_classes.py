# tiny_h_deformable_detr.py on 3 of the COCO classes, by config alone: the
# datasets keep only these classes (labels 0, 1, 2 in this order, which must
# be the order of the json's categories) and the head predicts 3.
# docs/custom_datasets.md explains it; tests/test_custom_datasets.py runs it.
_base_ = ['./tiny_h_deformable_detr.py']
classes = ('person', 'car', 'dog')
# mmdet's DETR heads keep the top max_per_img of num_query x num_classes
# scores: with 20 queries and 3 classes at most 60 (the default 100 fails).
model = dict(
    bbox_head=dict(num_classes=len(classes)), test_cfg=dict(max_per_img=50))
data = dict(
    train=dict(classes=classes),
    val=dict(classes=classes),
    test=dict(classes=classes))
