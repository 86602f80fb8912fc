"""insightface model files through onnxruntime: SCRFD detectors (det_10g from buffalo_l) and ArcFace-format
embedders (w600k_r50, or any ArcFace-compatible ONNX such as a commercially licensed one).

Written from the models' published input/output contracts, not from insightface's code:
- SCRFD: one input (N×3×H×W, RGB, (x − 127.5)/128); 9 outputs = scores, box distances and keypoint offsets for
  strides 8, 16, 32 (in that order, grouped by kind), 2 anchors per location, distances in units of the stride.
- ArcFace: one input (N×3×112×112, RGB, (x − 127.5)/127.5) of a face aligned to the 5-point template; one output,
  the embedding (512-D for w600k_r50).
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

import numpy as np

from easyphoto.face.align import align_face
from easyphoto.face.types import Face, largest_first

LICENCE = "insightface model zoo: non-commercial research only (or the licence of the ONNX file you supply)"
STRIDES = (8, 16, 32)
ANCHORS_PER_LOCATION = 2


def _session(model_file: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(model_file), sess_options=options, providers=providers)


class ScrfdDetector:
    name = "insightface-scrfd"
    licence = LICENCE

    def __init__(self, model_file: Path | str, input_size: int = 640, score_threshold: float = 0.5, nms: float = 0.4):
        self.model_file = Path(model_file)
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms
        self._lock = threading.Lock()

    @cached_property
    def _session(self):
        session = _session(self.model_file)
        outputs = session.get_outputs()
        if len(outputs) != 9:
            raise ValueError(
                f"{self.model_file.name}: {len(outputs)} outputs; an SCRFD detector with keypoints has 9 "
                "(scores, boxes and 5-point keypoints for strides 8, 16 and 32)."
            )
        return session

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Letterbox into input_size² (top-left aligned, zero padded) and normalise; returns blob and scale."""
        import cv2

        height, width = image.shape[:2]
        scale = self.input_size / max(height, width)
        resized = cv2.resize(image, (int(round(width * scale)), int(round(height * scale))))
        canvas = np.zeros((self.input_size, self.input_size, 3), np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(blob, dtype=np.float32), scale

    def detect(self, image: np.ndarray) -> list[Face]:
        blob, scale = self.preprocess(image)
        session = self._session
        with self._lock:
            outputs = session.run(None, {session.get_inputs()[0].name: blob})
        boxes, points, scores = decode_scrfd(outputs, self.input_size, self.score_threshold)
        keep = nms(boxes, scores, self.nms_threshold)
        return largest_first(
            [Face(tuple((boxes[i] / scale).tolist()), points[i] / scale, float(scores[i])) for i in keep]
        )


def anchor_centres(size: int, stride: int) -> np.ndarray:
    """(cells × anchors, 2) x, y centres of one stride's feature map, anchors repeated per location."""
    cells = size // stride
    ys, xs = np.mgrid[:cells, :cells]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_LOCATION, axis=0)


def decode_scrfd(outputs: list[np.ndarray], size: int, threshold: float):
    """Boxes (N,4), keypoints (N,5,2) and scores (N,) above `threshold`, in input-image pixels."""
    all_boxes, all_points, all_scores = [], [], []
    for level, stride in enumerate(STRIDES):
        scores = outputs[level].reshape(-1)
        distances = outputs[level + 3].reshape(-1, 4) * stride
        offsets = outputs[level + 6].reshape(-1, 5, 2) * stride
        centres = anchor_centres(size, stride)
        if len(centres) != len(scores):
            raise ValueError(f"stride {stride}: {len(scores)} scores for {len(centres)} anchors at input {size}")
        hit = scores >= threshold
        c = centres[hit]
        all_boxes.append(np.concatenate([c - distances[hit][:, :2], c + distances[hit][:, 2:]], axis=1))
        all_points.append(c[:, None, :] + offsets[hit])
        all_scores.append(scores[hit])
    return np.concatenate(all_boxes), np.concatenate(all_points).astype(np.float32), np.concatenate(all_scores)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, max_candidates: int = 2000) -> list[int]:
    """Greedy non-maximum suppression over the `max_candidates` best boxes (a real photo has a few hundred
    above threshold; an unconstrained model can emit thousands)."""
    order = np.argsort(-scores)[:max_candidates]
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    areas = (x1 - x0) * (y1 - y0)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter = np.clip(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0, None) * np.clip(
            np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0, None
        )
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= threshold]
    return keep


class ArcFaceEmbedder:
    """Any ArcFace-format ONNX embedder. Thresholds are insightface's usual operating range for w600k_r50
    (cosine ≥ 0.35 same person, < 0.25 different); they could not be re-measured here without the real weights."""

    name = "insightface-arcface"
    licence = LICENCE
    same_threshold = 0.35
    different_threshold = 0.25

    def __init__(self, model_file: Path | str):
        self.model_file = Path(model_file)
        self._lock = threading.Lock()

    @cached_property
    def _session(self):
        session = _session(self.model_file)
        shape = session.get_inputs()[0].shape
        if list(shape[1:]) != [3, 112, 112]:
            raise ValueError(f"{self.model_file.name}: input shape {shape}; an ArcFace embedder takes N×3×112×112.")
        return session

    @property
    def dim(self) -> int:
        return int(self._session.get_outputs()[0].shape[-1])

    @staticmethod
    def preprocess(aligned: np.ndarray) -> np.ndarray:
        blob = (aligned.astype(np.float32) - 127.5) / 127.5
        return np.ascontiguousarray(blob.transpose(2, 0, 1)[None])

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        blob = self.preprocess(align_face(image, face.landmarks, 112))
        session = self._session
        with self._lock:
            vector = session.run(None, {session.get_inputs()[0].name: blob})[0].reshape(-1)
        return (vector / (np.linalg.norm(vector) + 1e-12)).astype(np.float32)
