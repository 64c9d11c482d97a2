# petr_r50_16x2_100e_coco.py, trained on COCO,
# evaluated on the OCHuman val split (heavily occluded persons; COCO
# keypoint AP). OCHuman has no training split. Files (docs/custom_datasets.md):
# data/ochuman/images/*.jpg and data/ochuman/annotations/
# ochuman_coco_format_val_range_0.00_1.00.json.
_base_ = './petr_r50_16x2_100e_coco.py'
data_root = 'data/ochuman/'
ochuman_val = dict(
    type='opera.OCHumanDataset',
    ann_file=data_root +
    'annotations/ochuman_coco_format_val_range_0.00_1.00.json',
    img_prefix=data_root + 'images/')
data = dict(val=ochuman_val, test=ochuman_val)
