checkpoint_config = dict(interval=1, max_keep_ckpts=3)
# Text log (<timestamp>.log) + JSON log (<timestamp>.log.json) always, every
# `interval` iterations. One switch per experiment tracker (see
# opera/utils/trackers.py); flip it here, in a child config
# (log_config = dict(tensorboard=True)) or on the command line:
#   TensorBoard, event files in <work_dir>/tf_logs:
#     --cfg-options log_config.tensorboard=True
#   Weights & Biases, run files in ./wandb (or $WANDB_DIR/wandb); needs
#   `wandb login`, or WANDB_MODE=offline (no network; `wandb sync` uploads
#   the run later):
#     --cfg-options log_config.wandb=True
# A dict instead of True passes arguments to mmcv's hook, e.g.
# wandb=dict(init_kwargs=dict(project='hdetr', name='r50_12ep')).
log_config = dict(
    interval=50,
    hooks=[dict(type='TextLoggerHook')],
    tensorboard=False,
    wandb=False)
# NonFiniteLossHook: stop at a NaN/inf loss, before the optimizer step
# (priority HIGH runs it ahead of the optimizer hook's ABOVE_NORMAL).
# QueryGroupScheduleHook: tells the head's query groups the epoch (for
# schemes whose K changes with it, e.g. hybrid epoch) and logs their K.
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='opera.NonFiniteLossHook', priority='HIGH'),
    dict(type='opera.QueryGroupScheduleHook')
]
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
# Fine-tuning on other classes / keypoints: fnmatch patterns of the model's
# parameter names that are re-initialised instead of loaded from load_from
# (each logged with both shapes); any other shape mismatch still stops.
# E.g. ['bbox_head.cls_branches.*'] (docs/custom_datasets.md).
load_from_reinit = []
# EMA of the weights (opera.EMAHook), on with ema = dict(enable=True) or
# --cfg-options ema.enable=True. Checkpoints then hold both weight sets;
# evaluation, tools/test.py, the demo and ONNX export use the EMA ones
# (docs/reliability.md).
ema = dict(enable=False, momentum=0.0002, warmup_updates=0)
resume_from = None
workflow = [('train', 1)]
opencv_num_threads = 0
mp_start_method = 'fork'
# enable=True (tools/train.py --auto-scale-lr) scales lr by the effective
# batch (processes x samples_per_gpu x optimizer_config.cumulative_iters)
# over base_batch_size. No base_batch_size here: each recipe states the total
# batch its lr was set for (docs/get_started.md, "Fewer GPUs").
auto_scale_lr = dict(enable=False)
