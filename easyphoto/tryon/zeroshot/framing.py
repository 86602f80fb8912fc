"""Framing a person photo for a backend trained at one size (768×1024 or 384×512, 3:4), and pasting the result back.

    frame = fit_frame(pixels.shape[:2], mask, (768, 1024))
    person = frame.cut(pixels)                      # (1024, 768, 3): the crop around the mask, at the backend's size
    person_mask = frame.cut_mask(mask)              # (1024, 768): 0/255
    out = paste_into(pixels, frame, generated, mask, feather)   # the photo with only the mask's pixels replaced

The crop is the mask's box with `margin` of context each side, widened to the backend's aspect (never narrowed, so
the whole garment region stays in the frame), centred on the box. Where the widened box leaves the photo, the
photo's edge pixels are repeated (a backend sees a plausible continuation, never black bars it would paint into)
and those pixels are dropped again when pasting. The generated image is resized back to the box and blended in
through the mask only (feathered inward): every pixel outside the mask is the photo's own, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from easyphoto.tryon.masks import EmptyTryOnMask
from easyphoto.tryon.pipeline import paste_back


@dataclass(frozen=True)
class Frame:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in photo pixels; may extend past the photo
    size: tuple[int, int]  # (width, height) the backend runs at

    def cut(self, pixels: np.ndarray) -> np.ndarray:
        """The box of an RGB photo, edge-padded where it leaves the photo, resized to the backend's size."""
        return np.asarray(Image.fromarray(self._padded(pixels)).resize(self.size, Image.LANCZOS))

    def cut_mask(self, mask: np.ndarray) -> np.ndarray:
        padded = self._padded(mask, mode="constant")
        return np.where(np.asarray(Image.fromarray(padded).resize(self.size, Image.NEAREST)) > 127, 255, 0).astype(
            np.uint8)

    def _padded(self, array: np.ndarray, mode: str = "edge") -> np.ndarray:
        x0, y0, x1, y1 = self.box
        height, width = array.shape[:2]
        pads = (max(-y0, 0), max(y1 - height, 0)), (max(-x0, 0), max(x1 - width, 0))
        inner = array[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
        if not any(any(p) for p in pads):
            return np.ascontiguousarray(inner)
        pads = pads + ((0, 0),) * (array.ndim - 2)
        return np.pad(inner, pads, mode=mode)


def fit_frame(shape: tuple[int, int], mask: np.ndarray, size: tuple[int, int], margin: float = 0.1) -> Frame:
    """The frame around `mask` at the backend's aspect; see the module docstring."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise EmptyTryOnMask("The try-on mask is empty.")
    height, width = shape
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()) + 1, float(ys.min()), float(ys.max()) + 1
    box_w, box_h = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    aspect = size[0] / size[1]
    # A frame no smaller than a quarter of the photo's short side, so a tiny mask still gets context around it.
    box_w = max(box_w, box_h * aspect, min(width, height) / 4 * aspect)
    box_h = box_w / aspect
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    # Inside the photo where it fits: shift the frame rather than pad when the photo has room.
    left = _shifted_inside(centre_x - box_w / 2, box_w, width)
    top = _shifted_inside(centre_y - box_h / 2, box_h, height)
    box = (int(round(left)), int(round(top)), int(round(left + box_w)), int(round(top + box_h)))
    return Frame(box, size)


def _shifted_inside(start: float, length: float, limit: int) -> float:
    if length >= limit:
        return (limit - length) / 2  # centred; the excess is padded on both sides
    return min(max(start, 0.0), limit - length)


def paste_into(pixels: np.ndarray, frame: Frame, generated: np.ndarray, mask: np.ndarray, feather: float) -> np.ndarray:
    """The photo with the mask's pixels taken from `generated` (the backend's output for `frame`)."""
    x0, y0, x1, y1 = frame.box
    height, width = pixels.shape[:2]
    box_w, box_h = x1 - x0, y1 - y0
    full = np.asarray(Image.fromarray(generated).resize((box_w, box_h), Image.LANCZOS))
    inner = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
    visible = full[inner[1] - y0:inner[3] - y0, inner[0] - x0:inner[2] - x0]
    return paste_back(pixels, inner, np.ascontiguousarray(visible), mask, feather)


__all__ = ["Frame", "fit_frame", "paste_into"]
