"""Super-resolution for small crops: Real-ESRGAN (RRDBNet) when its weights are present, Lanczos otherwise.

RRDBNet as described in the ESRGAN paper (Wang et al., 2018) and used by Real-ESRGAN: residual-in-residual dense
blocks, nearest-neighbour ×2 upsampling stages, and for the ×2 model a pixel-unshuffle of the input (so the ×4
trunk yields ×2). The network size (features, blocks, growth, scale) is read from the checkpoint's tensors, so any
RRDBNet checkpoint of this layout loads. Checkpoints are read with `torch.load(weights_only=True)`: tensors only,
no pickled code. torch is imported only when a model is actually used.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageFilter

from easyphoto import weights
from easyphoto.store import Paths

UPSCALER_ID = "realesrgan-x2plus"


def classical(image: Image.Image, side: int) -> Image.Image:
    """Lanczos to side×side plus a light unsharp mask (the fallback without model weights)."""
    enlarged = image.resize((side, side), Image.LANCZOS)
    return enlarged.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))


def _build_rrdbnet(num_in: int, num_feat: int, num_block: int, num_grow: int, scale: int):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class DenseBlock(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [num_feat + i * num_grow for i in range(5)]
            for i in range(4):
                setattr(self, f"conv{i + 1}", nn.Conv2d(widths[i], num_grow, 3, 1, 1))
            self.conv5 = nn.Conv2d(widths[4], num_feat, 3, 1, 1)

        def forward(self, x):
            features = [x]
            for i in range(4):
                features.append(F.leaky_relu(getattr(self, f"conv{i + 1}")(torch.cat(features, 1)), 0.2))
            return self.conv5(torch.cat(features, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self):
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = DenseBlock(), DenseBlock(), DenseBlock()

        def forward(self, x):
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = scale
            self.conv_first = nn.Conv2d(num_in, num_feat, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB() for _ in range(num_block)))
            self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

        def forward(self, x):
            if self.scale in (1, 2):
                x = F.pixel_unshuffle(x, 4 // self.scale)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            for conv in (self.conv_up1, self.conv_up2):
                feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    return RRDBNet()


def load_rrdbnet(path: Path | str):
    """An RRDBNet in eval mode with the checkpoint's weights; its size and scale come from the tensors."""
    import torch

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    state = checkpoint.get("params_ema") or checkpoint.get("params") or checkpoint
    num_in = state["conv_first.weight"].shape[1]
    scale = {3: 4, 12: 2, 48: 1}.get(num_in)
    if scale is None:
        raise ValueError(f"{Path(path).name}: conv_first takes {num_in} channels; not an RGB RRDBNet checkpoint")
    blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k)))
    model = _build_rrdbnet(num_in, state["conv_first.weight"].shape[0], blocks,
                           state["body.0.rdb1.conv1.weight"].shape[0], scale)
    model.load_state_dict(state, strict=True)
    return model.eval()


@lru_cache(maxsize=2)
def _cached_model(path: str):
    return load_rrdbnet(path)


def upscale_with(model, image: Image.Image) -> Image.Image:
    import numpy as np
    import torch

    device = next(model.parameters()).device
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)[None].to(device)
    with torch.inference_mode():
        out = model(tensor).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return Image.fromarray((out * 255.0).round().astype(np.uint8), "RGB")


def model_upscaler(paths: Paths):
    """An `(image, side) -> image` upscaler using Real-ESRGAN when its weights are present, else None."""
    import importlib.util

    entry = weights.get(UPSCALER_ID)
    if weights.status(entry, paths).state != "present" or importlib.util.find_spec("torch") is None:
        return None
    file = str(entry.path(paths))

    def upscale(image: Image.Image, side: int) -> Image.Image:
        model = _cached_model(file)
        result = image
        while result.width < side:  # one ×2 pass is enough for crops down to half the resolution
            result = upscale_with(model, result)
        return result.resize((side, side), Image.LANCZOS)

    return upscale
