# PETR schedule: AdamW lr 2e-4 (x0.1 for the backbone and the deformable
# attentions' sampling offsets / reference points), weight decay 1e-4,
# grad clip 0.1, 100 epochs with a x0.1 step after epoch 80.
optimizer = dict(
    type='AdamW',
    lr=2e-4,
    weight_decay=1e-4,
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'sampling_offsets': dict(lr_mult=0.1),
            'reference_points': dict(lr_mult=0.1)
        }))
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
lr_config = dict(policy='step', step=[80])
# Atomic checkpoints and per-epoch seeding, so that a killed run resumed
# with --auto-resume ends with the same weights (docs/reliability.md).
runner = dict(type='opera.ResumableEpochBasedRunner', max_epochs=100)
