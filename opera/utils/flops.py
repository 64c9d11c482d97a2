"""Matmul FLOP formulas: torch's, plus the CPU attention kernel it misses.

torch's ``FlopCounterMode`` has formulas for the CUDA kernels of
``scaled_dot_product_attention`` but none for the CPU one
(``_scaled_dot_product_flash_attention_for_cpu`` and its backward), so on
CPU every self-attention product (scores and weighted sums) counted 0. That
kernel does the products of the CUDA flash kernel (4 s_q s_k d forward; the
backward recomputes the scores: 10 s_q s_k d), so the same formulas apply.
Every FLOP count in opera's tools goes through this module.
"""
import torch
from torch.utils import flop_counter

aten = torch.ops.aten


def cpu_attention_flops(query_shape, key_shape, value_shape, *args,
                        out_shape=None, **kwargs):
    """Forward of the CPU kernel: [b, h, s, d] query, key and value."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape,
                                 value_shape, *args, out_shape=None,
                                 **kwargs):
    """Backward of the CPU kernel (scores recomputed)."""
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape,
                                                 key_shape, value_shape)


# Shape formulas (``FlopCounterMode(custom_mapping=...)`` form) of the ops
# torch's registry lacks. Where a later torch has its own, torch's wins.
MISSING_FORMULAS = {
    packet: formula
    for packet, formula in {
        aten._scaled_dot_product_flash_attention_for_cpu:
        cpu_attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
        cpu_attention_backward_flops,
    }.items() if packet not in flop_counter.flop_registry
}

# Op overload packet -> formula(*args, out_val=out, **kwargs) on tensors.
FORMULAS = {
    **flop_counter.flop_registry,
    **{
        packet: flop_counter.shape_wrapper(formula)
        for packet, formula in MISSING_FORMULAS.items()
    }
}


def op_flops(func, args, kwargs, out):
    """Matmul/conv FLOPs of one aten op call (0 for ops without matmul).

    Args:
        func (OpOverload): The op, as a ``TorchDispatchMode`` sees it.
        args (tuple), kwargs (dict): Its inputs.
        out: Its output.
    """
    formula = FORMULAS.get(func._overloadpacket)
    return 0 if formula is None else formula(*args, **kwargs, out_val=out)


def flop_counter_mode(**kwargs):
    """torch's ``FlopCounterMode`` (per-module counts) with the formulas
    above; ``kwargs`` go to it (``display``, ``depth``)."""
    return flop_counter.FlopCounterMode(
        custom_mapping=MISSING_FORMULAS, **kwargs)
