# Hybrid layer on the Table 6 baseline (no tricks): one group of 1800
# queries matched to the ground truth repeated K=10 times at the first 4
# decoder layers and one-to-one at the last 2; all 1800 run at test time
# (paper: 45.6 / 47.9 / 48.0 box AP at 12 / 24 / 36 epochs).
_base_ = './deformable_detr_r50_two_stage_12ep.py'
model = dict(
    bbox_head=dict(
        num_query=1800,
        query_groups=[
            dict(num_queries=1800, num_repeats=[10, 10, 10, 10, 1, 1],
                 at_test=True)
        ]))
