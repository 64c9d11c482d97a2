"""Activation checkpointing of transformer layers (``with_cp``).

A checkpointed layer keeps only its inputs during the forward pass and runs
again during the backward pass to rebuild its activations: less memory
(what makes Swin-L training fit) for about one more forward pass of the
layer. The non-reentrant implementation takes keyword arguments and
non-tensor inputs (masks, query groups), and restores the random state, so
dropout draws the same numbers twice and gradients are unchanged.
"""
import torch
from torch.utils.checkpoint import checkpoint


def run_layer(layer, *args, with_cp=False, **kwargs):
    """``layer(*args, **kwargs)``, checkpointed if ``with_cp`` and gradients
    are being recorded (in eval or under ``no_grad`` there is nothing to
    save)."""
    if with_cp and torch.is_grad_enabled():
        return checkpoint(layer, *args, use_reentrant=False, **kwargs)
    return layer(*args, **kwargs)
