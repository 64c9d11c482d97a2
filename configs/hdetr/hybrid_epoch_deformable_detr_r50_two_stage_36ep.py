# Hybrid epoch, 36 epochs: one group of 1800 queries, K=10 for the first 24
# epochs, one-to-one after; all 1800 at test time (paper: 47.9 box AP).
_base_ = './deformable_detr_r50_two_stage_36ep.py'
model = dict(
    bbox_head=dict(
        num_query=1800,
        query_groups=[
            dict(
                num_queries=1800,
                num_repeats=10,
                at_test=True,
                repeats_schedule=[dict(epoch=24, num_repeats=1)])
        ]))
