"""Misspelt keys in transformer layer configs are errors, not defaults.

mmcv's ``BaseTransformerLayer`` and ``FFN`` take ``**kwargs`` and ignore
what they do not know, so ``ffn_cfgs=dict(feedforward_channel=512)`` or
``transformerlayers=dict(norm_cgf=...)`` would build a model with the
default silently. opera's layer sequences (:class:`StrictLayerSequence`)
check every key of their ``transformerlayers``, of each entry of its
``attn_cfgs`` and of its ``ffn_cfgs`` before mmcv builds the layers.

A key is known when an ``__init__`` along the class's MRO declares it, or
when it is one of the names mmcv's bricks read from ``**kwargs`` themselves
(:data:`KWARGS_READ`).
"""
import inspect

from mmcv.cnn.bricks.registry import (ATTENTION, FEEDFORWARD_NETWORK,
                                      TRANSFORMER_LAYER)
from mmcv.cnn.bricks.transformer import (FFN, BaseTransformerLayer,
                                         MultiheadAttention)
from torch import nn

from ..utils.arguments import declared_arguments

# mmcv's MultiheadAttention passes embed_dims, num_heads and attn_drop to
# torch's positionally and the rest of its **kwargs by name.
TORCH_ATTENTION_KWARGS = tuple(
    name for name in inspect.signature(nn.MultiheadAttention).parameters
    if name not in ('embed_dim', 'num_heads', 'dropout'))
# Names that mmcv's bricks take through **kwargs and do use: deprecated
# aliases they translate, and what MultiheadAttention forwards to torch.
KWARGS_READ = {
    BaseTransformerLayer: ('feedforward_channels', 'ffn_dropout',
                           'ffn_num_fcs'),
    FFN: ('dropout', 'add_residual'),
    MultiheadAttention: ('dropout', ) + TORCH_ATTENTION_KWARGS,
}


def known_keys(cls):
    """The config keys a module of class ``cls`` reads, ``type`` included."""
    known = declared_arguments(cls) | {'type'}
    for klass in cls.__mro__:
        known.update(KWARGS_READ.get(klass, ()))
    return known


def reject_unknown_keys(cfg, registry, where, default_type=None):
    """Raise if ``cfg`` has a key its module class does not read.

    Args:
        cfg (dict): A module config.
        registry (mmcv.utils.Registry): Where its ``type`` is looked up.
        where (str): Its place in the config, for the message.
        default_type (str, optional): The type used when ``cfg`` has none.

    Raises:
        TypeError: Naming the unknown keys and the known ones, worded as
            Python's own error for a misspelt keyword argument.
    """
    obj_type = cfg.get('type', default_type)
    cls = registry.get(obj_type) if isinstance(obj_type, str) else obj_type
    if cls is None:  # the registry reports an unknown type when building
        return
    known = known_keys(cls)
    unknown = sorted(set(cfg) - known)
    if unknown:
        names = ', '.join(f"'{key}'" for key in unknown)
        plural = 's' if len(unknown) > 1 else ''
        article = '' if plural else 'an '
        raise TypeError(
            f'{where}: {cls.__name__} got {article}unexpected keyword '
            f'argument{plural} {names} (known: {", ".join(sorted(known))})')


def _entries(cfgs, where):
    """``(config, where)`` for a config or each config of a list."""
    if cfgs is None:
        return []
    if isinstance(cfgs, dict):
        return [(cfgs, where)]
    return [(cfg, f'{where}[{index}]') for index, cfg in enumerate(cfgs)]


def check_layer_cfgs(transformerlayers):
    """Check the keys of a layer sequence's ``transformerlayers``.

    Args:
        transformerlayers (dict | list[dict] | None): One layer config for
            every layer, or one per layer.

    Raises:
        TypeError: At the first config with an unknown key (see
            :func:`reject_unknown_keys`).
    """
    for layer, where in _entries(transformerlayers, 'transformerlayers'):
        reject_unknown_keys(layer, TRANSFORMER_LAYER, where)
        for attention, attn_where in _entries(
                layer.get('attn_cfgs'), f'{where}.attn_cfgs'):
            reject_unknown_keys(attention, ATTENTION, attn_where)
        for ffn, ffn_where in _entries(
                layer.get('ffn_cfgs'), f'{where}.ffn_cfgs'):
            reject_unknown_keys(ffn, FEEDFORWARD_NETWORK, ffn_where, 'FFN')


class StrictLayerSequence:
    """Mixin for mmcv ``TransformerLayerSequence`` subclasses: checks the
    ``transformerlayers`` config (:func:`check_layer_cfgs`) before the
    layers are built. List it before the mmcv / mmdet parent."""

    def __init__(self, *args, transformerlayers=None, **kwargs):
        check_layer_cfgs(transformerlayers)
        super().__init__(*args, transformerlayers=transformerlayers, **kwargs)
