# h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py, trained on COCO,
# evaluated on the OCHuman test split (heavily occluded persons; COCO
# keypoint AP). OCHuman has no training split. Files (docs/custom_datasets.md):
# data/ochuman/images/*.jpg and data/ochuman/annotations/
# ochuman_coco_format_test_range_0.00_1.00.json.
_base_ = './h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py'
data_root = 'data/ochuman/'
ochuman_test = dict(
    type='opera.OCHumanDataset',
    ann_file=data_root +
    'annotations/ochuman_coco_format_test_range_0.00_1.00.json',
    img_prefix=data_root + 'images/')
data = dict(val=ochuman_test, test=ochuman_test)
