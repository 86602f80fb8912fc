"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/infotext_utils.py (also importable under its old name
``modules.generation_parameters_copypaste``, registered in sys.modules like the real file does).

Paste buttons: ``create_buttons`` makes the "Send to <tab>" gr.Buttons (gradio is imported only there, so starting
the host stays cheap), ``register_paste_params_button`` appends a ``ParamBinding`` to ``registered_param_bindings``
(what the real ``connect_paste_params_buttons`` wires up after the UI is built; tests read the list), ``reset()``
clears them (the real ``ui.create_ui`` calls it first).
"""

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



class ParamBinding:
    def __init__(self, paste_button, tabname, source_text_component=None, source_image_component=None,
                 source_tabname=None, override_settings_component=None, paste_field_names=None):
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


class PasteField(tuple):
    def __new__(cls, component, target, *, api=None):
        return super().__new__(cls, (component, target))

    def __init__(self, component, target, *, api=None):
        super().__init__()
        self.api = api
        self.component = component
        self.label = target if isinstance(target, str) else None
        self.function = target if callable(target) else None


paste_fields: dict[str, dict] = {}
registered_param_bindings: list[ParamBinding] = []


def reset():
    paste_fields.clear()
    registered_param_bindings.clear()


def create_buttons(tabs_list):
    """{tab: gr.Button("Send to <tab>", elem_id="<tab>_tab")} (inside the caller's gr.Blocks)."""
    import gradio as gr

    buttons = {}
    for tab in tabs_list:
        buttons[tab] = gr.Button(f"Send to {tab}", elem_id=f"{tab}_tab")
    return buttons


def bind_buttons(buttons, send_image, send_generate_info):
    """Old API: one ParamBinding per button (a str ``send_generate_info`` names a source tab, else a component)."""
    import gradio as gr

    for tabname, button in buttons.items():
        source_text_component = send_generate_info if isinstance(send_generate_info, gr.components.Component) else None
        source_tabname = send_generate_info if isinstance(send_generate_info, str) else None
        register_paste_params_button(ParamBinding(paste_button=button, tabname=tabname,
                                                  source_text_component=source_text_component,
                                                  source_image_component=send_image, source_tabname=source_tabname))


def register_paste_params_button(binding: ParamBinding):
    registered_param_bindings.append(binding)


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
