"""Double of Mikubill/sd-webui-controlnet:scripts/enums.py (the enums of the unit API)."""

from enum import Enum
from typing import List


class InputMode(Enum):
    SIMPLE = "simple"
    BATCH = "batch"
    MERGE = "merge"


class ResizeMode(Enum):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"

    def int_value(self):
        return {ResizeMode.RESIZE: 0, ResizeMode.INNER_FIT: 1, ResizeMode.OUTER_FIT: 2}[self]


class ControlMode(Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class HiResFixOption(Enum):
    BOTH = "Both"
    LOW_RES_ONLY = "Low res only"
    HIGH_RES_ONLY = "High res only"

    @property
    def low_res_enabled(self) -> bool:
        return self in (HiResFixOption.BOTH, HiResFixOption.LOW_RES_ONLY)

    @property
    def high_res_enabled(self) -> bool:
        return self in (HiResFixOption.BOTH, HiResFixOption.HIGH_RES_ONLY)


class BatchOption(Enum):
    DEFAULT = "All ControlNet units for all images in a batch"
    SEPARATE = "Each ControlNet unit for each image in a batch"


class PuLIDMode(Enum):
    FIDELITY = "Fidelity"
    STYLE = "Extremely style"


class ControlNetUnionControlType(Enum):
    OPENPOSE = "OpenPose"
    DEPTH = "Depth"
    SOFT_EDGE = "Soft Edge"
    HARD_EDGE = "Hard Edge"
    NORMAL_MAP = "Normal Map"
    SEGMENTATION = "Segmentation"
    TILE = "Tile"
    INPAINT = "Inpaint"
    UNKNOWN = "Unknown"

    @staticmethod
    def all_tags() -> List[str]:
        return [x.value for x in ControlNetUnionControlType]

    @staticmethod
    def from_str(s: str) -> "ControlNetUnionControlType":
        for t in ControlNetUnionControlType:
            if t.value == s:
                return t
        return ControlNetUnionControlType.UNKNOWN

    def int_value(self) -> int:
        if self == ControlNetUnionControlType.UNKNOWN:
            raise ValueError("Unknown control type cannot be encoded.")
        return list(ControlNetUnionControlType).index(self)


class StableDiffusionVersion(Enum):
    UNKNOWN = 0
    SD1x = 1
    SD2x = 2
    SDXL = 3

    @staticmethod
    def detect_from_model_name(model_name: str) -> "StableDiffusionVersion":
        """Guess the SD version from a ControlNet model name ("sd15", "v11", "xl", ...)."""
        model_name = model_name.lower()
        if "sd15" in model_name or "sd1.5" in model_name or "sd1x" in model_name or "v11" in model_name:
            return StableDiffusionVersion.SD1x
        if "sd21" in model_name or "2.1" in model_name:
            return StableDiffusionVersion.SD2x
        if "xl" in model_name.lower():
            return StableDiffusionVersion.SDXL
        return StableDiffusionVersion.UNKNOWN

    def encoder_block_num(self) -> int:
        return 9 if self == StableDiffusionVersion.SDXL else 12

    def controlnet_layer_num(self) -> int:
        return self.encoder_block_num() + 1

    def is_compatible_with(self, other: "StableDiffusionVersion") -> bool:
        """UNKNOWN is compatible with everything."""
        return self == StableDiffusionVersion.UNKNOWN or other == StableDiffusionVersion.UNKNOWN or self == other


class ControlModelType(Enum):
    ControlNet = "ControlNet, Lvmin Zhang"
    T2I_Adapter = "T2I_Adapter, Chong Mou"
    T2I_StyleAdapter = "T2I_StyleAdapter, Chong Mou"
    T2I_CoAdapter = "T2I_CoAdapter, Chong Mou"
    MasaCtrl = "MasaCtrl, Mingdeng Cao"
    GLIGEN = "GLIGEN, Yuheng Li"
    AttentionInjection = "AttentionInjection, Lvmin Zhang"
    StableSR = "StableSR, Jianyi Wang"
    PromptDiffusion = "PromptDiffusion, Zhendong Wang"
    ControlLoRA = "ControlLoRA, Wu Hecong"
    ReVision = "ReVision, Stability"
    IPAdapter = "IPAdapter, Hu Ye"
    Controlllite = "Controlllite, Kohya"
    InstantID = "InstantID, Qixun Wang"
    SparseCtrl = "SparseCtrl, Yuwei Guo"
    ControlNetUnion = "ControlNetUnion, xinsir6"
