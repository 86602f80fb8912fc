"""Double of Mikubill/sd-webui-controlnet:internal_controlnet/external_code.py (API version 3, host-api.md 4.3).

``update_cn_script`` pads with disabled units up to ``control_net_unit_count`` and, when given more units than
slots, shifts ``args_from/args_to`` of every later alwayson script of the runner (the real, persistent effect).
"""

import base64
import io
import logging
from copy import copy
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from modules import processing, scripts, shared
from modules.api import api

from internal_controlnet.args import ControlNetUnit
from scripts import global_state
from scripts import preprocessor as _preprocessors  # noqa: F401  (registers the preprocessors)
from scripts.enums import (  # noqa: F401
    BatchOption,
    ControlMode,
    ControlModelType,
    HiResFixOption,
    InputMode,
    ResizeMode,
    StableDiffusionVersion,
)
from scripts.supported_preprocessor import Preprocessor

logger = logging.getLogger("ControlNet")


def get_api_version() -> int:
    return 3


resize_mode_aliases = {
    "Inner Fit (Scale to Fit)": "Crop and Resize",
    "Outer Fit (Shrink to Fit)": "Resize and Fill",
    "Scale to Fit (Inner Fit)": "Crop and Resize",
    "Envelope (Outer Fit)": "Resize and Fill",
}


def resize_mode_from_value(value: Union[str, int, ResizeMode]) -> ResizeMode:
    if isinstance(value, str):
        return ResizeMode(resize_mode_aliases.get(value, value))
    if isinstance(value, int):
        assert value >= 0
        if value == 3:  # "Just resize (latent upscale)"
            return ResizeMode.RESIZE
        if value >= len(ResizeMode):
            logger.warning(f"Unrecognized ResizeMode int value {value}. Fall back to RESIZE.")
            return ResizeMode.RESIZE
        return [e for e in ResizeMode][value]
    return value


def visualize_inpaint_mask(img):
    if img.ndim == 3 and img.shape[2] == 4:
        result = img.copy()
        mask = result[:, :, 3]
        mask = 255 - mask // 2
        result[:, :, 3] = mask
        return np.ascontiguousarray(result.copy())
    return img


def pixel_perfect_resolution(image: np.ndarray, target_H: int, target_W: int, resize_mode: ResizeMode) -> int:
    raw_H, raw_W, _ = image.shape
    k0 = float(target_H) / float(raw_H)
    k1 = float(target_W) / float(raw_W)
    if resize_mode == ResizeMode.OUTER_FIT:
        estimation = min(k0, k1) * float(min(raw_H, raw_W))
    else:
        estimation = max(k0, k1) * float(min(raw_H, raw_W))
    return int(np.round(estimation))


def to_base64_nparray(encoding: str) -> np.ndarray:
    return np.array(api.decode_base64_to_image(encoding)).astype("uint8")


def _is_unit_like(script_arg) -> bool:
    if isinstance(script_arg, (ControlNetUnit, dict)):
        return True
    return hasattr(script_arg, "__dict__") and set(ControlNetUnit.__fields__).issubset(vars(script_arg))


def get_all_units_in_processing(p: processing.StableDiffusionProcessing) -> List[ControlNetUnit]:
    return get_all_units(p.scripts, p.script_args)


def get_all_units(script_runner: scripts.ScriptRunner, script_args: List[Any]) -> List[ControlNetUnit]:
    cn_script = find_cn_script(script_runner)
    if cn_script:
        return get_all_units_from(script_args[cn_script.args_from:cn_script.args_to])
    return []


def get_all_units_from(script_args: List[Any]) -> List[ControlNetUnit]:
    """ControlNetUnits, dicts (via from_dict: may raise ValidationError) and duck-typed unit objects."""
    all_units = [to_processing_unit(script_arg) for script_arg in script_args if _is_unit_like(script_arg)]
    if not all_units:
        logger.warning("No ControlNetUnit detected in args. It is very likely that you are having an extension "
                       f"conflict. Here are args received by ControlNet: {script_args}.")
    return all_units


