"""Run a model "on an accelerator" on a CPU machine to find device mistakes.

A CUDA run fails where code mixes a GPU tensor with a CPU tensor (most
often one made without ``device=``), and it slows down where code copies
GPU data to the host. Neither shows on a CPU-only test. :class:`VirtualDevice`
makes both visible without a GPU: tensors moved to it keep their CPU data
but report ``device='meta'`` (the one non-CPU device every torch build has
and whose autograd needs no driver), and every op is checked the way the
CUDA backend checks it:

* an op whose tensor inputs lie on both the virtual device and the host
  raises :class:`DeviceMismatch` (0-dim host tensors are allowed, as on
  CUDA, and so are host index tensors in indexing ops);
* factory ops asked for the virtual device (``torch.zeros(...,
  device=x.device)``) make virtual tensors, others make host tensors;
* copies to the host (``.cpu()``, ``.tolist()``) and reads of a value
  (``.item()``, ``bool(t)``, ``float(t)``) are recorded with the line of
  opera (or mmdet, mmcv) code that made them, in
  :attr:`VirtualDevice.host_copies` and :attr:`VirtualDevice.host_reads`;
  ``.numpy()`` fails, as on CUDA.

Values are computed on the CPU exactly as without the mode, so outputs can
be compared with a plain CPU run.

Virtual tensors report ``is_cuda``, so code takes its GPU branches. The one
CUDA-only op on them, mmcv's deformable attention kernel, cannot run here;
:class:`DeformableAttentionKernel` stands in for it: it checks what the
kernel needs (every tensor argument on the device) and computes mmcv's
PyTorch version of it, whose value reads (the kernel has none) are not
recorded.
"""
import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

VIRTUAL = torch.device('meta')
aten = torch.ops.aten
# Indexing ops: CUDA accepts index tensors on the host.
HOST_INDICES_ALLOWED = {aten.index.Tensor, aten.index_put.default,
                        aten.index_put_.default, aten._index_put_impl_.default}
# Cross-device copies are what these ops are for.
COPIES = {aten._to_copy.default, aten.copy_.default}


class DeviceMismatch(RuntimeError):
    """An op mixed virtual-device and host tensors (a CUDA run fails)."""


class VirtualTensor(torch.Tensor):
    """CPU data (``elem``) that reports the virtual device."""

    @staticmethod
    def __new__(cls, elem):
        return torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(),
            storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=VIRTUAL,
            requires_grad=elem.requires_grad)

    def __init__(self, elem):
        self.elem = elem

    def __repr__(self):
        return f'VirtualTensor({self.elem!r})'

    @property
    def is_cuda(self):
        """True, so code takes its GPU branches (mmcv's deformable
        attention kernel: see :class:`DeformableAttentionKernel`)."""
        return True

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(
            f'{func} on a VirtualTensor outside `with VirtualDevice()`')


def code_line():
    """``'opera/...py:123 (function)'`` of the innermost frame in opera,
    mmdet or mmcv code (the code that made the op)."""
    for frame in reversed(traceback.extract_stack()):
        for package in ('/opera/', '/mmdet/', '/mmcv/'):
            if package in frame.filename:
                path = frame.filename[frame.filename.rindex(package) + 1:]
                return f'{path}:{frame.lineno} ({frame.name})'
    return 'outside:0 (opera, mmdet and mmcv)'


def asks_for_virtual(kwargs):
    """Whether an op's ``device=`` argument names the virtual device."""
    device = kwargs.get('device')
    return device is not None and torch.device(device).type == VIRTUAL.type


class DataFactories(TorchFunctionMode):
    """Makes ``torch.tensor``, ``torch.as_tensor`` and ``Tensor.new_tensor``
    give virtual tensors with data: for the meta device they skip the
    dispatcher and would make tensors without data."""

    def __init__(self, on_tolist):
        super().__init__()
        self.on_tolist = on_tolist

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.tensor, torch.as_tensor) and asks_for_virtual(kwargs):
            if isinstance(args[0], torch.Tensor):  # no copy via the host
                return args[0].to(**kwargs)
            kwargs['device'] = 'cpu'
            return func(*args, **kwargs).to(VIRTUAL)
        if (func is torch.Tensor.new_tensor
                and isinstance(args[0], VirtualTensor)
                and kwargs.get('device') is None):
            kwargs.setdefault('dtype', args[0].dtype)
            return torch.tensor(*args[1:], **kwargs).to(VIRTUAL)
        if func is torch.Tensor.tolist and isinstance(args[0], VirtualTensor):
            self.on_tolist()
            return args[0].elem.tolist()
        return func(*args, **kwargs)


