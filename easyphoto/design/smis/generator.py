"""The native garment generator, written from the papers (no code of their repositories):

- SPADE (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization"): every normalisation
  in the decoder is parameter-free and then modulated per pixel by a scale and a shift predicted from the layout,
  so the layout is not washed out by the normalisation layers; residual blocks upsampled from a small latent.
- SMIS (Zhu et al. 2020, "Semantically Multi-modal Image Synthesis", GroupDNet): the style encoder is a grouped
  convolution network with one group per class, fed with the photo cut by each class's mask, so each garment class
  gets its own latent code; the latent keeps its spatial structure (a map, not SPADE's single vector), which is what
  made the seed recipe train where plain SPADE did not.

The decoder's convolutions are not grouped (GroupDNet's decreasing groups need every width to be a multiple of the
46 classes); the class-wise latent and the class-wise SPADE modulation carry the per-class control instead.
Images are in [-1, 1]; layouts are (B, H, W) integer labels, 0..45 a class and 255 the background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from easyphoto.design.layout import NUM_CLASSES

SLOPE = 0.2  # LeakyReLU slope, as in both papers


def one_hot(labels: torch.Tensor, classes: int = NUM_CLASSES) -> torch.Tensor:
    """(B, H, W) labels → (B, classes, H, W) float; the background (any label ≥ classes, i.e. 255) is all zeros."""
    labels = labels.long()
    inside = labels < classes
    coded = F.one_hot(labels.clamp(max=classes - 1), classes).permute(0, 3, 1, 2).to(torch.float32)
    return coded * inside.unsqueeze(1)


class SpatialModulation(nn.Module):
    """SPADE: instance normalisation without its own affine parameters, then x·(1 + γ(layout)) + β(layout)."""

    def __init__(self, channels: int, classes: int, hidden: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(classes, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
        layout = F.interpolate(layout, size=x.shape[2:], mode="nearest")
        features = self.shared(layout)
        return self.norm(x) * (1 + self.gamma(features)) + self.beta(features)


class ModulatedBlock(nn.Module):
    """SPADE's residual block: two modulated 3×3 convolutions, and a modulated 1×1 shortcut when widths differ."""

    def __init__(self, fin: int, fout: int, classes: int, hidden: int):
        super().__init__()
        middle = min(fin, fout)
        self.mod_0 = SpatialModulation(fin, classes, hidden)
        self.conv_0 = nn.Conv2d(fin, middle, 3, padding=1)
        self.mod_1 = SpatialModulation(middle, classes, hidden)
        self.conv_1 = nn.Conv2d(middle, fout, 3, padding=1)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.mod_s = SpatialModulation(fin, classes, hidden)
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)

    def forward(self, x: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.mod_s(x, layout)) if self.learned_shortcut else x
        out = self.conv_0(F.leaky_relu(self.mod_0(x, layout), SLOPE))
        out = self.conv_1(F.leaky_relu(self.mod_1(out, layout), SLOPE))
        return shortcut + out


class ClassEncoder(nn.Module):
    """SMIS's style encoder: one convolution group per class over the photo cut by that class's mask, down to the
    latent size; returns the latent's mean and log-variance, (B, classes·latent_channels, h, w) each."""

    def __init__(self, classes: int, width: int, latent_channels: int, levels: int):
        super().__init__()
        channels = classes * width
        layers: list[nn.Module] = [nn.Conv2d(3 * classes, channels, 3, stride=2, padding=1, groups=classes),
                                   nn.LeakyReLU(SLOPE)]
        for _ in range(levels - 1):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=classes),
                       nn.InstanceNorm2d(channels, affine=False), nn.LeakyReLU(SLOPE)]
        self.body = nn.Sequential(*layers)
        self.mu = nn.Conv2d(channels, classes * latent_channels, 3, padding=1, groups=classes)
        self.logvar = nn.Conv2d(channels, classes * latent_channels, 3, padding=1, groups=classes)
        self.classes = classes

    def forward(self, image: torch.Tensor, layout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = image.shape
        per_class = (layout.unsqueeze(2) * image.unsqueeze(1)).reshape(batch, 3 * self.classes, height, width)
        features = self.body(per_class)
        return self.mu(features), self.logvar(features)


def stage_widths(width: int, levels: int) -> list[int]:
    """Channels of the head block and after each up-sampling: SPADE's 16·nf, ..., nf for five levels."""
    return [width * min(16, 2 ** (levels - i)) for i in range(levels + 1)]


class GarmentGenerator(nn.Module):
    """Latent map (B, classes·latent_channels, h, w) + one-hot layout → RGB image in [-1, 1]."""

    def __init__(self, classes: int, width: int, latent_channels: int, levels: int):
        super().__init__()
        widths = stage_widths(width, levels)
        hidden = 2 * width  # SPADE: 128 hidden channels at nf = 64
        self.latent_channels = classes * latent_channels
        self.levels = levels
        self.fc = nn.Conv2d(self.latent_channels, widths[0], 3, padding=1)
        self.head = ModulatedBlock(widths[0], widths[0], classes, hidden)
        self.ups = nn.ModuleList(ModulatedBlock(widths[i], widths[i + 1], classes, hidden) for i in range(levels))
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, latent: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
        x = self.head(self.fc(latent), layout)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), layout)
        return torch.tanh(self.to_rgb(F.leaky_relu(x, SLOPE)))

    def random_latent(self, batch: int, size: int, generator: torch.Generator, device=None) -> torch.Tensor:
        """A latent from the prior N(0, I): what inference from a layout alone draws (no style photo)."""
        shape = (batch, self.latent_channels, size, size)
        return torch.randn(shape, generator=generator).to(device or "cpu")


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """z = μ + σ·ε, ε drawn from `generator` on the CPU (the same draw on every device, so runs repeat)."""
    noise = torch.randn(mu.shape, generator=generator).to(mu.device)
    return mu + noise * torch.exp(0.5 * logvar)


def composite_white(image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """White (1.0) outside the layout's mask: the background is blank by construction, in training and inference."""
    inside = (labels.long() < NUM_CLASSES).unsqueeze(1).to(image.dtype)
    return image * inside + (1.0 - inside)
