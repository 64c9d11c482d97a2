"""Input projection of DETR-style detectors, with an optional conv bias."""
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.runner import BaseModule

from ..builder import NECKS


@NECKS.register_module()
class ChannelMapper(BaseModule):
    """Map backbone levels to one width, plus optional extra stride-2 levels.

    Parameter names match mmdet's ``ChannelMapper`` (``convs.i``,
    ``extra_convs.j``), so its checkpoints load here. Unlike mmdet's, the
    convolution bias is configurable: the official Deformable-DETR input
    projection has a bias before its GroupNorm, and converted checkpoints
    need somewhere to put it.

    Args:
        in_channels (list[int]): Channels of each input level.
        out_channels (int): Channels of every output level.
        kernel_size (int): Kernel of the per-level convs.
        conv_cfg, norm_cfg, act_cfg (dict | None): As in ``ConvModule``.
        bias (bool | str): Conv bias; 'auto' (mmdet's behaviour) drops it
            when a norm follows.
        num_outs (int | None): Output levels; extra ones are made by 3x3
            stride-2 convs, the first on the last input level.
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 kernel_size=3,
                 conv_cfg=None,
                 norm_cfg=None,
                 act_cfg=dict(type='ReLU'),
                 bias='auto',
                 num_outs=None,
                 init_cfg=dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')):
        super().__init__(init_cfg)
        if not isinstance(in_channels, (list, tuple)):
            raise TypeError('in_channels must be a list of ints')
        num_outs = len(in_channels) if num_outs is None else num_outs
        if num_outs < len(in_channels):
            raise ValueError(f'num_outs ({num_outs}) must be >= the number '
                             f'of input levels ({len(in_channels)})')
        self.extra_convs = None
        common = dict(
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, bias=bias)
        self.convs = nn.ModuleList([
            ConvModule(
                c, out_channels, kernel_size, padding=kernel_size // 2,
                **common) for c in in_channels
        ])
        if num_outs > len(in_channels):
            self.extra_convs = nn.ModuleList()
            for i in range(num_outs - len(in_channels)):
                in_ch = in_channels[-1] if i == 0 else out_channels
                self.extra_convs.append(
                    ConvModule(
                        in_ch, out_channels, 3, stride=2, padding=1,
                        **common))

    def forward(self, inputs):
        """inputs: tuple of [bs, c_i, h_i, w_i]; returns a tuple of levels."""
        if len(inputs) != len(self.convs):
            raise ValueError(f'expected {len(self.convs)} input levels, '
                             f'got {len(inputs)}')
        outs = [conv(x) for conv, x in zip(self.convs, inputs)]
        if self.extra_convs is not None:
            x = inputs[-1]
            for conv in self.extra_convs:
                x = conv(x)
                outs.append(x)
        return tuple(outs)
