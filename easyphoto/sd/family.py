"""Which family a base model is ("sd15" or "sdxl"), from a file's safetensors header or a folder's model_index.json.

Torch-free and cheap (a header is a few hundred KB of JSON), so the API and the job submission can decide SDXL
defaults and ControlNet/LoRA compatibility before anything is loaded. Anything that is not SDXL counts as "sd15"
here; base_model.check_single_file refuses what neither loader can use, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from easyphoto.store import safetensors_header


def model_family(path: Path | str) -> str:
    path = Path(path)
    if path.is_dir():
        index = path / "model_index.json"
        try:
            name = str(json.loads(index.read_text(encoding="utf-8")).get("_class_name", ""))
        except (OSError, ValueError):
            return "sd15"
        return "sdxl" if "XL" in name else "sd15"
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return "sd15"
    try:
        header = safetensors_header(path)
    except (OSError, ValueError):
        return "sd15"
    return "sdxl" if any(key.startswith("conditioner.embedders.") for key in header) else "sd15"


FAMILY_LABELS = {"sd15": "SD 1.5", "sdxl": "SDXL"}


def lora_file_family(path: Path | str) -> str | None:
    """The family a LoRA file was trained for: kohya's ss_base_model_version ("sd_v1…", "sdxl_…"), else its
    text-encoder names (lora_te_ = SD 1.5, lora_te1_/lora_te2_ = SDXL); None when nothing tells (a UNet-only file
    without metadata) or the file is unreadable."""
    try:
        header = safetensors_header(Path(path))
    except (OSError, ValueError):
        return None
    version = str((header.get("__metadata__") or {}).get("ss_base_model_version", ""))
    if version.startswith("sdxl"):
        return "sdxl"
    if version.startswith(("sd_v1", "sd_v1.5")):
        return "sd15"
    if any(key.startswith(("lora_te1_", "lora_te2_")) for key in header):
        return "sdxl"
    if any(key.startswith("lora_te_") for key in header):
        return "sd15"
    return None
