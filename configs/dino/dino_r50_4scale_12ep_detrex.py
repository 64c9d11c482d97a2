# detrex's DINO-R50-4scale, 12 epochs (IDEA-Research/detrex
# projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py; its README
# reports 49.2 box AP on COCO val2017), so that its checkpoints converted
# with `tools/model_converters/dino_to_opera.py --layout detrex` load and
# run as trained. It differs from IDEA-Research/DINO's recipe in:
#   - decoder branches: one class / box branch per decoder layer, deep
#     copies (projects/dino/modeling/dino.py, "num_pred" ModuleLists);
#   - sine positions with temperature 10000 and offset -0.5
#     (projects/dino/configs/models/dino_r50.py, position_embedding);
#   - box noise 1.0 (dino_r50.py, box_noise_scale);
#   - backbone: only the stem frozen (dino_r50.py, freeze_at=1: detectron2
#     freezes the stem; frozen_stages=0 here), all BatchNorms frozen as
#     with detectron2's FrozenBN.
# What remains different: detrex runs its test forward with an all-zero
# image mask (dino.py, "img_masks = ...new_zeros" outside training), so its
# sine positions and encoder proposals there see the padding as image; this
# model masks the padding as in training.
_base_ = './dino_r50_4scale_12ep.py'
model = dict(
    backbone=dict(frozen_stages=0),
    bbox_head=dict(
        share_decoder_branches=False,
        fixed_target_groups=[
            dict(
                type='opera.ContrastiveDenoisingQueries',
                dn_number=100,
                box_noise_scale=1.0,
                label_noise_ratio=0.5)
        ],
        positional_encoding=dict(temperature=10000, offset=-0.5)))
