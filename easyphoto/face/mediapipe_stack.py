"""mediapipe legacy solutions (0.10.9–0.10.21; Apache-2.0, models inside the wheel): face detection, face mesh → face
and skin masks, selfie segmentation → person matte. Newer mediapipe releases ship no models for these solutions, which
is why the version is capped (0.10.21 is what we install, with numpy < 2 and protobuf 4.25.3–5; an older one the
WebUI already has, e.g. 0.10.11 on protobuf 3.20, is used as it is).
"""

from __future__ import annotations

import threading
from functools import cached_property

import numpy as np

from easyphoto.face.types import Face, FaceMasks, largest_first


def _licence() -> str:
    """Names the mediapipe release really installed (0.10.9–0.10.21 all ship the legacy solutions' models)."""
    import importlib.metadata

    try:
        release = f"mediapipe {importlib.metadata.version('mediapipe')}"
    except importlib.metadata.PackageNotFoundError:
        release = "mediapipe"
    return f"Apache-2.0 ({release} legacy solutions, models inside the wheel)"


LICENCE = _licence()


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


def _solutions():
    import os

    # mediapipe's C++ core logs every graph start to stderr; users need none of it.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mediapipe.python.solutions import face_detection, face_mesh, selfie_segmentation

    return face_detection, face_mesh, selfie_segmentation


class MediapipeDetector:
    """BlazeFace full-range detector; its 6 keypoints give eyes and nose, mouth corners are estimated from the
    mouth centre and the eye distance (ArcFace's template proportions)."""

    name = "mediapipe-blazeface"
    licence = LICENCE

    def __init__(self, min_confidence: float = 0.5):
        self.min_confidence = min_confidence
        self._lock = threading.Lock()

    @cached_property
    def _model(self):
        face_detection, _, _ = _solutions()
        return face_detection.FaceDetection(model_selection=1, min_detection_confidence=self.min_confidence)

    def detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        with self._lock:
            result = self._model.process(np.ascontiguousarray(image))
        faces = []
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            box = (rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height)
            kp = np.array([[k.x * width, k.y * height] for k in det.location_data.relative_keypoints], np.float32)
            faces.append(Face(box, _five_from_blazeface(kp), float(det.score[0])))
        return largest_first(faces)


def _five_from_blazeface(kp: np.ndarray) -> np.ndarray:
    left_eye, right_eye = sorted((kp[0], kp[1]), key=lambda p: p[0])
    across = (right_eye - left_eye) / 2
    mouth = kp[3]
    return np.array([left_eye, right_eye, kp[2], mouth - 0.83 * across, mouth + 0.83 * across], np.float32)


class MediapipeParser:
    """Face and skin masks from the 468-point face mesh, run on a crop around the requested face so that in a group
    photo the mesh belongs to that face."""

    name = "mediapipe-facemesh"
    licence = LICENCE

    def __init__(self):
        self._lock = threading.Lock()

    @cached_property
    def _model(self):
        _, face_mesh, _ = _solutions()
        return face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)

    @cached_property
    def _regions(self) -> dict[str, list[int]]:
        _, fm, _ = _solutions()

        def points(*edge_sets):
            return sorted({i for edges in edge_sets for edge in edges for i in edge})

        return {
            "oval": points(fm.FACEMESH_FACE_OVAL),
            "left_eye": points(fm.FACEMESH_LEFT_EYE),
            "right_eye": points(fm.FACEMESH_RIGHT_EYE),
            "left_brow": points(fm.FACEMESH_LEFT_EYEBROW),
            "right_brow": points(fm.FACEMESH_RIGHT_EYEBROW),
            "lips": points(fm.FACEMESH_LIPS),
        }

    def landmarks(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """(468, 2) mesh points in image coordinates, or None when the mesh finds no face in the crop."""
        x0, y0, x1, y1 = face.expanded_box(2.0, (image.shape[1], image.shape[0]))
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        if crop.size == 0:
            return None
        with self._lock:
            result = self._model.process(crop)
        if not result.multi_face_landmarks:
            return None
        mesh = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * crop.shape[1] + x0, p.y * crop.shape[0] + y0] for p in mesh], np.float32)

    def parse(self, image: np.ndarray, face: Face) -> FaceMasks:
        import cv2

        height, width = image.shape[:2]
        points = self.landmarks(image, face)
        face_mask = np.zeros((height, width), np.uint8)
        if points is None:  # no mesh: fall back to the detector's box as an ellipse, never to nothing
            x0, y0, x1, y1 = face.box
            centre = (int((x0 + x1) / 2), int((y0 + y1) / 2))
            cv2.ellipse(face_mask, centre, (int(face.width / 2), int(face.height / 2)), 0, 0, 360, 255, -1)
            return FaceMasks(face=face_mask, skin=face_mask.copy())
        hull = lambda name: cv2.convexHull(points[self._regions[name]].astype(np.int32))  # noqa: E731
        cv2.fillConvexPoly(face_mask, hull("oval"), 255)
        skin = face_mask.copy()
        for part in ("left_eye", "right_eye", "left_brow", "right_brow", "lips"):
            cv2.fillConvexPoly(skin, hull(part), 0)
        return FaceMasks(face=face_mask, skin=skin)


class MediapipeMatter:
    """Person matte from selfie segmentation (the 'general' 256×256 model)."""

    name = "mediapipe-selfie"
    licence = LICENCE

    def __init__(self):
        self._lock = threading.Lock()

    @cached_property
    def _model(self):
        _, _, selfie_segmentation = _solutions()
        return selfie_segmentation.SelfieSegmentation(model_selection=0)

    def matte(self, image: np.ndarray) -> np.ndarray:
        with self._lock:
            mask = self._model.process(np.ascontiguousarray(image)).segmentation_mask
        return np.clip(mask, 0.0, 1.0).astype(np.float32)
