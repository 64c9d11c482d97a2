# tiny_petr_sample.py on your own keypoints, by config alone: a 5-keypoint
# layout (names, OKS sigmas, flip pairs, skeleton) defined once here and
# given to the model and the datasets; the number of keypoints (5) and the
# sigmas of the OKS losses, the matcher and the evaluation follow from it.
# The COCO-format json lists 5 keypoints per person (x, y, v each).
# docs/custom_datasets.md explains it; tests/test_custom_datasets.py runs it.
_base_ = ['./tiny_petr_sample.py']
keypoint_layout = dict(
    name='limbs5',
    keypoint_names=[
        'head', 'left_hand', 'right_hand', 'left_foot', 'right_foot'
    ],
    sigmas=[0.05, 0.06, 0.06, 0.08, 0.08],
    flip_pairs=[[1, 2], [3, 4]],
    skeleton=[[0, 1], [0, 2], [0, 3], [0, 4]])
data_root = 'data/limbs5/'
limbs5 = dict(
    type='opera.CocoPoseDataset',
    keypoint_layout=keypoint_layout,
    ann_file=data_root + 'annotations/limbs5.json',
    img_prefix=data_root + 'images/')
model = dict(bbox_head=dict(keypoint_layout=keypoint_layout))
data = dict(train=limbs5, val=limbs5, test=limbs5)
