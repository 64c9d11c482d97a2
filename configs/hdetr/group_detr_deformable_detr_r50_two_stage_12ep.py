# Group DETR on the Table 6 baseline (no tricks): 11 groups of 300
# one-to-one queries, each attending to itself only and matched to the plain
# ground truth; only the first group runs at test time. 11 is Group DETR's
# default (arXiv 2207.13085). Group g takes the proposals ranked
# 300g+1..300g+300: this baseline has no learned query content, so groups fed
# the same proposals would be identical copies of each other.
_base_ = './deformable_detr_r50_two_stage_12ep.py'
num_groups = 11
model = dict(
    bbox_head=dict(query_groups=[
        dict(num_queries=300, at_test=(g == 0)) for g in range(num_groups)
    ]))
