# Co-DINO at CPU-test size: tiny_co_deformable_detr.py (R18, 2+2 layers,
# FFN 256, 4 levels + the stride-128 one, narrow auxiliary heads) on DINO's
# transformer, with Co-DINO's differences from it (as
# configs/co_detr/co_dino_r50_5scale_12ep.py): per-layer branches, the
# quality focal class loss, denoising box noise 1.0, content-only auxiliary
# queries, soft-NMS at test. 30 queries, dn_number 10.
_base_ = ['./tiny_co_deformable_detr.py']
model = dict(
    bbox_head=dict(
        num_query=30,
        transformer=dict(
            type='opera.DinoTransformer',
            decoder=dict(type='opera.DinoTransformerDecoder')),
        positional_encoding=dict(temperature=20, offset=0.0),
        fixed_target_groups=[
            dict(
                type='opera.ContrastiveDenoisingQueries',
                dn_number=10,
                box_noise_scale=1.0),
            dict(
                type='opera.CoDETRAuxiliaryQueries',
                heads=[{{_base_.roi_queries}}, {{_base_.atss_queries}}],
                query_embedding=dict(type='opera.AuxiliaryContentEmbedding'))
        ],
        loss_cls=dict(
            _delete_=True,
            type='QualityFocalLoss',
            use_sigmoid=True,
            beta=2.0,
            loss_weight=1.0),
        # The quality focal loss's target score of a matched query's class:
        # its box's IoU with its object.
        criterion=dict(class_targets=dict(type='iou'))),
    test_cfg=dict(
        max_per_img=100, nms=dict(type='soft_nms', iou_threshold=0.8)))
