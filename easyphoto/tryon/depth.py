"""Depth maps for the depth ControlNet (control_v11f1p_sd15_depth), from a DPT estimator run in-process.

    depth = load_depth(ctx.paths)          # None when the weights are not installed: depth is optional
    if depth is not None:
        condition = depth(pixels)         # RGB PIL image, the photo's size: near = bright (MiDaS' inverse depth)
        depth.unload()

The reference ran ControlNet's MiDaS annotator (dpt_hybrid-midas-501f0c75.pt, a pickle). The same network is
published for transformers as Intel/dpt-hybrid-midas (Apache-2.0, `DPTForDepthEstimation`, in transformers 4.30
and 4.46) with a safetensors file, read here from a local folder, offline:
``<models root>/easyphoto/depth/dpt-hybrid-midas/{config.json, model.safetensors}``. Preprocessing is the model's
own (square resize to its `image_size`, 384; mean 0.5, std 0.5), done here so no preprocessor file is needed; the
prediction is resized back to the photo and stretched to 0..255 like the annotator's output.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto.errors import EasyPhotoError

DEPTH_SUBDIR = "depth/dpt-hybrid-midas"
DEPTH_FILES = ("config.json", "model.safetensors")
DEPTH_IDS = ("depth-dpt-hybrid-config", "depth-dpt-hybrid-weights")  # their manifest entries, in that order
LICENCE = "Apache-2.0 (Intel/dpt-hybrid-midas)"
MEAN, STD = 0.5, 0.5


class DepthModelError(EasyPhotoError):
    phase = "models"
    http_status = 409


def depth_dir(paths) -> Path:
    """Where the depth estimator's files go: <models root>/easyphoto/depth/dpt-hybrid-midas."""
    return Path(paths.models_root) / DEPTH_SUBDIR


class DepthEstimator:
    """A DPT depth model in `folder` (config.json + model.safetensors); loaded on first use, freed by unload()."""

    name = "dpt-hybrid-midas"

    def __init__(self, folder: Path | str, device: str = "cpu"):
        self.folder = Path(folder)
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> Image.Image:
        """Relative depth of an RGB uint8 (H, W, 3) image as an RGB image of the same size, near = bright."""
        import torch

        pixels = np.asarray(image)[..., :3]
        height, width = pixels.shape[:2]
        with self._lock:
            model = self._load()
            side = int(model.config.image_size)
            resized = np.asarray(Image.fromarray(pixels).resize((side, side), Image.BICUBIC), np.float32) / 255.0
            tensor = torch.from_numpy((resized - MEAN) / STD).permute(2, 0, 1)[None].to(self.device)
            with torch.no_grad():
                predicted = model(pixel_values=tensor.to(next(model.parameters()).dtype)).predicted_depth
                depth = torch.nn.functional.interpolate(predicted[:, None].float(), size=(height, width),
                                                        mode="bicubic", align_corners=False)[0, 0]
        return depth_image(depth.cpu().numpy())

    def unload(self) -> None:
        with self._lock:
            self._model = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _load(self):
        if self._model is None:
            from transformers import DPTForDepthEstimation

            missing = [name for name in DEPTH_FILES if not (self.folder / name).is_file()]
            if missing:
                raise DepthModelError(f"The depth estimator's {', '.join(missing)} is missing in {self.folder}.",
                                      hint="Download it in EasyPhoto → Models, or turn depth_weight to 0.")
            try:
                model = DPTForDepthEstimation.from_pretrained(str(self.folder), local_files_only=True,
                                                              use_safetensors=True)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise DepthModelError(f"The depth estimator in {self.folder} could not be loaded: "
                                      f"{type(exc).__name__}: {exc}", hint="Download it again.") from exc
            self._model = model.to(self.device).eval().requires_grad_(False)
        return self._model


def depth_image(depth: np.ndarray) -> Image.Image:
    """A float depth map stretched to 0..255 (min → 0, max → 255), as RGB; a flat map is black."""
    low, high = float(np.min(depth)), float(np.max(depth))
    scaled = (depth - low) / (high - low) * 255.0 if high - low > 1e-8 else np.zeros_like(depth)
    grey = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")


_cache: dict[tuple[Path, str], DepthEstimator] = {}
_cache_lock = threading.Lock()


def load_depth(paths, device: str | None = None) -> DepthEstimator | None:
    """The cached estimator for `paths` (an easyphoto.store.Paths), or None when its files are not installed."""
    folder = depth_dir(paths)
    if not all((folder / name).is_file() for name in DEPTH_FILES):
        return None
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    with _cache_lock:
        return _cache.setdefault((folder, device), DepthEstimator(folder, device))


def unload() -> None:
    """Free every cached depth model (the estimators stay; they load again on next use)."""
    with _cache_lock:
        for estimator in _cache.values():
            estimator.unload()
