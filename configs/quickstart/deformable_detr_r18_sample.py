# The one-to-one twin of h_deformable_detr_r18_sample.py: the same model,
# data and schedule without the one-to-many branch (Deformable-DETR + tricks).
_base_ = './h_deformable_detr_r18_sample.py'
model = dict(bbox_head=dict(num_query_one2many=0))
