# Deformable-DETR + tricks (dp0, mixed query selection, look forward twice),
# R50, 36 epochs, no one-to-many branch (reference: 49.0 box AP).
_base_ = './h_deformable_detr_r50_two_stage_36ep.py'
model = dict(bbox_head=dict(num_query_one2many=0))
