"""Double of Mikubill/sd-webui-controlnet:internal_controlnet/args.py: ``ControlNetUnit`` (host-api.md 4.2).

A pydantic **v1** model (``pydantic.v1`` when pydantic 2 is installed): module registry check, weight 0..2,
guidance_start <= guidance_end, str/enum-only resize_mode (an int fails the assertion) and control_mode (an int is
not a member of the str enum), slider defaults substituted for out-of-range values (-1) of an enabled unit,
``extra = "ignore"``, ``from_dict`` aliases (guidance, lowvram, input_image, mask_image). PIL images are rejected
by ``parse_image``. Catch ``internal_controlnet.args.ValidationError`` (the v1 class) in tests. Validators are
declared with ``allow_reuse=True`` only so that every test host can import the module afresh.
"""

import os
from copy import copy
from enum import Enum
from logging import Logger
from typing import Any, Callable, ClassVar, List, Optional, Tuple, Union

import numpy as np

try:
    from pydantic import v1 as pydantic_v1  # pydantic 2 (and 1.10.17+) ship the v1 API here
except ImportError:  # pydantic < 1.10.17
    import pydantic as pydantic_v1

from scripts.enums import ControlMode, ControlNetUnionControlType, HiResFixOption, InputMode, PuLIDMode, ResizeMode

try:
    from typing import Annotated
except ImportError:  # pragma: no cover - Python < 3.9
    from typing_extensions import Annotated

BaseModel = pydantic_v1.BaseModel
Field = pydantic_v1.Field
ValidationError = pydantic_v1.ValidationError
validator = pydantic_v1.validator
root_validator = pydantic_v1.root_validator


def _unimplemented_func(*args, **kwargs):
    raise NotImplementedError("Not implemented.")


