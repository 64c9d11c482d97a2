# tiny_h_petr.py with contrastive pose denoising: about 2 x 12 denoising
# queries per batch (dn_number=12), keypoints noised by 0.4 half box sizes
# (positives) and 0.4-0.8 (negatives). Same model as
# configs/petr/h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0_dn.py at
# CPU-test size.
_base_ = ['./tiny_h_petr.py']
model = dict(
    bbox_head=dict(
        transformer=dict(given_pose_queries=True),
        fixed_target_groups=[
            dict(
                type='opera.PoseDenoisingQueries',
                dn_number=12,
                keypoint_noise_scale=0.4,
                label_noise_ratio=0.5)
        ]))
