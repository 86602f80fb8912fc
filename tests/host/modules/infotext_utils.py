"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/infotext_utils.py (also importable under its old name
``modules.generation_parameters_copypaste``, registered in sys.modules like the real file does)."""

import base64
import io
import os
import re
import sys

from modules import shared
from PIL import Image

sys.modules["modules.generation_parameters_copypaste"] = sys.modules[__name__]  # alias for old name

re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")

infotext_to_setting_name_mapping = [
    ("Clip skip", "CLIP_stop_at_last_layers"),
    ("Conditional mask weight", "inpainting_mask_weight"),
    ("Model hash", "sd_model_checkpoint"),
    ("ENSD", "eta_noise_seed_delta"),
    ("Token merging ratio", "token_merging_ratio"),
    ("VAE", "sd_vae"),
]


def _unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        import json

        return json.loads(text)
    except Exception:
        return text


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None):
    """"prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: Euler, Size: 512x512, ..." -> dict (simplified)."""
    skip_fields = skip_fields or []
    res = {}
    prompt, negative_prompt, done_with_prompt = "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    for k, v in re_param.findall(lastline):
        v = _unquote(v)
        m = re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    for key in skip_fields:
        res.pop(key, None)
    return res


def create_override_settings_dict(text_pairs):
    """["Clip skip: 2", ...] -> {"CLIP_stop_at_last_layers": 2, ...} for settings that have an infotext name."""
    res = {}
    params = {}
    for pair in text_pairs:
        k, v = pair.split(":", maxsplit=1)
        params[k] = v.strip()
    mapping = [(info.infotext, k) for k, info in shared.opts.data_labels.items() if info.infotext]
    for param_name, setting_name in mapping + infotext_to_setting_name_mapping:
        value = params.get(param_name, None)
        if value is None:
            continue
        res[setting_name] = shared.opts.cast_value(setting_name, value)
    return res


def image_from_url_text(filedata):
    """None / [filedata] / {"name": path} / "data:image/png;base64,..." -> PIL image."""
    if filedata is None:
        return None
    if isinstance(filedata, list):
        if not filedata:
            return None
        filedata = filedata[0]
    if isinstance(filedata, dict) and filedata.get("is_file", True) and "name" in filedata:
        if not os.path.isfile(filedata["name"]):
            raise ValueError(f"File does not exist: {filedata['name']}")
        return Image.open(filedata["name"])
    if isinstance(filedata, str) and filedata.startswith("data:image/png;base64,"):
        filedata = filedata[len("data:image/png;base64,"):]
    return Image.open(io.BytesIO(base64.decodebytes(filedata.encode("utf-8"))))
