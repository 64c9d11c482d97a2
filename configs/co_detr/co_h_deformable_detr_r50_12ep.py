# Co-Deformable-DETR R50 with H-Deformable-DETR's hybrid branch (1500
# one-to-many queries, K = 6): both ways of giving the decoder more
# positives in one model. No published number: neither Co-DETR nor
# H-DETR trained this combination.
_base_ = './co_deformable_detr_r50_12ep.py'
model = dict(bbox_head=dict(num_query_one2many=1500, k_one2many=6))
