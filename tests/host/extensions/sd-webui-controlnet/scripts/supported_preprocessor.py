"""Double of Mikubill/sd-webui-controlnet:scripts/supported_preprocessor.py: the preprocessor registry.

``get_preprocessor`` accepts the name ("depth") or the label ("depth_midas"), like the real one. Calling a
preprocessor returns a fake detected map (the input, inverted unless the preprocessor is "none").
"""

from abc import ABC
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, NamedTuple, Optional, Set

import numpy as np


@dataclass
class PreprocessorParameter:
    label: str = "EMPTY_LABEL"
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.01
    value: float = 0.5
    visible: bool = True

    @property
    def gradio_update_kwargs(self) -> dict:
        return dict(minimum=self.minimum, maximum=self.maximum, step=self.step, label=self.label, value=self.value,
                    visible=self.visible)

    @property
    def api_json(self) -> dict:
        return dict(name=self.label, value=self.value, min=self.minimum, max=self.maximum, step=self.step)


@dataclass
class Preprocessor(ABC):
    name: str
    _label: str = None
    tags: List[str] = field(default_factory=list)
    returns_image: bool = True
    accepts_mask: bool = False
    requires_mask: bool = False
    model: Optional[Any] = None
    preprocessor_deps: List[str] = field(default_factory=list)

    slider_resolution = PreprocessorParameter(label="Resolution", minimum=64, maximum=2048, value=512, step=8,
                                              visible=True)
    slider_1 = PreprocessorParameter(visible=False)
    slider_2 = PreprocessorParameter(visible=False)
    slider_3 = PreprocessorParameter(visible=False)
    show_control_mode = True
    do_not_need_model = False
    sorting_priority = 0
    corp_image_with_a1111_mask_when_in_img2img_inpaint_tab = True
    fill_mask_with_one_when_resize_and_fill = False
    use_soft_projection_in_hr_fix = False
    expand_mask_when_resize_and_fill = False

    all_processors: ClassVar[Dict[str, "Preprocessor"]] = {}
    all_processors_by_name: ClassVar[Dict[str, "Preprocessor"]] = {}

    @property
    def label(self) -> str:
        return self._label if self._label is not None else self.name

    @classmethod
    def add_supported_preprocessor(cls, p: "Preprocessor"):
        assert p.label not in cls.all_processors, f"{p.label} already registered!"
        cls.all_processors[p.label] = p
        assert p.name not in cls.all_processors_by_name, f"{p.name} already registered!"
        cls.all_processors_by_name[p.name] = p

    @classmethod
    def get_preprocessor(cls, name: str) -> Optional["Preprocessor"]:
        return cls.all_processors.get(name, cls.all_processors_by_name.get(name, None))

    @classmethod
    def get_sorted_preprocessors(cls) -> List["Preprocessor"]:
        none = cls.get_preprocessor("none")
        rest = sorted((p for p in cls.all_processors.values() if p is not none), key=lambda x: x.label)
        return ([none] if none is not None else []) + rest

    @classmethod
    def get_all_preprocessor_tags(cls):
        return sorted({tag for p in cls.all_processors.values() for tag in p.tags})

    @classmethod
    def get_filtered_preprocessors(cls, tag: str) -> List["Preprocessor"]:
        if tag == "All":
            return list(cls.all_processors.values())
        return [p for p in cls.get_sorted_preprocessors() if tag in p.tags or p.label == "none"]

    @classmethod
    def get_default_preprocessor(cls, tag: str) -> "Preprocessor":
        ps = cls.get_filtered_preprocessors(tag)
        assert len(ps) > 0
        return ps[0] if len(ps) == 1 else ps[1]

    @classmethod
    def tag_to_filters(cls, tag: str) -> Set[str]:
        return {tag.lower()}

    @classmethod
    def unload_unused(cls, active_processors: Set["Preprocessor"]):
        return None

    class Result(NamedTuple):
        value: Any
        display_images: List[np.ndarray]

    def cached_call(self, input_image, *args, **kwargs) -> "Preprocessor.Result":
        result = self(input_image, *args, **kwargs)
        return Preprocessor.Result(value=result, display_images=[result])

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, Preprocessor) and self.name == other.name

    def __call__(self, input_image, resolution, slider_1=None, slider_2=None, slider_3=None, input_mask=None,
                 **kwargs):
        """Fake detected map: the RGB input ("none") or its inverse (any other preprocessor)."""
        rgb = np.asarray(input_image)[:, :, :3]
        return rgb.copy() if self.name == "none" else (255 - rgb).astype(np.uint8)

    def unload(self):
        return False
