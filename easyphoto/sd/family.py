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
