checkpoint_config = dict(interval=1, max_keep_ckpts=3)
# Text log + JSON log (``<timestamp>.log.json``) always. One switch each:
# TensorBoard: dict(type='TensorboardLoggerHook');
# Weights & Biases (WANDB_MODE=offline works): dict(type='WandbLoggerHook').
log_config = dict(interval=50, hooks=[dict(type='TextLoggerHook')])
custom_hooks = [dict(type='NumClassCheckHook')]
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
opencv_num_threads = 0
mp_start_method = 'fork'
# enable=True scales lr by (GPUs x samples_per_gpu) / base_batch_size.
auto_scale_lr = dict(enable=False, base_batch_size=16)
