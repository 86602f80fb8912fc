"""Layout of the kit cache and one builder per artefact (each builds its inputs on demand).

Why a separate module: the pytest fixtures, ``python -m tests.kit`` (pre-build + timings) and
any ad-hoc script share one definition of where each artefact lives under the cache root::

    <root>/KIT_VERSION
    <root>/downloads/                    pip-downloaded wheels/sdists (open_clip_torch, ...)
    <root>/clip_tokenizer/               CLIPTokenizer folder (real CLIP BPE)
    <root>/sd/txt2img/                   StableDiffusionPipeline folder
    <root>/sd/inpaint/                   StableDiffusionInpaintPipeline folder (9-channel UNet)
    <root>/sd/controlnet/{canny,openpose,color,tile}/
    <root>/sd/{txt2img,inpaint}-config/  the same pipelines without weight files
    <root>/single_file/tiny-sd15/tiny-sd15.safetensors (+ .yaml)
    <root>/single_file/tiny-sd15-inpainting/tiny-sd15-inpainting.safetensors (+ .yaml)
    <root>/onnx/{w600k_r50,det_10g}.onnx
    <root>/sdxl/{sdxl,sdxl-controlnet-canny}/   tiny SDXL pipeline and ControlNet folders
    <root>/sdxl/tiny-sdxl/tiny-sdxl.safetensors  the same in the WebUI's SGM single-file layout
    <root>/photos/...                    photos extracted from downloaded packages
"""

from __future__ import annotations

import time
from pathlib import Path

from .clip_tokenizer import build_clip_tokenizer
from .single_file import build_single_file
from .tiny_onnx import build_onnx_models
from .tiny_sd import TinySDPaths, build_config_only, build_tiny_sd
from .tiny_sdxl import build_tiny_sdxl

SINGLE_FILE_NAMES = {False: "tiny-sd15", True: "tiny-sd15-inpainting"}


def tokenizer_dir(root: Path) -> Path:
    """CLIP tokenizer folder (downloads open_clip_torch's wheel on first use)."""
    return build_clip_tokenizer(root / "clip_tokenizer", root / "downloads")


def tiny_sd_paths(root: Path) -> TinySDPaths:
    """txt2img, inpaint and ControlNet diffusers folders."""
    return build_tiny_sd(root / "sd", tokenizer_dir(root))


def config_only_dir(root: Path, *, inpaint: bool) -> Path:
    """Weight-free copy of the txt2img or inpaint folder, for ``from_single_file(config=...)``."""
    paths = tiny_sd_paths(root)
    source = paths.inpaint if inpaint else paths.txt2img
    return build_config_only(source, root / "sd" / f"{source.name}-config")


def single_file_path(root: Path, *, inpaint: bool) -> Path:
    """WebUI-style ``.safetensors`` checkpoint of the txt2img or inpaint model."""
    paths = tiny_sd_paths(root)
    source = paths.inpaint if inpaint else paths.txt2img
    return build_single_file(source, root / "single_file" / SINGLE_FILE_NAMES[inpaint], inpaint=inpaint)


def tiny_sdxl_paths(root: Path) -> dict[str, Path]:
    """Tiny SDXL: {"pipeline": diffusers folder, "controlnet": folder, "single_file": SGM .safetensors}."""
    return build_tiny_sdxl(root / "sdxl", tokenizer_dir(root))


def onnx_models(root: Path) -> dict[str, Path]:
    """``{"arcface": ..., "scrfd": ...}`` ONNX files."""
    return build_onnx_models(root / "onnx")


def build_all(root: Path) -> dict[str, float]:
    """Build every model artefact (not the photos); return seconds spent per step."""
    steps = {
        "clip_tokenizer": lambda: tokenizer_dir(root),
        "tiny_sd": lambda: tiny_sd_paths(root),
        "config_only": lambda: [config_only_dir(root, inpaint=flag) for flag in (False, True)],
        "single_file": lambda: [single_file_path(root, inpaint=flag) for flag in (False, True)],
        "onnx": lambda: onnx_models(root),
        "tiny_sdxl": lambda: tiny_sdxl_paths(root),
    }
    timings = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        timings[name] = time.perf_counter() - start
    return timings
