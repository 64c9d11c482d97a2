"""Stop training at the first NaN or infinite loss."""
import math

from mmcv.runner import Hook

from .builder import HOOKS


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when a logged loss is NaN or infinite.

    It reads ``runner.outputs['log_vars']`` after the forward pass: the
    per-loss values mmdet's detectors log (averaged over processes in
    distributed training, so every process stops at the same iteration).
    Registered with a priority above the optimizer hook's (``ABOVE_NORMAL``),
    it runs before the backward pass and the optimizer step, so the weights
    stay those of the last finite iteration and no NaN weights reach a
    checkpoint.

    Config (``custom_hooks``)::

        dict(type='opera.NonFiniteLossHook', priority='HIGH')
    """

    def after_train_iter(self, runner):
        """Check this iteration's losses (see the class docstring)."""
        log_vars = runner.outputs.get('log_vars', {})
        bad = {
            name: value
            for name, value in log_vars.items()
            if 'loss' in name and not math.isfinite(value)
        }
        if bad:
            names = ', '.join(f'{name}={value}' for name, value in bad.items())
            raise FloatingPointError(
                f'Non-finite loss at epoch {runner.epoch + 1}, iteration '
                f'{runner.inner_iter + 1} of the epoch (iteration '
                f'{runner.iter + 1} overall): {names}. Training stopped '
                'before the optimizer step; the checkpoints hold the last '
                'finite weights. Lower the learning rate or check the data '
                'of this iteration.')
