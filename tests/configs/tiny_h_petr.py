# tiny_petr.py with the H-PETR hybrid branch: 10 one-to-one + 20
# one-to-many queries, ground truth tiled K=2 times.
_base_ = ['./tiny_petr.py']
model = dict(
    bbox_head=dict(num_query_one2many=20, k_one2many=2, lambda_one2many=1.0))
