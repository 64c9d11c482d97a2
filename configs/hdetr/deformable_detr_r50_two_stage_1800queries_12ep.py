# The paper's Table 6 baseline with 1800 one-to-one queries at train and
# test: two-stage Deformable-DETR + box refinement, R50, FFN 2048, no tricks
# (paper: 44.1 / 46.6 / 47.1 box AP at 12 / 24 / 36 epochs).
_base_ = './deformable_detr_r50_two_stage_12ep.py'
model = dict(bbox_head=dict(num_query=1800))
