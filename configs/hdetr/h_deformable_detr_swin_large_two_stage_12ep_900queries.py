# H-Deformable-DETR, Swin-L, 12 epochs, 900 one-to-one queries (reference:
# 56.1 box AP; detrex 56.4).
_base_ = './h_deformable_detr_swin_large_two_stage_12ep.py'
model = dict(bbox_head=dict(num_query=900))
