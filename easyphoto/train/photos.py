"""Which uploaded photos to train on, and why the others were dropped.

The reference kept the 15 photos most similar to the mean embedding, with no threshold, took the left-most face,
and dropped failing photos silently. Here every photo gets a decision with a reason in words and its scores:

1. decode safely (imageops.load_photo): unreadable files are dropped with the decoder's reason;
2. detect faces; choose one per photo (the largest, or the best match to the other photos); a face whose box
   reaches past the frame edge is kept with a note, or dropped when most of the box (over half) is outside;
3. quality gates: face size, sharpness, head turn/tilt, exposure, each with its measured value and limit;
4. near-duplicates (same face embedding and same picture): the better of each pair is kept;
5. identity consistency: the medoid photo (most similar to all others) anchors the identity; photos whose
   similarity to it is below the embedder's calibrated "different person" threshold are dropped;
6. optional cap (best first), and the reference face = centrality × frontalness × sharpness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from easyphoto.config import TrainConfig
from easyphoto.face.quality import FaceQuality, measure
from easyphoto.face.stacks import FaceStack
from easyphoto.face.types import Face, cosine
from easyphoto.imageops import UnreadableImage, image_suffix, load_photo, to_array
from easyphoto.store import atomic_write_json

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
DUPLICATE_SIMILARITY = 0.995  # same person is ≤ 0.99 across different photos with every embedder we measured
DUPLICATE_HASH_BITS = 6  # of 64: differences a re-encode or a resize leave in the difference hash
MAX_CANDIDATE_FACES = 12  # faces compared under the "best_match" rule (a large group photo has more)
MAX_OUTSIDE_FRAME = 0.5  # share of the face box beyond the photo's edge above which most of the face is missing
EDGE_MARGIN_PX = 1.0  # a box this close to the border touches it (detectors round their boxes)


@dataclass
class PhotoDecision:
    file: str
    kept: bool = False
    reason: str = ""  # why dropped, or notes for kept photos
    faces: int = 0
    face: Face | None = None
    quality: FaceQuality | None = None
    similarity: float | None = None  # to the identity medoid
    notes: list[str] = field(default_factory=list)
    embedding: np.ndarray | None = field(default=None, repr=False)
    image_hash: int | None = field(default=None, repr=False)

    @property
    def badge(self) -> str:
        if self.kept:
            return "kept" + (f" · similarity {self.similarity:.2f}" if self.similarity is not None else "")
        return f"dropped · {self.reason}"

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "kept": self.kept,
            "reason": self.reason,
            "faces": self.faces,
            "face": self.face.to_dict() if self.face else None,
            "quality": self.quality.to_dict() if self.quality else None,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "notes": self.notes,
        }


@dataclass
class PhotoReport:
    decisions: list[PhotoDecision]
    reference: str | None  # file of the reference face
    stack: dict
    thresholds: dict

    @property
    def kept(self) -> list[PhotoDecision]:
        return [d for d in self.decisions if d.kept]

    def mean_embedding(self) -> np.ndarray | None:
        vectors = [d.embedding for d in self.kept if d.embedding is not None]
        if not vectors:
            return None
        mean = np.mean(vectors, axis=0)
        return mean / (np.linalg.norm(mean) + 1e-12)

    def to_dict(self) -> dict:
        return {
            "kept": len(self.kept),
            "total": len(self.decisions),
            "reference": self.reference,
            "face_stack": self.stack,
            "thresholds": self.thresholds,
            "photos": [d.to_dict() for d in self.decisions],
        }

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())


def list_photos(folder: Path) -> list[Path]:
    """Files of a folder in name order (the order decides ties, so reports are reproducible)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def looks_like_image(path: Path) -> bool:
    """An image extension, or the first bytes of a known image format (photos without an extension count)."""
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return False
    return image_suffix(head) is not None


