"""Super-resolution for small crops: Real-ESRGAN when its weights are present, Lanczos otherwise.

Every upscaler has one shape (`Upscaler`): called as `(image, side) -> side×side image`, with `unload()` to free
its model. Three implement it: the WebUI's own upscalers inside the WebUI (backends/webui/upscaler.py, reached
through `AppContext.make_upscaler`), and standalone a Real-ESRGAN file run by one of two engines:

- spandrel (the model loader the WebUI uses) when it is importable: it knows the RRDBNet variants (ESRGAN,
  Real-ESRGAN) and runs them on the GPU in half precision where the model supports it;
- else our own RRDBNet below, the architecture of the ESRGAN paper (Wang et al., 2018) as Real-ESRGAN uses it:
  residual-in-residual dense blocks, nearest-neighbour ×2 upsampling stages, and for the ×2 model a
  pixel-unshuffle of the input (so the ×4 trunk yields ×2). Its size (features, blocks, growth, scale) is read
  from the checkpoint's tensors. spandrel imports torchvision at import time; where torchvision is missing (our
  test environments, some standalone installs) this engine runs instead.

Both engines get their tensors from `read_state_dict`: `torch.load(weights_only=True)` or safetensors, never
pickled code (spandrel's own file loader is not used: it unpickles with a custom unpickler and runs `.pt` files
as TorchScript). torch is imported only when a model is actually used.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageFilter

from easyphoto import weights
from easyphoto.generation import Upscaler
from easyphoto.store import Paths

if TYPE_CHECKING:
    from easyphoto.context import AppContext

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


def read_state_dict(path: Path | str) -> dict:
    """The checkpoint's tensors, unwrapped from the {"params_ema": ...} layout of the published .pth files."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    import torch

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{Path(path).name}: not a checkpoint of named tensors")
    return checkpoint.get("params_ema") or checkpoint.get("params") or checkpoint


def load_rrdbnet(path: Path | str):
    """Our RRDBNet in eval mode with the checkpoint's weights; its size and scale come from the tensors."""
    state = read_state_dict(path)
    if "conv_first.weight" not in state or "body.0.rdb1.conv1.weight" not in state:
        raise ValueError(f"{Path(path).name}: not a Real-ESRGAN RRDBNet checkpoint (the built-in engine reads only "
                         "that layout; spandrel reads more)")
    num_in = state["conv_first.weight"].shape[1]
    scale = {3: 4, 12: 2, 48: 1}.get(num_in)
    if scale is None:
        raise ValueError(f"{Path(path).name}: conv_first takes {num_in} channels; not an RGB RRDBNet checkpoint")
    blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k)))
    model = _build_rrdbnet(num_in, state["conv_first.weight"].shape[0], blocks,
                           state["body.0.rdb1.conv1.weight"].shape[0], scale)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_spandrel(path: Path | str, device: str):
    """spandrel's model descriptor for the checkpoint, on `device`, in eval mode."""
    import spandrel

    state = spandrel.canonicalize_state_dict(read_state_dict(path))
    descriptor = spandrel.ModelLoader(device=device).load_from_state_dict(state)
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.scale < 2:
        raise ValueError(f"{Path(path).name}: a {descriptor.architecture.name} model, not an image upscaler")
    return descriptor.to(device).eval()


def upscale_with(model, image: Image.Image) -> Image.Image:
    """One pass of `model` (an nn.Module or a spandrel descriptor) on an RGB image, on the model's device/dtype."""
    import numpy as np
    import torch

    module = model if isinstance(model, torch.nn.Module) else model.model  # a spandrel descriptor wraps its module
    parameter = next(module.parameters())
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)[None].to(parameter.device, parameter.dtype)
    with torch.inference_mode():
        out = _forward(model, tensor).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return Image.fromarray((out * 255.0).round().astype(np.uint8), "RGB")


def _forward(model, tensor):
    """The model on an NCHW tensor. Our ×2/×1 RRDBNet pixel-unshuffles its input, so a side that is not a multiple
    of the unshuffle factor is padded (edge pixels repeated) and the padding cut off the result; spandrel's
    descriptor does the same by itself."""
    import torch
    from torch.nn import functional as F

    if not isinstance(model, torch.nn.Module) or model.scale not in (1, 2):
        return model(tensor)
    factor, (height, width) = 4 // model.scale, tensor.shape[-2:]
    padded = F.pad(tensor, (0, -width % factor, 0, -height % factor), mode="replicate")
    return model(padded)[..., : height * model.scale, : width * model.scale]


@lru_cache(maxsize=1)
def spandrel_available() -> bool:
    """spandrel installed and importable: it imports torchvision (and einops) when imported, so a missing or
    broken torchvision makes it unusable even when spandrel itself is installed."""
    if importlib.util.find_spec("spandrel") is None:
        return False
    try:
        import spandrel  # noqa: F401
    except Exception:  # e.g. torchvision built for another torch: the fallback engine serves instead
        return False
    return True


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelUpscaler:
    """A Real-ESRGAN file run by spandrel or by our RRDBNet (`engine`), loaded on the first call.

    Half precision on CUDA (both engines support it for RRDBNet); float32 on the CPU, where half is slow or
    unsupported."""

    def __init__(self, file: Path | str, device: str | None = None, engine: str | None = None):
        self.file = Path(file)
        self.device = device or default_device()
        self.engine = engine or ("spandrel" if spandrel_available() else "builtin")
        self.name = f"Real-ESRGAN {self.file.name} ({self.engine}, {self.device})"
        self.model = None

    def load(self):
        if self.model is None:
            if self.engine == "spandrel":
                model = load_spandrel(self.file, self.device)
                half = model.supports_half
            else:
                model, half = load_rrdbnet(self.file).to(self.device), True
            self.model = model.half() if half and self.device.startswith("cuda") else model
        return self.model

    @property
    def scale(self) -> int:
        return self.load().scale

    def __call__(self, image: Image.Image, side: int) -> Image.Image:
        model = self.load()
        result = image
        while model.scale > 1 and result.width < side:  # one ×2 pass is enough for crops down to half the side
            result = upscale_with(model, result)
        return result.resize((side, side), Image.LANCZOS)

    def unload(self) -> None:
        """Drop the model; on CUDA also return its cached blocks to the driver, for the next job's models."""
        if self.model is None:
            return
        self.model = None
        if self.device.startswith("cuda"):
            import gc

            import torch

            gc.collect()  # before emptying the cache: blocks still referenced from a cycle would stay reserved
            torch.cuda.empty_cache()


def model_upscaler(paths: Paths) -> Upscaler | None:
    """The manifest's Real-ESRGAN as an Upscaler when its weights are present and torch is installed, else None."""
    entry = weights.get(UPSCALER_ID)
    if weights.status(entry, paths).state != "present" or importlib.util.find_spec("torch") is None:
        return None
    return ModelUpscaler(entry.path(paths))


def for_context(ctx: AppContext) -> Upscaler | None:
    """The host's upscaler where the front end provides one (the WebUI's), else the standalone Real-ESRGAN, else
    None (callers then use `classical`). The caller unloads it when its job is done."""
    if ctx.make_upscaler is not None:
        upscaler = ctx.make_upscaler()
        if upscaler is not None:
            return upscaler
    return model_upscaler(ctx.paths)
