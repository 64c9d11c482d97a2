# The one-to-one twin of h_petr_r18_sample.py: the same model, data and
# schedule without the one-to-many branch.
_base_ = './h_petr_r18_sample.py'
model = dict(bbox_head=dict(num_query_one2many=0))