class ControlNetUnit(BaseModel):
    """Arguments of one ControlNet unit (Mikubill >= 1.1.448)."""

    class Config:
        arbitrary_types_allowed = True
        extra = "ignore"

    cls_match_module: ClassVar[Callable[[str], bool]] = _unimplemented_func
    cls_match_model: ClassVar[Callable[[str], bool]] = _unimplemented_func
    cls_decode_base64: ClassVar[Callable[[str], np.ndarray]] = _unimplemented_func
    cls_torch_load_base64: ClassVar[Callable[[Any], Any]] = _unimplemented_func
    cls_get_preprocessor: ClassVar[Callable[[str], Any]] = _unimplemented_func
    cls_logger: ClassVar[Logger] = Logger("ControlNetUnit")

    is_ui: bool = False
    input_mode: InputMode = InputMode.SIMPLE
    batch_images: Optional[Any] = None
    output_dir: str = ""
    loopback: bool = False
    enabled: bool = False
    module: str = "none"
    model: str = "None"
    weight: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    image: Optional[Any] = None
    resize_mode: ResizeMode = ResizeMode.INNER_FIT
    low_vram: bool = False
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    guidance_end: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    pixel_perfect: bool = False
    control_mode: ControlMode = ControlMode.BALANCED
    inpaint_crop_input_image: bool = True
    hr_option: HiResFixOption = HiResFixOption.BOTH
    save_detected_map: bool = True
    advanced_weighting: Optional[List[float]] = None
    effective_region_mask: Optional[np.ndarray] = None
    pulid_mode: PuLIDMode = PuLIDMode.FIDELITY
    union_control_type: ControlNetUnionControlType = ControlNetUnionControlType.UNKNOWN
    ipadapter_input: Optional[List[Any]] = None
    mask: Optional[Any] = None
    batch_mask_dir: Optional[str] = None
    animatediff_batch: bool = False
    batch_modifiers: list = Field(default_factory=list)
    batch_image_files: list = Field(default_factory=list)
    batch_keyframe_idx: Optional[Union[str, list]] = None

    @validator("module", always=True, pre=True, allow_reuse=True)
    def check_module(cls, value: str) -> str:
        if not ControlNetUnit.cls_match_module(value):
            raise ValueError(f"module({value}) not found in supported modules.")
        return value

    @validator("model", always=True, pre=True, allow_reuse=True)
    def check_model(cls, value: str) -> str:
        if not ControlNetUnit.cls_match_model(value):
            raise ValueError(f"model({value}) not found in supported models.")
        return value

    @validator("resize_mode", always=True, pre=True, allow_reuse=True)
    def check_resize_mode(cls, value) -> ResizeMode:
        resize_mode_aliases = {
            "Inner Fit (Scale to Fit)": "Crop and Resize",
            "Outer Fit (Shrink to Fit)": "Resize and Fill",
            "Scale to Fit (Inner Fit)": "Crop and Resize",
            "Envelope (Outer Fit)": "Resize and Fill",
        }
        if isinstance(value, str):
            return ResizeMode(resize_mode_aliases.get(value, value))
        assert isinstance(value, ResizeMode)  # an int is rejected here (ValidationError)
        return value

    @root_validator(allow_reuse=True)
    def bound_check_params(cls, values: dict) -> dict:
        """For an enabled unit, values outside the preprocessor's slider range (e.g. -1) become its default."""
        enabled = values.get("enabled")
        module = values.get("module")
        if not enabled or not module:
            return values
        preprocessor = ControlNetUnit.cls_get_preprocessor(module)
        assert preprocessor is not None
        for unit_param, param in zip(("processor_res", "threshold_a", "threshold_b"),
                                     ("slider_resolution", "slider_1", "slider_2"), strict=False):
            value = values.get(unit_param)
            cfg = getattr(preprocessor, param)
            if value is None:
                continue
            if value < cfg.minimum or value > cfg.maximum:
                values[unit_param] = cfg.value
                if value != -1:
                    ControlNetUnit.cls_logger.info(f"[{module}.{unit_param}] Invalid value({value}), using default "
                                                   f"value {cfg.value}.")
        return values

    @root_validator(allow_reuse=True)
    def guidance_check(cls, values: dict) -> dict:
        start, end = values.get("guidance_start"), values.get("guidance_end")
        if start is not None and end is not None and start > end:
            raise ValueError(f"guidance_start({start}) must be less than or equal to guidance_end({end})")
        return values

    @validator("effective_region_mask", pre=True, allow_reuse=True)
    def parse_effective_region_mask(cls, value) -> np.ndarray:
        if isinstance(value, str):
            return ControlNetUnit.cls_decode_base64(value)
        assert isinstance(value, np.ndarray) or value is None
        return value

    @validator("ipadapter_input", pre=True, allow_reuse=True)
    def parse_ipadapter_input(cls, value) -> Optional[List[Any]]:
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        return [ControlNetUnit.cls_torch_load_base64(b) if isinstance(b, str) else b for b in value]

    @property
    def accepts_multiple_inputs(self) -> bool:
        return self.input_mode == InputMode.MERGE or self.is_ipadapter

    @property
    def is_animate_diff_batch(self) -> bool:
        return getattr(self, "animatediff_batch", False)

    @property
    def uses_clip(self) -> bool:
        return self.is_ipadapter or self.module in ("clip_vision", "revision_clipvision", "revision_ignore_prompt")

    @property
    def is_inpaint(self) -> bool:
        return "inpaint" in self.module

    @property
    def is_ipadapter(self) -> bool:
        return "ip-adapter" in self.module or "ip-adapter" in self.model.lower()

    def get_actual_preprocessors(self) -> List[Any]:
        p = ControlNetUnit.cls_get_preprocessor(self.module)
        return [p] if p is not None else []

    @classmethod
    def parse_image(cls, image) -> np.ndarray:
        """ndarray, base64 str or (batch) file path -> HxWx{3,4} uint8 array; anything else (PIL!) raises."""
        if isinstance(image, np.ndarray):
            np_image = image
        elif isinstance(image, str):
            if os.path.exists(image):
                from PIL import Image

                np_image = np.array(Image.open(image)).astype("uint8")
            else:
                np_image = ControlNetUnit.cls_decode_base64(image)
        else:
            raise ValueError(f"Unrecognized image format {image}.")
        if np_image.ndim == 2:
            np_image = np.stack([np_image, np_image, np_image], axis=-1)
        assert np_image.ndim == 3
        assert np_image.shape[2] in (3, 4)
        return np_image

    @classmethod
    def combine_image_and_mask(cls, np_image: np.ndarray, np_mask: Optional[np.ndarray] = None) -> np.ndarray:
        """RGBA: the RGB of the image with the mask (first channel) as alpha (zeros when there is no mask)."""
        h, w = np_image.shape[:2]
        if np_mask is None:
            np_mask = np.zeros((h, w, 3), dtype=np.uint8)
        assert np_mask.shape[:2] == (h, w), f"mask size {np_mask.shape[:2]} != image size {(h, w)}"
        return np.concatenate([np_image[:, :, :3], np_mask[:, :, 0:1]], axis=2).astype(np.uint8)

    @classmethod
    def legacy_field_alias(cls, values: dict) -> dict:
        ext_compat_keys = {"guidance": "guidance_end", "lowvram": "low_vram", "input_image": "image"}
        for alias, key in ext_compat_keys.items():
            if alias in values:
                assert key not in values, f"Conflict of field '{alias}' and '{key}'"
                values[key] = values.pop(alias)
                cls.cls_logger.warning(f"Deprecated alias '{alias}' detected. This field will be removed on "
                                       f"2024-06-01. Please use '{key}' instead.")
        return values

    @classmethod
    def mask_alias(cls, values: dict) -> dict:
        """Forge-compatible "mask_image" -> "mask"."""
        if "mask_image" in values:
            assert "mask" not in values, "Conflict of field 'mask_image' and 'mask'"
            values["mask"] = values.pop("mask_image")
        return values

    def get_input_images_rgba(self) -> Optional[List[np.ndarray]]:
        """The unit image(s) as RGBA arrays (mask in alpha): ndarray, {"image", "mask"} dicts, (image, mask), lists."""
        if self.image is None:
            return None
        images = self.image if isinstance(self.image, list) else [self.image]
        result = []
        for image in images:
            if isinstance(image, dict):
                np_image = self.parse_image(image["image"])
                np_mask = self.parse_image(image["mask"]) if image.get("mask") is not None else None
            elif isinstance(image, tuple):
                np_image = self.parse_image(image[0])
                np_mask = self.parse_image(image[1]) if image[1] is not None else None
            else:
                np_image = self.parse_image(image)
                np_mask = None
            if np_mask is None and self.mask is not None:
                np_mask = self.parse_image(self.mask)
            result.append(self.combine_image_and_mask(np_image, np_mask))
        return result

    @classmethod
    def from_dict(cls, values: dict) -> "ControlNetUnit":
        values = copy(values)
        values = cls.legacy_field_alias(cls.mask_alias(values))
        return ControlNetUnit(**values)

    @classmethod
    def from_infotext_args(cls, *args) -> "ControlNetUnit":
        return ControlNetUnit(**dict(zip(ControlNetUnit.infotext_fields(), args, strict=False)))

    @staticmethod
    def infotext_fields() -> Tuple[str]:
        return ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
                "guidance_start", "guidance_end", "pixel_perfect", "control_mode")

    def serialize(self) -> str:
        """"Module: canny, Model: x [hash], Weight: 1.0, Resize Mode: Crop and Resize, ..." (infotext value)."""

        def parse_value(value):
            return value.value if isinstance(value, Enum) else value

        return ", ".join(f"{field.replace('_', ' ').title()}: {parse_value(getattr(self, field))}"
                         for field in self.infotext_fields() if getattr(self, field) != -1)

    @classmethod
    def parse(cls, text: str) -> "ControlNetUnit":
        values = {}
        for item in text.split(", "):
            key, _, value = item.partition(": ")
            values[key.strip().lower().replace(" ", "_")] = value.strip()
        return ControlNetUnit(enabled=True, **values)

    def __copy__(self) -> "ControlNetUnit":
        return self.copy()
