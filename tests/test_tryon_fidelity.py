"""Garment fidelity (easyphoto.tryon.fidelity) on a real photo region: identical, recoloured, scrambled, moved."""

from __future__ import annotations

import numpy as np
import pytest

from easyphoto.imageops import load_photo, to_array
from easyphoto.tryon.fidelity import COLOUR_WEIGHT, EmptyGarmentRegion, garment_fidelity
from tests.conftest import require_module

cv2 = require_module("cv2")


@pytest.fixture(scope="module")
def garment(photo_astronaut):
    """A 'garment': the astronaut's suit and patch (lower half of the photo), an ellipse mask."""
    pixels = to_array(load_photo(photo_astronaut).image)[250:506, 100:356].copy()
    mask = np.zeros(pixels.shape[:2], np.uint8)
    cv2.ellipse(mask, (128, 128), (110, 120), 0, 0, 360, 255, -1)
    return pixels, mask


def recoloured(pixels: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 60) % 180  # a third of the hue circle
    hsv[..., 1] = np.maximum(hsv[..., 1], 120)  # white and grey become coloured too
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def scrambled(pixels: np.ndarray, mask: np.ndarray, block: int = 16) -> np.ndarray:
    """16 px blocks of the garment permuted among the blocks fully inside the mask: same colours, no structure."""
    inside = [(y, x) for y in range(0, pixels.shape[0], block) for x in range(0, pixels.shape[1], block)
              if mask[y:y + block, x:x + block].min() > 0]
    order = np.random.default_rng(0).permutation(len(inside))
    out = pixels.copy()
    for (y, x), j in zip(inside, order, strict=True):
        yy, xx = inside[j]
        out[y:y + block, x:x + block] = pixels[yy:yy + block, xx:xx + block]
    return out


def test_the_same_garment_scores_one(garment):
    pixels, mask = garment
    same = garment_fidelity(pixels, mask, pixels, mask)
    assert same.score == pytest.approx(1.0, abs=1e-6)
    assert same.colour == pytest.approx(1.0, abs=1e-6) and same.structure == pytest.approx(1.0, abs=1e-6)


def test_a_recoloured_garment_loses_colour_not_structure(garment):
    pixels, mask = garment
    same = garment_fidelity(pixels, mask, pixels, mask)
    other = garment_fidelity(recoloured(pixels), mask, pixels, mask)
    assert other.colour < 0.3 and other.structure > 0.85
    assert other.score < same.score - 0.3


def test_a_scrambled_garment_loses_structure_not_colour(garment):
    pixels, mask = garment
    other = garment_fidelity(scrambled(pixels, mask), mask, pixels, mask)
    assert other.structure < 0.6 and other.colour > 0.85
    assert other.score == pytest.approx(COLOUR_WEIGHT * other.colour + (1 - COLOUR_WEIGHT) * other.structure)


def test_the_garment_smaller_elsewhere_in_a_larger_image_still_scores_high(garment):
    """What the try-on compares: the garment region of a person photo against a dataset crop of another size."""
    pixels, mask = garment
    canvas = np.full((200, 300, 3), 200, np.uint8)
    region = np.zeros((200, 300), np.uint8)
    canvas[40:168, 90:218] = cv2.resize(pixels, (128, 128), interpolation=cv2.INTER_AREA)
    region[40:168, 90:218] = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_NEAREST)
    moved = garment_fidelity(canvas, region, pixels, mask)
    assert moved.score > 0.85
    assert moved.score > garment_fidelity(recoloured(canvas), region, pixels, mask).score


def test_describe_states_the_formula_with_its_numbers(garment):
    pixels, mask = garment
    text = garment_fidelity(recoloured(pixels), mask, pixels, mask).describe()
    assert "colour" in text and "structure" in text and "Bhattacharyya" in text and "gradient-orientation" in text
    result = garment_fidelity(recoloured(pixels), mask, pixels, mask)
    assert f"{result.score:.3f}" in text and f"{result.colour:.3f}" in text and f"{result.structure:.3f}" in text


def test_an_empty_mask_is_an_error(garment):
    pixels, mask = garment
    with pytest.raises(EmptyGarmentRegion, match="rendered image's garment mask is empty"):
        garment_fidelity(pixels, np.zeros_like(mask), pixels, mask)
    with pytest.raises(EmptyGarmentRegion, match="garment reference's garment mask is empty"):
        garment_fidelity(pixels, mask, pixels, np.zeros_like(mask))
    with pytest.raises(EmptyGarmentRegion, match="mask is"):
        garment_fidelity(pixels, mask[:10], pixels, mask)
