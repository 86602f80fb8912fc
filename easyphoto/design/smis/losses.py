"""The seed recipe's loss terms (SPADE's, plus two of ours): hinge GAN, discriminator feature matching restricted to
the garment mask, KL divergence of the style encoder's latent, and the discriminator's extra "the layout's colour
visualisation is fake" task. The VGG perceptual and Gram style terms are in vgg.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Judgement = list[list[torch.Tensor]]  # MultiScaleDiscriminator output: per head, its features (last = scores)


def d_hinge(judgement: Judgement, real: bool) -> torch.Tensor:
    """The discriminator's hinge loss: mean(relu(1 − D)) on real pairs, mean(relu(1 + D)) on fake ones."""
    sign = -1.0 if real else 1.0
    return sum(F.relu(1.0 + sign * head[-1]).mean() for head in judgement) / len(judgement)


def g_hinge(judgement: Judgement) -> torch.Tensor:
    """The generator's hinge loss: −mean(D(fake))."""
    return sum(-head[-1].mean() for head in judgement) / len(judgement)


def masked_feature_matching(fake: Judgement, real: Judgement, mask: torch.Tensor) -> torch.Tensor:
    """L1 between the discriminator's features of the fake and the real pair, counted only inside the garment
    `mask` (B, 1, H, W) in {0, 1} resized to each feature map: the generator is pulled towards the garment's
    texture, and nothing of it is spent on the (blank) background. Averaged over layers and heads."""
    total, terms = fake[0][0].new_zeros(()), 0
    for fake_head, real_head in zip(fake, real, strict=True):
        for fake_map, real_map in zip(fake_head[:-1], real_head[:-1], strict=True):
            weight = F.interpolate(mask, size=fake_map.shape[2:], mode="area")
            difference = (fake_map - real_map.detach()).abs() * weight
            total = total + difference.sum() / (weight.sum() * fake_map.shape[1]).clamp(min=1.0)
            terms += 1
    return total / max(terms, 1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent's channels, averaged over its positions and the batch (the
    latent is a map; SPADE's 0.05 weight was for one vector per image)."""
    per_element = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return per_element.sum(dim=1).mean()
