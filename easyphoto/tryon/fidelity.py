"""Garment fidelity: how closely a rendered garment region matches the garment's reference (a dataset crop + mask).

    fidelity = garment_fidelity(rendered, rendered_mask, reference, reference_mask)
    fidelity.score        # 0..1, 1 = the same colours and the same structure
    fidelity.describe()   # the formula with its numbers, for the report and the PNG infotext

Two parts, each 0..1, averaged with fixed weights:

* colour: 1 − the Bhattacharyya distance between the HSV histograms (16 hue × 8 saturation × 8 value bins) of the
  pixels inside each mask. Positions do not matter: a garment rendered smaller, turned or folded keeps its score;
  a recoloured one loses it.
* structure: the correlation (Pearson, negative values counted as 0) of gradient-orientation histograms (9 unsigned
  orientation bins in each cell of a 4×4 grid, magnitude-weighted, masked) of the two masks' bounding boxes, each
  resized to 64×64. Colours do not matter here: a recoloured garment keeps it; scrambled patterns, lost stripes or
  a missing logo lower it.

Neither part is a learned perceptual metric: they are cheap, deterministic and explainable, which is what a
checkpoint ranking and a per-image note need. Pure numpy + cv2 (imported inside the functions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from easyphoto.errors import EasyPhotoError

COLOUR_WEIGHT = 0.5
STRUCTURE_WEIGHT = 0.5
HSV_BINS = (16, 8, 8)
CELLS = 4  # per side of the structure grid
ORIENTATION_BINS = 9
STRUCTURE_SIDE = 64  # px the two boxes are resized to
MIN_PIXELS = 16  # fewer masked pixels than this give no meaningful histogram


class EmptyGarmentRegion(EasyPhotoError):
    """A mask given to the fidelity score has (almost) no pixel: there is no garment to compare."""

    phase = "tryon"
    http_status = 422


@dataclass(frozen=True)
class GarmentFidelity:
    score: float  # 0..1
    colour: float  # 0..1, HSV histogram similarity
    structure: float  # 0..1, gradient-orientation histogram correlation

    def describe(self) -> str:
        return (f"garment fidelity {self.score:.3f} = {COLOUR_WEIGHT:g} × colour {self.colour:.3f} "
                f"(1 − Bhattacharyya distance of HSV {'×'.join(map(str, HSV_BINS))} histograms in the masks) + "
                f"{STRUCTURE_WEIGHT:g} × structure {self.structure:.3f} (correlation of {CELLS}×{CELLS}-cell "
                f"{ORIENTATION_BINS}-bin gradient-orientation histograms of the mask boxes at "
                f"{STRUCTURE_SIDE}×{STRUCTURE_SIDE})")

    def to_dict(self) -> dict[str, float | str]:
        return {"score": round(self.score, 4), "colour": round(self.colour, 4), "structure": round(self.structure, 4),
                "formula": self.describe()}


def garment_fidelity(rendered: np.ndarray, rendered_mask: np.ndarray, reference: np.ndarray,
                     reference_mask: np.ndarray) -> GarmentFidelity:
    """Fidelity of the garment in `rendered` (RGB uint8, inside `rendered_mask`) to the one in `reference` (RGB
    uint8, inside `reference_mask`); masks are (H, W), non-zero = garment, each the size of its image."""
    a = _checked(rendered, rendered_mask, "rendered image")
    b = _checked(reference, reference_mask, "garment reference")
    colour = colour_similarity(*a, *b)
    structure = structure_similarity(*a, *b)
    score = COLOUR_WEIGHT * colour + STRUCTURE_WEIGHT * structure
    return GarmentFidelity(float(score), float(colour), float(structure))


def colour_similarity(image_a: np.ndarray, mask_a: np.ndarray, image_b: np.ndarray, mask_b: np.ndarray) -> float:
    import cv2

    hists = []
    for image, mask in ((image_a, mask_a), (image_b, mask_b)):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], mask, list(HSV_BINS), [0, 180, 0, 256, 0, 256])
        hists.append(hist / max(float(hist.sum()), 1.0))
    distance = cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA)
    return float(np.clip(1.0 - distance, 0.0, 1.0))


def structure_similarity(image_a: np.ndarray, mask_a: np.ndarray, image_b: np.ndarray, mask_b: np.ndarray) -> float:
    first = orientation_histograms(image_a, mask_a)
    second = orientation_histograms(image_b, mask_b)
    first, second = first - first.mean(), second - second.mean()
    norm = float(np.linalg.norm(first) * np.linalg.norm(second))
    if norm < 1e-12:  # a flat region on either side: both flat counts as the same structure
        return 1.0 if np.linalg.norm(first) < 1e-12 and np.linalg.norm(second) < 1e-12 else 0.0
    return float(np.clip(np.dot(first, second) / norm, 0.0, 1.0))


def orientation_histograms(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(CELLS² × ORIENTATION_BINS,) magnitude-weighted unsigned gradient orientations in the mask's box, masked."""
    import cv2

    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    size = (STRUCTURE_SIDE, STRUCTURE_SIDE)
    grey = cv2.resize(cv2.cvtColor(image[box], cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
    inside = cv2.resize((mask[box] > 0).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    grey = grey.astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy) * cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8))  # no mask edge
    orientation = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((orientation / np.pi * ORIENTATION_BINS).astype(int), ORIENTATION_BINS - 1)
    cell = STRUCTURE_SIDE // CELLS
    rows, cols = np.indices(size)
    index = ((rows // cell) * CELLS + cols // cell) * ORIENTATION_BINS + bins
    hist = np.bincount(index.ravel(), weights=magnitude.ravel(), minlength=CELLS * CELLS * ORIENTATION_BINS)
    return hist / max(float(hist.sum()), 1e-6)


def _checked(image: np.ndarray, mask: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.ascontiguousarray(np.asarray(image)[..., :3], dtype=np.uint8)
    region = np.asarray(mask)
    if region.ndim == 3:
        region = region.max(axis=2)
    if region.shape != pixels.shape[:2]:
        raise EmptyGarmentRegion(f"The {what}'s mask is {region.shape[::-1]}, the image {pixels.shape[1::-1]}.")
    region = ((region > 0) * 255).astype(np.uint8)
    if np.count_nonzero(region) < MIN_PIXELS:
        raise EmptyGarmentRegion(f"The {what}'s garment mask is empty ({np.count_nonzero(region)} pixels): there is "
                                 "no garment to score.", hint="Check the garment mask (dataset mask or try-on mask).")
    return pixels, region
