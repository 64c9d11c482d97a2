# H-PETR R50 (ffn2x, dp0) with the hybrid-layer scheme instead of the hybrid
# branch: one group of 1200 queries matched to the ground truth repeated K=5
# times at the first 2 of the 3 pose-decoder layers and one-to-one at the
# last (whose persons the refine decoder trains on); all 1200 run at test
# time. No published numbers: the paper reports this scheme for detection
# only.
_base_ = './h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py'
model = dict(
    bbox_head=dict(
        num_query=1200,
        num_query_one2many=0,
        query_groups=[dict(num_queries=1200, num_repeats=[5, 5, 1],
                           at_test=True)]))
