# H-PETR R50 (h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py) + contrastive
# pose denoising (opera.PoseDenoisingQueries): per person and denoising group
# a positive query (keypoints noised within 0.4 half box sizes, supervised
# by its pose) and a negative one (0.4-0.8, background); 100 // (the batch's
# largest person count) groups, which see the matching queries one way and
# not each other. Training only: at test it is H-PETR (the pose position MLP
# and the label embedding are unused).
# No published numbers: neither PETR nor H-PETR was trained with denoising,
# and this recipe has not been trained to completion here. dn_number and
# label_noise_ratio are DINO's 4-scale values; keypoint_noise_scale is DINO's
# box_noise_scale in the same unit (half box sizes), not tuned for poses.
_base_ = './h_petr_r50_8x1_100e_coco_t900_group5_ffn2x_dp0.py'
model = dict(
    bbox_head=dict(
        transformer=dict(given_pose_queries=True),
        fixed_target_groups=[
            dict(
                type='opera.PoseDenoisingQueries',
                dn_number=100,
                keypoint_noise_scale=0.4,
                label_noise_ratio=0.5,
                name='dn',
                loss_weight=1.0)
        ]))
