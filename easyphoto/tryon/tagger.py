"""Tags for garment captions from a WD14-class ONNX tagger (SmilingWolf/wd-v1-4-*: model.onnx + selected_tags.csv).

    tagger = load_tagger(ctx.paths)          # None when its files are absent: captions use the category words
    tagger.tags(image, threshold=0.35)       # ["shirt", "long sleeves", "collared shirt", ...], most likely first
    tagger.unload()

What the published taggers expect (their model card and reference tagger): the image composited onto white, padded
to a square with white, resized to the model's input side (448; read from the graph), float32 values 0..255 in BGR
order, NHWC with a batch axis. The graph ends in a sigmoid, so its output is one probability per row of
selected_tags.csv (columns tag_id, name, category, count; category 0 = general, 4 = character, 9 = rating). Only
general tags are used: ratings and character names say nothing about a garment. Underscores become spaces.

The files live at <models root>/easyphoto/tagger/wd-v1-4-moat-tagger-v2/ (the manifest entries, when present, say
where: TAGGER_ENTRIES); Apache-2.0.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto.errors import EasyPhotoError
from easyphoto.store import Paths

TAGGER_SUBDIR = "tagger/wd-v1-4-moat-tagger-v2"
MODEL_FILE, TAGS_FILE = "model.onnx", "selected_tags.csv"
TAGGER_ENTRIES = ("wd14-tagger-model", "wd14-tagger-tags")  # manifest ids of the two files, in that order
GENERAL_CATEGORY = 0
DEFAULT_SIDE = 448  # the v1-4 taggers' input side, used when the graph leaves it dynamic
DEFAULT_THRESHOLD = 0.35  # the threshold the published taggers suggest for general tags


class TaggerError(EasyPhotoError):
    phase = "tagger"
    http_status = 409


def tagger_files(paths: Paths) -> tuple[Path, Path]:
    """(model.onnx, selected_tags.csv): where the manifest puts them, or the default folder when it has no entry."""
    from easyphoto import weights

    try:
        found = [weights.get(entry_id).path(paths) for entry_id in TAGGER_ENTRIES]
    except KeyError:
        found = [None, None]
    folder = paths.models_root / TAGGER_SUBDIR
    return found[0] or folder / MODEL_FILE, found[1] or folder / TAGS_FILE


def read_tags(path: Path | str) -> list[tuple[str, int]]:
    """(name, category) per row of a selected_tags.csv, in row order (= the model's output order)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"name", "category"} <= set(reader.fieldnames or ()):
            raise TaggerError(f"{Path(path).name} has no 'name' and 'category' columns.",
                              hint="Download selected_tags.csv of the same tagger again.")
        try:
            return [(row["name"], int(row["category"])) for row in reader]
        except (TypeError, ValueError) as exc:
            raise TaggerError(f"{Path(path).name} has a row that is not a tag ({exc}).",
                              hint="Download selected_tags.csv of the same tagger again.") from None


def to_model_input(image: Image.Image, side: int = DEFAULT_SIDE) -> np.ndarray:
    """(1, side, side, 3) float32 BGR 0..255: on white, padded square with white (centred), resized (bicubic)."""
    rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    square = max(flat.size)
    canvas = Image.new("RGB", (square, square), (255, 255, 255))
    canvas.paste(flat, ((square - flat.width) // 2, (square - flat.height) // 2))
    if square != side:
        canvas = canvas.resize((side, side), Image.BICUBIC)
    pixels = np.asarray(canvas, dtype=np.float32)[:, :, ::-1]
    return np.ascontiguousarray(pixels[None])


class WD14Tagger:
    """One tagger model; the ONNX session starts on first use and `unload()` frees it."""

    name = "wd14"

    def __init__(self, model_file: Path | str, tags_file: Path | str):
        self.model_file, self.tags_file = Path(model_file), Path(tags_file)
        self._session = None
        self._tags: list[tuple[str, int]] = []
        self._side = DEFAULT_SIDE
        self._lock = threading.Lock()

    def _ensure(self):
        with self._lock:
            if self._session is None:
                self._session, self._tags, self._side = self._start()
            return self._session

    def _start(self):
        import onnxruntime as ort

        tags = read_tags(self.tags_file)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            session = ort.InferenceSession(str(self.model_file), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for a damaged or foreign file
            raise TaggerError(f"{self.model_file.name} could not be loaded as an ONNX model ({exc}).",
                              hint="Download the tagger's model.onnx again.") from None
        shape = session.get_inputs()[0].shape
        width = session.get_outputs()[0].shape[-1]
        if len(shape) != 4 or shape[-1] != 3:
            raise TaggerError(f"{self.model_file.name} takes input {shape}, not an NHWC image (…, 3).",
                              hint="Use a WD14 tagger ONNX file (SmilingWolf/wd-v1-4-*).")
        if isinstance(width, int) and width != len(tags):
            raise TaggerError(f"{self.model_file.name} predicts {width} tags but {self.tags_file.name} lists "
                              f"{len(tags)}.", hint="Use the selected_tags.csv published with the same model.")
        return session, tags, shape[1] if isinstance(shape[1], int) else DEFAULT_SIDE

    def probabilities(self, image: Image.Image) -> dict[str, float]:
        """Probability of every general tag (tag names as in the CSV)."""
        session = self._ensure()
        feed = {session.get_inputs()[0].name: to_model_input(image, self._side)}
        scores = np.asarray(session.run(None, feed)[0], dtype=np.float64).reshape(-1)
        return {name: float(score) for (name, category), score in zip(self._tags, scores, strict=False)
                if category == GENERAL_CATEGORY}

    def tags(self, image: Image.Image, threshold: float = DEFAULT_THRESHOLD, limit: int | None = None) -> list[str]:
        """General tags at or above `threshold`, most likely first, underscores turned to spaces."""
        ranked = sorted(((p, n) for n, p in self.probabilities(image).items() if p >= threshold), key=lambda t: -t[0])
        names = [name.replace("_", " ") for _, name in ranked]
        return names if limit is None else names[:limit]

    __call__ = tags

    def unload(self) -> None:
        with self._lock:
            self._session = None


_cache: dict[tuple[Path, Path], WD14Tagger] = {}
_cache_lock = threading.Lock()


def load_tagger(paths: Paths) -> WD14Tagger | None:
    """The tagger whose files are in the models folder (one per process, session started on first use); None when
    either file is absent, so the caller falls back to category words."""
    model, tags = tagger_files(paths)
    if not (model.is_file() and tags.is_file()):
        return None
    with _cache_lock:
        return _cache.setdefault((model.resolve(), tags.resolve()), WD14Tagger(model, tags))
