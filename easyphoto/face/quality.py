"""Photo quality measures of one face: size, sharpness, pose from landmarks, exposure."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from easyphoto.face.types import Face


@dataclass(frozen=True)
class FaceQuality:
    face_px: float  # shorter side of the face box, pixels
    face_fraction: float  # face box area / image area
    sharpness: float  # variance of the Laplacian of the face crop at 128 px (higher = sharper)
    roll: float  # degrees, from the eye line
    yaw: float  # degrees, estimated from the nose offset between the eyes (0 = frontal)
    brightness: float  # mean luminance of the face, 0..255
    clipped: float  # fraction of face pixels at 0-4 or 251-255

    @property
    def frontalness(self) -> float:
        """1 for a frontal, level face, falling to 0 at 90° roll or yaw."""
        return max(0.0, 1 - abs(self.roll) / 90) * max(0.0, 1 - abs(self.yaw) / 90)

    def to_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()} | {"frontalness": round(self.frontalness, 4)}


def measure(image: np.ndarray, face: Face) -> FaceQuality:
    import cv2

    height, width = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    crop = image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.size else np.zeros((1, 1), np.uint8)
    small = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA)
    roll, yaw = pose_from_landmarks(face.landmarks)
    return FaceQuality(
        face_px=float(min(face.width, face.height)),
        face_fraction=float(face.area / (width * height)),
        sharpness=float(cv2.Laplacian(small, cv2.CV_64F).var()),
        roll=roll,
        yaw=yaw,
        brightness=float(gray.mean()),
        clipped=float(((gray <= 4) | (gray >= 251)).mean()),
    )


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float]:
    """(roll, yaw) in degrees. Roll is the eye line's angle; yaw maps the nose's horizontal offset from the eye
    midpoint (in eye-distance units, measured along the eye line) through asin, which is exact for a
    symmetric face whose nose tip sits half an eye-distance in front of the eye plane."""
    left_eye, right_eye, nose = (np.asarray(landmarks[i], dtype=np.float64) for i in range(3))
    eye_vector = right_eye - left_eye
    eye_distance = float(np.linalg.norm(eye_vector)) or 1.0
    roll = math.degrees(math.atan2(eye_vector[1], eye_vector[0]))
    along = float(np.dot(nose - (left_eye + right_eye) / 2, eye_vector / eye_distance)) / eye_distance
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, along * 2))))
    return roll, yaw
