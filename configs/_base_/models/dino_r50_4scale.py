# DINO-4scale R50 (IDEA-Research/DINO config/DINO/DINO_4scale.py) on the
# H-Deformable-DETR base with every dropout 0 and mixed query selection:
#   900 queries; 6 + 6 layers, d=256, 8 heads, 4 levels, 4 points, FFN 2048;
#   DinoTransformer: encoder proposals ranked and trained with the classes,
#     positional queries made from each decoder layer's boxes, one norm on
#     every decoder layer's output, look forward twice;
#   one class / box branch shared by the decoder layers (the encoder keeps
#     its own);
#   contrastive denoising (dn_number 100, box noise 0.4, label noise 0.5);
#   sine positions with temperature 20 (pe_temperatureH/W) and no offset;
#   class loss weight 1.0 (cls_loss_coef), matching class cost 2.0.
_base_ = './h_deformable_detr_r50_two_stage.py'
model = dict(
    bbox_head=dict(
        num_query=900,
        num_query_one2many=0,
        share_decoder_branches=True,
        fixed_target_groups=[
            dict(
                type='opera.ContrastiveDenoisingQueries',
                dn_number=100,
                box_noise_scale=0.4,
                label_noise_ratio=0.5)
        ],
        transformer=dict(
            type='opera.DinoTransformer',
            decoder=dict(type='opera.DinoTransformerDecoder')),
        positional_encoding=dict(temperature=20, offset=0.0),
        loss_cls=dict(loss_weight=1.0)),
    # DINO keeps the best 300 of (queries x classes) (num_select).
    test_cfg=dict(max_per_img=300))