def select_photos(
    files: Sequence[Path],
    stack: FaceStack,
    config: TrainConfig = TrainConfig(),
    *,
    max_megapixels: float = 64.0,
    progress: Callable[[int, int, str], None] | None = None,
) -> PhotoReport:
    decisions = []
    candidates: dict[int, list[tuple[Face, np.ndarray]]] = {}
    images: dict[int, np.ndarray] = {}
    for index, path in enumerate(files):
        if progress:
            progress(index, len(files), Path(path).name)
        decision, image, found = _analyse(Path(path), stack, max_megapixels, config.face_choice)
        decisions.append(decision)
        if found:
            candidates[index], images[index] = found, image
    anchor = _consensus({i: found for i, found in candidates.items() if decisions[i].faces == 1})
    for index, found in candidates.items():
        decision = decisions[index]
        decision.face, decision.embedding = _choose_face(found, anchor, config.face_choice)
        if decision.faces > 1:
            rule = "largest" if config.face_choice == "largest" else "best match to the other photos"
            decision.notes.append(f"{decision.faces} faces: used the {rule}")
        decision.quality = measure(images[index], decision.face)
        decision.image_hash = _difference_hash(images[index])
        gate = _frame_edge(decision, images[index].shape) or _quality_gate(decision.quality, config)
        decision.kept, decision.reason = gate is None, gate or ""
    if config.remove_duplicates:
        _drop_duplicates([d for d in decisions if d.kept])
    if config.identity_check:
        _check_identity([d for d in decisions if d.kept], stack.embedder)
    else:
        _score_centrality([d for d in decisions if d.kept])
    _apply_cap([d for d in decisions if d.kept], config.max_photos)
    reference = _reference(decisions)
    thresholds = {"same": stack.embedder.same_threshold, "different": stack.embedder.different_threshold}
    return PhotoReport(decisions, reference, stack.describe(), thresholds)


def _analyse(path: Path, stack: FaceStack, max_megapixels: float, rule: str):
    decision = PhotoDecision(file=path.name)
    try:
        loaded = load_photo(path, max_megapixels=max_megapixels)
    except UnreadableImage as exc:
        decision.reason = exc.message
        return decision, None, None
    decision.notes.extend(loaded.notes)
    image = to_array(loaded.image)
    faces = stack.detector.detect(image)
    decision.faces = len(faces)
    if not faces:
        decision.reason = "no face found"
        return decision, None, None
    candidates = faces[:MAX_CANDIDATE_FACES] if rule == "best_match" else faces[:1]  # embedding costs ~0.1 s/face
    found = [(f, stack.embedder.embed(image, f)) for f in candidates]
    return decision, image, found


