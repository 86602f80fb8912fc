"""The multi-scale (multi-head) patch discriminator of pix2pixHD/SPADE, written from the papers: each head judges
(layout, image) pairs patch by patch, the next one the same pair at half the scale; spectral normalisation on every
convolution keeps it Lipschitz under the hinge loss. Every head returns all its intermediate features too, for the
generator's feature-matching loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

SLOPE = 0.2
KERNEL, PAD = 4, 2


def _layer(fin: int, fout: int, stride: int, norm: bool) -> nn.Sequential:
    parts: list[nn.Module] = [spectral_norm(nn.Conv2d(fin, fout, KERNEL, stride=stride, padding=PAD))]
    if norm:
        parts.append(nn.InstanceNorm2d(fout, affine=False))
    parts.append(nn.LeakyReLU(SLOPE))
    return nn.Sequential(*parts)


class PatchHead(nn.Module):
    """`layers` strided convolutions (widths doubling up to 8×), one unstrided, then a one-channel patch score."""

    def __init__(self, in_channels: int, width: int, layers: int):
        super().__init__()
        widths = [width * min(8, 2**i) for i in range(layers + 1)]
        blocks = [_layer(in_channels, widths[0], 2, norm=False)]
        blocks += [_layer(widths[i - 1], widths[i], 2, norm=True) for i in range(1, layers)]
        blocks.append(_layer(widths[layers - 1], widths[layers], 1, norm=True))
        blocks.append(nn.Sequential(spectral_norm(nn.Conv2d(widths[layers], 1, KERNEL, padding=PAD))))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features  # the last one is the patch score map


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, classes: int, width: int, layers: int, heads: int):
        super().__init__()
        self.heads = nn.ModuleList(PatchHead(classes + 3, width, layers) for _ in range(heads))

    def forward(self, layout: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        """One feature list per head, coarser heads later."""
        x = torch.cat([layout, image], dim=1)
        outputs = []
        for index, head in enumerate(self.heads):
            if index:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(head(x))
        return outputs
