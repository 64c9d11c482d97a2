# H-Deformable-DETR, Swin-L, 36 epochs, drop path 0.5, 900 one-to-one queries
# (reference: 57.4 box AP; detrex 57.7).
_base_ = './h_deformable_detr_swin_large_two_stage_36ep.py'
model = dict(bbox_head=dict(num_query=900))
