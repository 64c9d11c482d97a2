# Hybrid epoch on the Table 6 baseline (no tricks): one group of 1800
# queries matched to the ground truth repeated K=10 times for the first 2/3
# of the epochs (8 of 12), one-to-one after; all 1800 run at test time
# (paper: 45.5 box AP at 12 epochs). opera.QueryGroupScheduleHook
# (default_runtime.py) sets the epoch.
_base_ = './deformable_detr_r50_two_stage_12ep.py'
model = dict(
    bbox_head=dict(
        num_query=1800,
        query_groups=[
            dict(
                num_queries=1800,
                num_repeats=10,
                at_test=True,
                repeats_schedule=[dict(epoch=8, num_repeats=1)])
        ]))