def _consensus(single_face: dict[int, list[tuple[Face, np.ndarray]]]) -> np.ndarray | None:
    """Mean embedding of the photos that show a single face: the identity the uploads agree on."""
    single = [found[0][1] for found in single_face.values()]
    if not single:
        return None
    mean = np.mean(single, axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


def _choose_face(found, anchor, rule: str) -> tuple[Face, np.ndarray]:
    if rule == "best_match" and anchor is not None and len(found) > 1:
        return max(found, key=lambda item: cosine(item[1], anchor))
    return found[0]  # detectors return the largest face first


def _frame_edge(decision: PhotoDecision, shape: tuple[int, ...]) -> str | None:
    """A face cut by the frame edge: the drop reason when most of its box lies outside the photo, else None (and a
    note when the box touches or crosses the edge: the crop will miss some forehead, chin or cheek)."""
    height, width = shape[:2]
    x0, y0, x1, y1 = decision.face.box
    inside = max(min(x1, width) - max(x0, 0), 0) * max(min(y1, height) - max(y0, 0), 0)
    outside = 1.0 - inside / max(decision.face.area, 1e-6)
    if outside > MAX_OUTSIDE_FRAME:
        return (f"face cut by the frame edge ({outside:.0%} of the face outside the photo; "
                f"at most {MAX_OUTSIDE_FRAME:.0%})")
    margin = EDGE_MARGIN_PX
    if x0 <= margin or y0 <= margin or x1 >= width - margin or y1 >= height - margin:
        where = f"{outside:.0%} of the face outside the photo" if outside > 0 else "touching the edge"
        decision.notes.append(f"face cut by the frame edge ({where}): kept, but part of the head is missing")
    return None


def _quality_gate(q: FaceQuality, c: TrainConfig) -> str | None:
    """The first failed gate, in words with the measured value and the limit; None if the photo passes."""
    checks = [
        (q.face_px < c.min_face_px, f"face too small ({q.face_px:.0f} px; at least {c.min_face_px} px)"),
        (q.sharpness < c.min_sharpness, f"face too blurred (sharpness {q.sharpness:.0f}; at least {c.min_sharpness:g})"),
        (abs(q.yaw) > c.max_yaw, f"head turned too far ({abs(q.yaw):.0f}°; at most {c.max_yaw:g}°)"),
        (abs(q.roll) > c.max_roll, f"head tilted too far ({abs(q.roll):.0f}°; at most {c.max_roll:g}°)"),
        (q.brightness < c.min_brightness, f"face too dark (brightness {q.brightness:.0f}; at least {c.min_brightness:g})"),
        (q.brightness > c.max_brightness, f"face overexposed (brightness {q.brightness:.0f}; at most {c.max_brightness:g})"),
    ]
    return next((message for failed, message in checks if failed), None)


def _difference_hash(image: np.ndarray) -> int:
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def _drop_duplicates(kept: list[PhotoDecision]) -> None:
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            if not (a.kept and b.kept):
                continue
            same_face = cosine(a.embedding, b.embedding) >= DUPLICATE_SIMILARITY
            same_picture = bin(a.image_hash ^ b.image_hash).count("1") <= DUPLICATE_HASH_BITS
            if same_face and same_picture:
                worse, better = sorted((a, b), key=lambda d: (d.quality.face_px * d.quality.sharpness, d.file))
                if worse is a and a.file > b.file:  # equal quality: keep the first file name
                    worse, better = b, a
                worse.kept, worse.reason = False, f"near-duplicate of {better.file}"


def _score_centrality(kept: list[PhotoDecision]) -> int | None:
    """Similarity of each kept photo to the medoid; returns the medoid's index in `kept`."""
    if not kept:
        return None
    vectors = np.stack([d.embedding for d in kept])
    similarity = vectors @ vectors.T
    medoid = int(np.argmax(similarity.sum(axis=1)))
    for d, s in zip(kept, similarity[medoid], strict=False):
        d.similarity = float(s)
    return medoid


def _check_identity(kept: list[PhotoDecision], embedder) -> None:
    medoid = _score_centrality(kept)
    if medoid is None or len(kept) < 2:
        return
    for d in kept:
        if d.similarity < embedder.different_threshold:
            d.kept = False
            d.reason = (
                f"a different person (similarity {d.similarity:.2f} to the other photos; "
                f"below {embedder.different_threshold:.2f})"
            )
        elif d.similarity < embedder.same_threshold:
            d.notes.append(f"identity uncertain (similarity {d.similarity:.2f}; same person ≥ {embedder.same_threshold:.2f})")


def _apply_cap(kept: list[PhotoDecision], cap: int | None) -> None:
    if cap is None or len(kept) <= cap:
        return
    ranked = sorted(kept, key=_reference_score, reverse=True)
    for d in ranked[cap:]:
        d.kept, d.reason = False, f"over the limit of {cap} photos (lower identity × quality score)"


def _reference_score(d: PhotoDecision) -> float:
    centrality = d.similarity if d.similarity is not None else 1.0
    sharpness = min(d.quality.sharpness / 300.0, 1.0)  # saturates: past this, sharper is not more useful
    return centrality * d.quality.frontalness * sharpness


def _reference(decisions: list[PhotoDecision]) -> str | None:
    kept = [d for d in decisions if d.kept]
    if not kept:
        return None
    return max(kept, key=lambda d: (_reference_score(d), d.file)).file
