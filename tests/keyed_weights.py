"""Weights that depend only on each parameter's name and shape.

Two implementations with the same checkpoint layout get the same weights
this way whatever their initialisation order, so their outputs can be
compared: the reference outputs in ``tests/data`` were computed by the
reference code from exactly these weights.
"""
import zlib

import torch

NORM_SCALE = 0.1


def keyed_tensor(name, shape):
    """A deterministic tensor for the state-dict entry ``name``.

    Matrices and kernels are N(0, 1 / fan_in); 1-D weights (norm layers) are
    1 + 0.1 N(0, 1); biases and running means 0.1 N(0, 1); running variances
    1 + 0.1 |N(0, 1)|; integer buffers are left as they are (returns None).
    """
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    noise = torch.randn(shape, generator=gen, dtype=torch.float64)
    if name.endswith('num_batches_tracked'):
        return None
    if name.endswith('running_var'):
        return 1 + NORM_SCALE * noise.abs()
    if len(shape) >= 2:
        fan_in = torch.Size(shape[1:]).numel()
        return noise / fan_in**0.5
    if name.endswith('weight'):
        return 1 + NORM_SCALE * noise
    return NORM_SCALE * noise


def fill_keyed_weights(model):
    """Overwrite every floating-point entry of ``model.state_dict()``."""
    state = model.state_dict()
    for name, value in state.items():
        if not value.is_floating_point():
            continue
        new = keyed_tensor(name, tuple(value.shape))
        if new is not None:
            value.copy_(new.to(value.dtype))
    return model
