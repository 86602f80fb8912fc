"""What the segmentation capability hands to the try-on algorithms: clothes parsing and point/box prompted masks.

Torch-free and light on purpose: the try-on code, the API and the UI import these types without loading a model.

    parsing = parser.parse(rgb)                       # Parsing: one ATR label per pixel
    parsing.mask("upper_clothes")                     # uint8 0/255, the image's size
    parsing.fractions()                               # {"upper_clothes": 0.21, "face": 0.04, ...}
    mask = segmenter.segment(rgb, points=[Point(120, 200), Point(40, 40, positive=False)], boxes=[])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# The 18 ATR labels in the order of the published clothes-parsing SegFormer (mattmdjaga/segformer_b2_clothes,
# MIT): index i of the model's logits is ATR_LABELS[i]. Names are our snake_case of its id2label.
ATR_LABELS: tuple[str, ...] = (
    "background", "hat", "hair", "sunglasses", "upper_clothes", "skirt", "pants", "dress", "belt",
    "left_shoe", "right_shoe", "face", "left_leg", "right_leg", "left_arm", "right_arm", "bag", "scarf",
)
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(ATR_LABELS)}

# Garment categories a user picks, and the parsing labels each one covers (the region a try-on repaints and a
# garment dataset cuts out).
GARMENT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "upper": ("upper_clothes",),
    "lower": ("pants", "skirt"),
    "dress": ("dress",),
    "pants": ("pants",),
    "skirt": ("skirt",),
    "scarf": ("scarf",),
    "hat": ("hat",),
    "bag": ("bag",),
    "belt": ("belt",),
}
# What a try-on never repaints unless asked: the person's identity and hands (ATR has no hand label: hands are
# found from pose keypoints, see easyphoto.tryon).
PROTECTED_LABELS: tuple[str, ...] = ("face", "hair", "sunglasses")


@dataclass(frozen=True)
class Parsing:
    """Per-pixel ATR labels of one image (H, W) uint8, indices into ATR_LABELS."""

    labels: np.ndarray

    def mask(self, *names: str) -> np.ndarray:
        """uint8 0/255 mask of the pixels whose label is one of `names` (ATR names); KeyError for an unknown name."""
        indices = [LABEL_INDEX[name] for name in names]
        return (np.isin(self.labels, indices) * 255).astype(np.uint8)

    def category_mask(self, category: str) -> np.ndarray:
        return self.mask(*GARMENT_CATEGORIES[category])

    def fractions(self) -> dict[str, float]:
        """Area fraction of every label present (background included)."""
        counts = np.bincount(self.labels.ravel(), minlength=len(ATR_LABELS))
        total = max(int(self.labels.size), 1)
        return {ATR_LABELS[i]: float(c) / total for i, c in enumerate(counts[: len(ATR_LABELS)]) if c}


@runtime_checkable
class ClothesParser(Protocol):
    name: str

    def parse(self, image: np.ndarray) -> Parsing:
        """Labels for an RGB uint8 (H, W, 3) image, at the image's own size."""

    def unload(self) -> None: ...


@dataclass(frozen=True)
class Point:
    """A click in image pixels: positive = part of the object, negative = not."""

    x: float
    y: float
    positive: bool = True


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels


@runtime_checkable
class PointSegmenter(Protocol):
    name: str

    def segment(self, image: np.ndarray, points: list[Point], boxes: list[Box] | None = None) -> np.ndarray:
        """uint8 0/255 mask (H, W) of the object the prompts select; several boxes → their masks merged."""

    def unload(self) -> None: ...
