"""Face data and the protocols every implementation follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# Landmark order used everywhere (insightface's): eye on the image's left, eye on the image's right, nose tip,
# mouth corner on the image's left, mouth corner on the image's right.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    landmarks: np.ndarray  # (5, 2) float32, LANDMARK_NAMES order
    score: float  # detector confidence, 0..1 where the detector gives one

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def expanded_box(self, ratio: float, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The reference's crop: each side grows by (ratio − 1)/2 × the box size, clipped to the image."""
        width, height = image_size
        dx, dy = (ratio - 1) / 2 * self.width, (ratio - 1) / 2 * self.height
        x0, y0, x1, y1 = self.box
        return (max(int(x0 - dx), 0), max(int(y0 - dy), 0), min(int(x1 + dx), width), min(int(y1 + dy), height))

    def in_crop(self, crop: tuple[int, int, int, int], scale_xy: tuple[float, float]) -> Face:
        """This face in the coordinates of `crop` (x0, y0, x1, y1) cut out and then resized by (sx, sy)."""
        offset = np.array(crop[:2], np.float32)
        box = (np.array(self.box).reshape(2, 2) - offset) * np.array(scale_xy)
        return Face(tuple(float(v) for v in box.reshape(-1)),
                    (self.landmarks - offset) * np.asarray(scale_xy, np.float32), self.score)

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 1) for v in self.box],
                "landmarks": np.round(self.landmarks, 1).tolist(), "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class FaceMasks:
    face: np.ndarray  # HxW uint8 0/255: the whole face (brows to chin)
    skin: np.ndarray  # face minus eyes, brows and lips
    hair: np.ndarray | None = None


@runtime_checkable
class Detector(Protocol):
    name: str
    licence: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an HxWx3 uint8 RGB image, largest first."""


@runtime_checkable
class Embedder(Protocol):
    name: str
    licence: str
    dim: int
    # Calibrated on cosine similarity of the normalised vectors: >= same_threshold → the same person;
    # < different_threshold → different people; in between → uncertain.
    same_threshold: float
    different_threshold: float

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Unit-length identity vector (float32, shape (dim,)) of `face` in `image`."""


@runtime_checkable
class Parser(Protocol):
    name: str
    licence: str

    def parse(self, image: np.ndarray, face: Face) -> FaceMasks: ...


@runtime_checkable
class Matter(Protocol):
    name: str
    licence: str

    def matte(self, image: np.ndarray) -> np.ndarray:
        """HxW float32 in 0..1: how much each pixel belongs to the person."""


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area, reverse=True)
