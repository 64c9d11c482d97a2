"""A feature pyramid made from a deformable encoder's memory (Co-DETR).

Co-DETR's auxiliary heads (ATSS, RPN + Faster R-CNN) run on the encoder
output rather than on the neck: the memory of each level is folded back
into its [bs, c, h, w] map and one more level is made from the last by a
stride-2 3x3 convolution and a group norm. With the four levels of a
Deformable-DETR neck (strides 8 to 64) this gives the five levels (strides
8 to 128) the auxiliary heads' anchors are set for.
"""
import torch.nn as nn

from ...builder import MODELS


@MODELS.register_module()
class MemoryPyramid(nn.Module):
    """The encoder levels as maps, plus one downsampled level.

    Args:
        embed_dims (int): Channels of the memory (and of every level).
        num_groups (int): Groups of the extra level's group norm.
    """

    def __init__(self, embed_dims=256, num_groups=32):
        super().__init__()
        # Index 0 the convolution, 1 the norm: Co-DETR's layout
        # (query_head.downsample.{0,1}), so checkpoints convert by prefix.
        self.downsample = nn.Sequential(
            nn.Conv2d(embed_dims, embed_dims, 3, stride=2, padding=1),
            nn.GroupNorm(num_groups, embed_dims))

    def forward(self, memory, levels):
        """Fold the memory into maps and add the downsampled level.

        Args:
            memory (Tensor): [bs, S, c] encoder output, S = sum of h_l * w_l.
            levels (dict): The encoder's levels; uses ``level_sizes``, the
                (h, w) host ints of each level (see
                :mod:`.deformable_encoder`).

        Returns:
            list[Tensor]: L + 1 maps, each [bs, c, h_l, w_l]; the last is
            the last level downsampled (ceil(h / 2), ceil(w / 2)).
        """
        bs, _, channels = memory.shape
        maps, start = [], 0
        for height, width in levels['level_sizes']:
            end = start + height * width
            # Contiguous: mmcv's RoIAlign reads its input as laid out in
            # [bs, c, h, w] order (a strided view gives wrong features).
            maps.append(memory[:, start:end].transpose(1, 2).contiguous()
                        .view(bs, channels, height, width))
            start = end
        if start != memory.size(1):
            raise ValueError(f'memory has {memory.size(1)} positions, its '
                             f'levels {levels["level_sizes"]} {start}')
        maps.append(self.downsample(maps[-1]))
        return maps