class VirtualDevice(TorchDispatchMode):
    """Dispatch mode that runs virtual-device tensors on the CPU with CUDA's
    device rules (see the module docstring).

    Attributes:
        host_copies (list[str]): code line of each device-to-host copy.
        host_reads (list[str]): code line of each value read
            (``.item()`` and friends: a device sync on CUDA).
    """

    def __init__(self):
        super().__init__()
        self.host_copies = []
        self.host_reads = []
        self.factories = DataFactories(on_tolist=self.record_host_copy)
        self.recording = True

    def record_host_copy(self):
        if self.recording:
            self.host_copies.append(code_line())

    def __enter__(self):
        self.factories.__enter__()
        return super().__enter__()

    def __exit__(self, *exc_info):
        super().__exit__(*exc_info)
        self.factories.__exit__(*exc_info)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0]
                   if isinstance(t, torch.Tensor)]
        on_device = any(isinstance(t, VirtualTensor) for t in tensors)
        self.check_devices(func, args, tensors, on_device)
        unwrapped_args, unwrapped_kwargs = tree_map(
            lambda t: t.elem if isinstance(t, VirtualTensor) else t,
            (args, kwargs))
        to_device = asks_for_virtual(kwargs)
        if to_device:
            unwrapped_kwargs['device'] = torch.device('cpu')
        out = func(*unwrapped_args, **unwrapped_kwargs)
        if func in COPIES and (
                'device' in kwargs and not to_device
                or func is aten.copy_.default
                and not isinstance(args[0], VirtualTensor)):
            if on_device:  # device -> host (host -> host is no copy)
                self.record_host_copy()
            return out
        if func is aten._local_scalar_dense.default:
            if on_device and self.recording:
                self.host_reads.append(code_line())
            return out
        if to_device or on_device:
            return tree_map(lambda t: self.wrap(t, args, kwargs), out)
        return out

    @staticmethod
    def wrap(result, args, kwargs):
        """The virtual tensor for an op's result: the input itself when the
        op wrote into it (in-place and ``out=`` ops), else a new one."""
        if not isinstance(result, torch.Tensor):
            return result
        for tensor in tree_flatten((args, kwargs))[0]:
            if isinstance(tensor, VirtualTensor) and tensor.elem is result:
                return tensor
        return VirtualTensor(result)

    @staticmethod
    def check_devices(func, args, tensors, on_device):
        if not on_device or func in COPIES:
            return
        host = [t for t in tensors
                if not isinstance(t, VirtualTensor) and t.dim() > 0]
        if func in HOST_INDICES_ALLOWED:
            indices = args[1] if len(args) > 1 else ()
            host = [t for t in host
                    if not any(t is index for index in indices)]
        if host:
            raise DeviceMismatch(
                f'{func} mixes virtual-device tensors with host tensors of '
                f'shape {[tuple(t.shape) for t in host]} at {code_line()}: '
                'a host tensor made without device= ?')


def to_virtual(obj):
    """Move a module, tensor or nested list/dict of tensors to the virtual
    device (call inside ``with VirtualDevice()``)."""
    if isinstance(obj, torch.nn.Module):
        return obj.to(VIRTUAL)
    return tree_map(
        lambda t: t.to(VIRTUAL) if isinstance(t, torch.Tensor) else t, obj)


class DeformableAttentionKernel:
    """Stands in for mmcv's ``MultiScaleDeformableAttnFunction`` (the CUDA
    kernel) on virtual tensors: same arguments, checked for the device,
    computed by mmcv's PyTorch version with ``mode``'s recording paused."""

    def __init__(self, mode):
        self.mode = mode
        self.calls = 0

    def apply(self, value, spatial_shapes, level_start_index,
              sampling_locations, attention_weights, im2col_step):
        from mmcv.ops.multi_scale_deform_attn import \
            multi_scale_deformable_attn_pytorch
        arguments = dict(value=value, spatial_shapes=spatial_shapes,
                         level_start_index=level_start_index,
                         sampling_locations=sampling_locations,
                         attention_weights=attention_weights)
        on_host = [name for name, tensor in arguments.items()
                   if not isinstance(tensor, VirtualTensor)]
        if on_host:
            raise DeviceMismatch(
                f'the deformable attention kernel gets {on_host} on the '
                f'host at {code_line()}')
        self.calls += 1
        self.mode.recording = False
        try:
            return multi_scale_deformable_attn_pytorch(
                value, spatial_shapes, sampling_locations, attention_weights)
        finally:
            self.mode.recording = True
