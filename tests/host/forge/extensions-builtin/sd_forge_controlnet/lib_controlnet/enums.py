"""Double of Forge's lib_controlnet/enums.py."""

from enum import Enum


class InputMode(Enum):
    SIMPLE = "simple"
    BATCH = "batch"
    MERGE = "merge"


class HiResFixOption(Enum):
    BOTH = "Both"
    LOW_RES_ONLY = "Low res only"
    HIGH_RES_ONLY = "High res only"

    @staticmethod
    def from_value(value) -> "HiResFixOption":
        if isinstance(value, str) and value.startswith("HiResFixOption."):
            _, field = value.split(".")
            return getattr(HiResFixOption, field)
        if isinstance(value, str):
            return HiResFixOption(value)
        if isinstance(value, int):
            return [x for x in HiResFixOption][value]
        assert isinstance(value, HiResFixOption)
        return value
