"""Face fusion: put the identity's reference face into the template face before and after pass 1.

The classical fusion (always available): the reference face is warped onto the template face with the 5-point
similarity transform, its colours are moved to the template face's LAB statistics (so lighting and skin tone match),
and it is blended in over the intersection of both faces' masks, feathered, at `ratio`. The diffusion passes then
repair the seams; the fusion supplies the identity's geometry (eye distance, nose, mouth) that the LoRA alone tends
to drift from. The reference uses a ModelScope fusion network here; no such weights can be had offline, so a model
plugs in through `FaceFuser` and the classical one is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from easyphoto.face.align import similarity_transform
from easyphoto.face.types import Face, FaceMasks, Parser
from easyphoto.imageops import blend, color_transfer, erode, soft_mask


@dataclass
class FaceImage:
    """An image with one face in it and that face's masks, in the same coordinates."""

    pixels: np.ndarray  # HxWx3 uint8 RGB
    face: Face
    masks: FaceMasks


class FaceFuser(Protocol):
    name: str

    def fuse(self, target: FaceImage, source: FaceImage, ratio: float) -> np.ndarray: ...


def face_masks(parser: Parser | None, pixels: np.ndarray, face: Face) -> FaceMasks:
    """Face and skin masks from the parser, or an ellipse over the face box when no parser is installed."""
    if parser is not None:
        return parser.parse(pixels, face)
    import cv2

    mask = np.zeros(pixels.shape[:2], np.uint8)
    x0, y0, x1, y1 = face.box
    centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
    axes = (max(int(face.width / 2), 1), max(int(face.height * 0.55), 1))  # a little taller: forehead and chin
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1)
    return FaceMasks(face=mask, skin=mask.copy())


def warp_onto(source: FaceImage, target: FaceImage) -> tuple[np.ndarray, np.ndarray]:
    """The source image and its face mask warped so its 5 points land on the target's."""
    import cv2

    height, width = target.pixels.shape[:2]
    matrix = similarity_transform(source.face.landmarks, target.face.landmarks)
    warped = cv2.warpAffine(source.pixels, matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(source.masks.face, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
    return warped, mask


class ClassicalFuser:
    name = "classical"

    def fuse(self, target: FaceImage, source: FaceImage, ratio: float) -> np.ndarray:
        if ratio <= 0:
            return target.pixels.copy()
        warped, source_mask = warp_onto(source, target)
        region = np.minimum(target.masks.face, source_mask)
        margin = max(int(target.face.width * 0.04), 1)
        region = erode(region, margin)  # keep the seam inside both faces
        if region.max() == 0:
            return target.pixels.copy()
        warped = color_transfer(warped, target.pixels, region)
        weight = soft_mask(region, max(target.face.width * 0.04, 1.0)) * float(ratio)
        return blend(target.pixels, warped, weight)