def get_single_unit_from(script_args: List[Any], index: int = 0) -> Optional[ControlNetUnit]:
    units = [x for x in script_args if _is_unit_like(x)]
    return to_processing_unit(units[index]) if 0 <= index < len(units) else None


def get_max_models_num():
    return shared.opts.data.get("control_net_unit_count", 3)


def to_processing_unit(unit: Union[Dict, ControlNetUnit]) -> ControlNetUnit:
    if isinstance(unit, dict):
        return ControlNetUnit.from_dict(unit)
    if isinstance(unit, ControlNetUnit):
        return unit
    return ControlNetUnit(**{k: getattr(unit, k) for k in ControlNetUnit.__fields__ if hasattr(unit, k)})


def update_cn_script_in_processing(p: processing.StableDiffusionProcessing, cn_units: List[ControlNetUnit],
                                   **_kwargs):
    p.script_args = update_cn_script(p.scripts, p.script_args_value, cn_units)


def update_cn_script(script_runner: scripts.ScriptRunner, script_args: Union[Tuple[Any], List[Any]],
                     cn_units: List[ControlNetUnit]) -> Union[Tuple[Any], List[Any]]:
    """Return script_args with the CN slice replaced by ``cn_units`` (padded with disabled units)."""
    script_args_type = type(script_args)
    assert script_args_type in (tuple, list), script_args_type
    updated_script_args = list(copy(script_args))
    cn_script = find_cn_script(script_runner)
    if cn_script is None or len(script_args) < cn_script.args_from:
        return script_args
    max_models = shared.opts.data.get("control_net_unit_count", 3)
    cn_units = cn_units + [ControlNetUnit(enabled=False)] * max(max_models - len(cn_units), 0)
    cn_script_args_diff = 0
    for script in script_runner.alwayson_scripts:
        if script is cn_script:
            cn_script_args_diff = len(cn_units) - (cn_script.args_to - cn_script.args_from)
            updated_script_args[script.args_from:script.args_to] = cn_units
            script.args_to = script.args_from + len(cn_units)
        else:
            script.args_from += cn_script_args_diff
            script.args_to += cn_script_args_diff
    return script_args_type(updated_script_args)


def update_cn_script_in_place(script_runner: scripts.ScriptRunner, script_args: List[Any],
                              cn_units: List[ControlNetUnit], **_kwargs):
    logger.warning("update_cn_script_in_place is deprecated; use update_cn_script_in_processing")
    script_args[:] = update_cn_script(script_runner, script_args, cn_units)


def get_models(update: bool = False) -> List[str]:
    """"name [hash8]" of every model found ("None" is not included)."""
    if update:
        global_state.update_cn_models()
    return list(global_state.cn_models_names.values())


def get_modules(alias_names: bool = False) -> List[str]:
    return [p.label if alias_names else p.name for p in Preprocessor.get_sorted_preprocessors()]


def get_modules_detail(alias_names: bool = False) -> Dict[str, Any]:
    result = {}
    for p in Preprocessor.get_sorted_preprocessors():
        sliders = [s.api_json for s in (p.slider_resolution, p.slider_1, p.slider_2, p.slider_3) if s.visible]
        result[p.label if alias_names else p.name] = {"model_free": p.do_not_need_model, "sliders": sliders}
    return result


def find_cn_script(script_runner: scripts.ScriptRunner) -> Optional[scripts.Script]:
    if script_runner is None:
        return None
    for script in script_runner.alwayson_scripts:
        if is_cn_script(script):
            return script
    return None


def is_cn_script(script: scripts.Script) -> bool:
    return script.title().lower() == "controlnet"


def decode_base64(b: str):
    import torch

    return torch.load(io.BytesIO(base64.b64decode(b)))


ControlNetUnit.cls_match_module = lambda module: Preprocessor.get_preprocessor(module) is not None
ControlNetUnit.cls_match_model = lambda model: True
ControlNetUnit.cls_decode_base64 = to_base64_nparray
ControlNetUnit.cls_torch_load_base64 = decode_base64
ControlNetUnit.cls_get_preprocessor = Preprocessor.get_preprocessor
ControlNetUnit.cls_logger = logger
