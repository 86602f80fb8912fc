"""Saving portraits: PNG files the WebUI's PNG Info tab reads, with the full PortraitConfig beside the infotext.

The "parameters" text chunk uses the WebUI's infotext layout (prompt, "Negative prompt: ...", then "Key: value"
pairs; values with a comma, colon or quote are JSON-quoted), so "Send to img2img/inpaint" and PNG Info work on our
files. The "easyphoto" chunk holds everything needed to reproduce the portrait as JSON.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

from PIL import Image, PngImagePlugin

from easyphoto import __version__
from easyphoto.config import PortraitConfig
from easyphoto.identity_modes import IDENTITY_LICENCES, is_training_free
from easyphoto.portrait.pipeline import PortraitResult
from easyphoto.store import atomic_write_bytes

_NEEDS_QUOTES = re.compile(r'[,:"\n]')


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if _NEEDS_QUOTES.search(text) else text


def infotext(result: PortraitResult, config: PortraitConfig, size: tuple[int, int]) -> str:
    """WebUI-style generation parameters of the portrait's first pass, plus EasyPhoto's own keys."""
    pairs = {
        "Steps": config.first_steps,
        "Sampler": config.sampler,
        "Schedule type": config.scheduler,
        "CFG scale": config.cfg_scale,
        "Seed": result.seed,
        "Size": f"{size[0]}x{size[1]}",
        "Denoising strength": config.first_denoising_strength,
        "Mask blur": config.mask_blur,
        "EasyPhoto template": result.template,
        "EasyPhoto identities": ", ".join(f"{f.index}={f.identity_id}" for f in result.faces),
        "EasyPhoto likeness": ", ".join(
            f"{f.identity_id}={'none' if f.likeness is None else f'{f.likeness:.3f}'}" for f in result.faces),
        "Version": f"EasyPhoto {__version__}",
    }
    if is_training_free(config.identity_mode):  # no identity LoRA: say what rendered the face, and its licence
        pairs["EasyPhoto identity mode"] = f"{config.identity_mode} ({config.identity_weight:g})"
        pairs["EasyPhoto face model licence"] = IDENTITY_LICENCES[config.identity_mode]
        loras = ""
    else:
        loras = ", " + " ".join(f"<lora:{f.identity_id}:{config.lora_weight:g}>" for f in result.faces)
    params = ", ".join(f"{key}: {_quote(value)}" for key, value in pairs.items())
    return f"{result.prompt}{loras}\nNegative prompt: {result.negative_prompt}\n{params}"


def metadata(result: PortraitResult, config: PortraitConfig) -> dict:
    return {
        "easyphoto_version": __version__,
        "template": result.template,
        "seed": result.seed,
        "attempts": result.attempts,
        "faces": [{"index": f.index, "identity_id": f.identity_id, "box": [round(v, 1) for v in f.box],
                   "likeness": f.likeness, "others": f.others} for f in result.faces],
        "config": config.to_dict(),
        "identity_mode": config.identity_mode,
        # the licence of the face models a training-free portrait was rendered with travels with the image
        "face_model_licence": IDENTITY_LICENCES.get(config.identity_mode),
    }


def save(result: PortraitResult, config: PortraitConfig, outputs_dir: Path) -> Path:
    """outputs/<yyyy-mm-dd>/<NNNNN>-<template>.png, written atomically; never overwrites an earlier portrait."""
    folder = Path(outputs_dir) / time.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext(result, config, result.image.size))
    info.add_text("easyphoto", json.dumps(metadata(result, config), ensure_ascii=False))
    buffer = io.BytesIO()
    result.image.save(buffer, "PNG", pnginfo=info)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(result.template).stem)[:40] or "template"
    while True:
        number = 1 + max((int(p.name[:5]) for p in folder.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")), default=0)
        target = folder / f"{number:05d}-{stem}.png"
        if not target.exists():
            return atomic_write_bytes(target, buffer.getvalue())


def read_metadata(path: Path) -> dict:
    """The "easyphoto" JSON of a saved portrait ({} for other images)."""
    with Image.open(path) as image:
        text = image.info.get("easyphoto")
    return json.loads(text) if text else {}
