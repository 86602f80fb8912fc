"""Double of Forge's extensions-builtin/sd_forge_controlnet/lib_controlnet/external_code.py (API version 2).

``ControlNetUnit`` is a plain dataclass: no validation, no ``low_vram`` (a keyword raises TypeError),
``module="None"`` and ``enabled=True`` by default; ``from_dict`` drops unknown keys (host-api.md 6).
"""

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Dict, List, Optional, TypedDict, Union

import numpy as np
from modules import shared
from modules.api import api

from lib_controlnet.enums import HiResFixOption, InputMode


def get_api_version() -> int:
    return 2


class ControlMode(Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class BatchOption(Enum):
    DEFAULT = "All ControlNet units for all images in a batch"
    SEPARATE = "Each ControlNet unit for each image in a batch"


class ResizeMode(Enum):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"

    def int_value(self):
        return {ResizeMode.RESIZE: 0, ResizeMode.INNER_FIT: 1, ResizeMode.OUTER_FIT: 2}[self]


resize_mode_aliases = {
    "Inner Fit (Scale to Fit)": "Crop and Resize",
    "Outer Fit (Shrink to Fit)": "Resize and Fill",
    "Scale to Fit (Inner Fit)": "Crop and Resize",
    "Envelope (Outer Fit)": "Resize and Fill",
}


def resize_mode_from_value(value: Union[str, int, ResizeMode]) -> ResizeMode:
    if isinstance(value, str):
        if value.startswith("ResizeMode."):
            return getattr(ResizeMode, value.split(".")[1])
        return ResizeMode(resize_mode_aliases.get(value, value))
    if isinstance(value, int):
        assert value >= 0
        if value == 3:
            return ResizeMode.RESIZE
        if value >= len(ResizeMode):
            return ResizeMode.RESIZE
        return [e for e in ResizeMode][value]
    return value


def control_mode_from_value(value: Union[str, int, ControlMode]) -> ControlMode:
    if isinstance(value, str):
        if value.startswith("ControlMode."):
            return getattr(ControlMode, value.split(".")[1])
        return ControlMode(value)
    if isinstance(value, int):
        return [e for e in ControlMode][value]
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


class GradioImageMaskPair(TypedDict):
    image: np.ndarray
    mask: np.ndarray


@dataclass
class ControlNetUnit:
    input_mode: InputMode = InputMode.SIMPLE
    use_preview_as_input: bool = False
    batch_image_dir: str = ""
    batch_mask_dir: str = ""
    batch_input_gallery: Optional[List[str]] = None
    batch_mask_gallery: Optional[List[str]] = None
    generated_image: Optional[np.ndarray] = None
    mask_image: Optional[GradioImageMaskPair] = None
    mask_image_fg: Optional[GradioImageMaskPair] = None
    hr_option: Union[HiResFixOption, int, str] = HiResFixOption.BOTH
    enabled: bool = True
    module: str = "None"
    model: str = "None"
    weight: float = 1.0
    image: Optional[GradioImageMaskPair] = None
    image_fg: Optional[GradioImageMaskPair] = None
    resize_mode: Union[ResizeMode, int, str] = ResizeMode.INNER_FIT
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: Union[ControlMode, int, str] = ControlMode.BALANCED
    save_detected_map: bool = True

    @staticmethod
    def infotext_fields():
        return ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
                "guidance_start", "guidance_end", "pixel_perfect", "control_mode", "hr_option")

    @staticmethod
    def from_dict(d: Dict) -> "ControlNetUnit":
        """Unknown keys (e.g. low_vram) are dropped; a {"image", "mask"} image dict keeps its mask in mask_image."""
        d = {k: v for k, v in d.items() if k in vars(ControlNetUnit)}
        unit = ControlNetUnit(**d)
        if isinstance(unit.image, dict) and "mask" in unit.image and unit.mask_image is None:
            unit.mask_image = {"image": unit.image.get("mask"), "mask": None}
        return unit

    def __copy__(self):
        return dataclasses.replace(self)


UiControlNetUnit = ControlNetUnit


def to_base64_nparray(encoding: str):
    return np.array(api.decode_base64_to_image(encoding)).astype("uint8")


def get_max_models_num():
    return shared.opts.data.get("control_net_unit_count", 3)

