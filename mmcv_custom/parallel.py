"""mmcv's DDP wrapper, fixed for CPU modules and torch 2.x."""
from mmcv.parallel import MMDistributedDataParallel

CPU_TARGET = -1  # the scatter target that means "stay on the CPU"


class DeviceAgnosticDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that works for CPU and CUDA modules.

    Two fixes over mmcv 1.7.2:

    * A CPU module is wrapped with ``device_ids=None``, and then mmcv hands
      the batch to ``train_step``/``val_step`` with its ``DataContainer``s
      still closed. Here they are opened by scattering to the CPU first, as
      ``MMDataParallel`` does.
    * mmcv's ``_run_ddp_forward`` (used by ``forward``, i.e. in testing)
      reads DDP attributes that torch 2 no longer has; this version only
      scatters the inputs to the module's device and calls the module.
    """

    def train_step(self, *inputs, **kwargs):
        """Open the batch's DataContainers on CPU, then run mmcv's step."""
        inputs, kwargs = self._scatter_on_cpu(inputs, kwargs)
        return super().train_step(*inputs, **kwargs)

    def val_step(self, *inputs, **kwargs):
        """Open the batch's DataContainers on CPU, then run mmcv's step."""
        inputs, kwargs = self._scatter_on_cpu(inputs, kwargs)
        return super().val_step(*inputs, **kwargs)

    def _run_ddp_forward(self, *inputs, **kwargs):
        """Scatter the inputs to the module's device and call the module."""
        target = self.device_ids[0] if self.device_ids else CPU_TARGET
        inputs, kwargs = self.scatter(inputs, kwargs, [target])
        return self.module(*inputs[0], **kwargs[0])

    def _scatter_on_cpu(self, inputs, kwargs):
        """Return (inputs, kwargs) with DataContainers opened on CPU."""
        if self.device_ids:
            return inputs, kwargs
        inputs, kwargs = self.scatter(inputs, kwargs, [CPU_TARGET])
        return inputs[0], kwargs[0]
