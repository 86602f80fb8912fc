"""VGG19's convolution stack for the perceptual and style losses, defined here (torchvision cannot be a dependency)
with torchvision's module indices, so the keys of torchvision's weights as timm republishes them
("vgg19.tv_in1k" model.safetensors: "features.0.weight", ...) load as they are.

Only the layers up to relu5_1 are built and read (safetensors reads tensors one by one, so the 400 MB of classifier
weights in that file are never loaded). The widths come from the file: torchvision's are 64–512, a test's random
VGG may be narrower; the layer pattern, the 3×3 kernels and the chaining are checked, each mismatch named."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from easyphoto.errors import EasyPhotoError

# torchvision's VGG19 ("E"): convolutions per stage, each followed by a ReLU; a 2×2 max-pool ends each stage.
STAGES = (2, 2, 4, 4, 4)
TAPS = {1: 1 / 32, 6: 1 / 16, 11: 1 / 8, 20: 1 / 4, 29: 1.0}  # relu1_1 … relu5_1 and their perceptual weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(EasyPhotoError):
    """The VGG19 file is not torchvision's layout (another network, a truncated file)."""

    phase = "design"
    http_status = 409


def conv_indices() -> list[int]:
    """Indices of the convolutions inside `features` (0, 2, 5, 7, 10, ...) up to relu5_1."""
    indices, position = [], 0
    for count in STAGES:
        for _ in range(count):
            indices.append(position)
            position += 2  # conv, relu
        position += 1  # max-pool
    return [i for i in indices if i < max(TAPS)]


class VGGFeatures(nn.Module):
    """The frozen feature stack; `forward` takes images in [-1, 1] and returns the relu{1..5}_1 activations."""

    def __init__(self, widths: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        fin, convs, conv_at, pool_at = 3, iter(widths), set(conv_indices()), _pool_indices()
        for index in range(max(TAPS) + 1):
            if index in conv_at:
                fout = next(convs)
                layers.append(nn.Conv2d(fin, fout, 3, padding=1))
                fin = fout
            elif index in pool_at:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = ((image + 1) / 2 - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS:
                taps.append(x)
        return taps


def _pool_indices() -> set[int]:
    pools, position = set(), 0
    for count in STAGES:
        position += 2 * count
        pools.add(position)
        position += 1
    return pools


def load_vgg19(path: Path | str, device: torch.device | str = "cpu") -> VGGFeatures:
    """The feature stack with the weights of `path` (a safetensors file in torchvision's key layout)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            names = set(handle.keys())
            for index in conv_indices():
                for kind in ("weight", "bias"):
                    key = f"features.{index}.{kind}"
                    if key not in names:
                        raise VGGWeightsError(f"{path} has no tensor {key!r}: it is not torchvision's VGG19 layout.",
                                              hint="Fetch the manifest's file: python -m easyphoto models fetch "
                                                   "vgg19-features.")
                    tensors[key] = handle.get_tensor(key)
    except (OSError, ValueError, SafetensorError) as exc:
        raise VGGWeightsError(f"{path} is not a readable safetensors file ({exc}).",
                              hint="Delete it and fetch it again: python -m easyphoto models fetch vgg19-features.") \
            from exc
    model = VGGFeatures(_checked_widths(tensors, path))
    model.load_state_dict(tensors)
    return model.to(device)


def _checked_widths(tensors: dict[str, torch.Tensor], path: Path) -> list[int]:
    widths, fin = [], 3
    for index in conv_indices():
        weight, bias = tensors[f"features.{index}.weight"], tensors[f"features.{index}.bias"]
        if weight.ndim != 4 or tuple(weight.shape[1:]) != (fin, 3, 3) or tuple(bias.shape) != (weight.shape[0],):
            raise VGGWeightsError(f"{path}: features.{index} has shape {tuple(weight.shape)} (bias "
                                  f"{tuple(bias.shape)}); VGG19 needs (out, {fin}, 3, 3) there.",
                                  hint="Use torchvision's VGG19 weights (the manifest's vgg19-features).")
        fin = int(weight.shape[0])
        widths.append(fin)
    return widths


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, C) Gram matrices normalised by C·H·W, so layers of any size weigh alike."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


def perceptual_and_style(vgg: VGGFeatures, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(SPADE's weighted L1 over relu1_1..relu5_1, the L1 between their Gram matrices)."""
    fake_taps = vgg(fake)
    with torch.no_grad():
        real_taps = vgg(real)
    perceptual = sum(w * F.l1_loss(f, r) for w, f, r in zip(TAPS.values(), fake_taps, real_taps, strict=True))
    style = sum(F.l1_loss(gram(f), gram(r)) for f, r in zip(fake_taps, real_taps, strict=True))
    return perceptual, style
