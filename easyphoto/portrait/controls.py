"""Condition images for the ControlNets, computed in-process (see easyphoto/generation.py for why).

canny: OpenCV Canny with ControlNet's default thresholds (100/200), the edges the canny model was trained on.
color: the reference's "random colour" control input: the image itself once its mosaic blur was set to 1 (reference
§3.6 step 8); `cells` > 0 restores the older coarse mosaic.
tile: the image itself (ControlNet's tile_resample at down-sampling rate 1 is the identity).
openpose: an OpenPose-style rendering of the template face's landmarks (easyphoto/pose).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from easyphoto.face.types import Face


def canny(pixels: np.ndarray, low: int = 100, high: int = 200) -> Image.Image:
    import cv2

    edges = cv2.Canny(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1), "RGB")


def color(pixels: np.ndarray, cells: int = 0) -> Image.Image:
    image = Image.fromarray(pixels, "RGB")
    if cells <= 0:
        return image
    small = image.resize((max(image.width // cells, 1), max(image.height // cells, 1)), Image.BICUBIC)
    return small.resize(image.size, Image.NEAREST)


def tile(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels, "RGB")


def openpose(pixels: np.ndarray, face: Face) -> Image.Image:
    from easyphoto.pose.openpose import render_from_face

    height, width = pixels.shape[:2]
    return render_from_face((width, height), face.landmarks, face.box, image=pixels)
