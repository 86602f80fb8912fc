"""Training images from the kept photos (reference §3.2–3.3), written as `dataset/` in the HF imagefolder layout:

    dataset/train/0.jpg, 0.txt, 1.jpg, 1.txt, ...      (resolution², RGB, caption next to each image)
    dataset/metadata.jsonl                               {"file_name": "train/0.jpg", "text": "<caption>"} per line
    dataset/dataset.json                                 what was done to each photo, and the parameters

dataset.json records the settings that shape the dataset (DATASET_FIELDS) and, when made for an identity, the
photos it was made from (name → sha256); `dataset_changes` compares them with a training's settings, so a
dataset made with another resolution, crop, matting, caption or photo set is rebuilt instead of silently reused.

Per photo: a square crop around the face (box × crop_ratio, moved inside the photo), the person matted onto white
within the region around the head (see `head_region` for how it differs from the reference's rectangle),
optional skin smoothing, and a resize to the training resolution. Crops smaller than the resolution are upscaled
with Real-ESRGAN when its weights are present (easyphoto.upscale, passed in as `upscaler`), else with Lanczos plus
a light unsharp mask (the classical fallback). Same inputs → same files, byte for byte.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto.config import TrainConfig
from easyphoto.face.stacks import FaceStack
from easyphoto.face.types import Face
from easyphoto.imageops import load_photo, smooth_skin, to_array
from easyphoto.store import atomic_write_bytes, atomic_write_text, swap_in_folder
from easyphoto.train.photos import PhotoReport
from easyphoto.upscale import classical

JPEG_QUALITY = 95
# TrainConfig fields that change which photos are used or what the training images and captions look like.
DATASET_FIELDS = (
    "face_choice", "min_face_px", "min_sharpness", "max_yaw", "max_roll", "min_brightness", "max_brightness",
    "remove_duplicates", "identity_check", "max_photos",  # photo selection
    "resolution", "crop_ratio", "matting", "retouch", "upscale_small", "caption", "holdout_photos",  # preparation
)
MIN_TRAINING_PHOTOS_FOR_HOLDOUT = 8
Upscaler = Callable[[Image.Image, int], Image.Image]  # (image, target side) -> image of that side
Tagger = Callable[[Image.Image], str]  # optional: a caption per image instead of the fixed one


@dataclass(frozen=True)
class DatasetItem:
    index: int
    source: str
    crop: tuple[int, int, int, int]
    upscaled: bool
    matted: bool
    caption: str


def square_crop(face: Face, ratio: float, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square of side max(face w, h) × ratio centred on the face, moved (not clipped) to stay inside the photo,
    and shrunk only when the photo itself is smaller than the square."""
    width, height = image_size
    side = int(round(min(max(face.width, face.height) * ratio, width, height)))
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, x0 + side, y0 + side


def head_region(face: Face, crop: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Soft 0..1 mask of the region around the head, in the coordinates of the resized crop.

    The reference keeps the face box widened by 0.3× per side and shifted down 0.15× (for RetinaFace's boxes,
    which include the forehead). Our detectors' boxes are tighter (brows to chin), so the region here reaches
    0.2× above and below the box instead, keeping forehead, hairline and chin; edges are feathered so the matte
    does not end in a straight cut."""
    import cv2

    scale = size / (crop[2] - crop[0])
    x0 = (face.box[0] - 0.3 * face.width - crop[0]) * scale
    x1 = (face.box[2] + 0.3 * face.width - crop[0]) * scale
    y0 = (face.box[1] - 0.2 * face.height - crop[1]) * scale
    y1 = (face.box[3] + 0.2 * face.height - crop[1]) * scale
    mask = np.zeros((size, size), np.float32)
    mask[max(int(y0), 0) : max(int(y1), 0), max(int(x0), 0) : max(int(x1), 0)] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=max(face.width * scale * 0.05, 1.0))


def prepare_dataset(
    report: PhotoReport,
    photos_dir: Path,
    out_dir: Path,
    stack: FaceStack,
    config: TrainConfig = TrainConfig(),
    *,
    upscaler: Upscaler | None = None,
    tagger: Tagger | None = None,
    photos: dict[str, str] | None = None,
) -> list[DatasetItem]:
    """Write the dataset for the kept photos of `report`; replaces any previous dataset in `out_dir`. `photos`
    (name → sha256 of every photo the check saw) is recorded so a change of photos can be told later."""
    holdout = choose_holdout(report, config.holdout_photos)
    kept = sorted((d for d in report.kept if d.file not in holdout), key=lambda d: d.file)
    if not kept:
        from easyphoto.errors import EasyPhotoError

        raise EasyPhotoError("No photos were kept, so there is nothing to train on.", phase="dataset",
                             hint="Check the photo report: every photo has the reason it was dropped.")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "train").mkdir(parents=True)
    items = [
        _prepare_one(i, photos_dir / d.file, d.face, staging, stack, config, upscaler, tagger)
        for i, d in enumerate(kept)
    ]
    lines = [json.dumps({"file_name": f"train/{it.index}.jpg", "text": it.caption}, ensure_ascii=False) for it in items]
    atomic_write_text(staging / "metadata.jsonl", "\n".join(lines) + "\n")
    summary = {"config": config.to_dict(), "items": [it.__dict__ | {"crop": list(it.crop)} for it in items],
               "holdout": holdout, "settings": dataset_settings(config)}
    if photos is not None:
        summary["photos"] = dict(photos)
    atomic_write_text(staging / "dataset.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    swap_in_folder(staging, out_dir)
    return items


def choose_holdout(report: PhotoReport, count: int) -> list[str]:
    """Photos kept out of training so validation scores a likeness the LoRA has not memorised: the `count` most
    typical ones (highest similarity to the identity), never the reference face, and only when at least
    MIN_TRAINING_PHOTOS_FOR_HOLDOUT photos remain for training."""
    kept = report.kept
    if count <= 0 or len(kept) - count < MIN_TRAINING_PHOTOS_FOR_HOLDOUT:
        return []
    candidates = [d for d in kept if d.file != report.reference]
    ranked = sorted(candidates, key=lambda d: (-(d.similarity if d.similarity is not None else 0.0), d.file))
    return sorted(d.file for d in ranked[:count])


def dataset_settings(config: TrainConfig) -> dict:
    values = config.to_dict()
    return {name: values[name] for name in DATASET_FIELDS}


def _record(dataset_dir: Path) -> dict | None:
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # damaged: nothing can be trusted, so everything counts as changed
    return record if isinstance(record, dict) else {}


def settings_changes(dataset_dir: Path, config: TrainConfig) -> list[str]:
    """The dataset-shaping settings that differ from the ones `dataset_dir` was made with, in words
    ("resolution 512 → 768"). A folder without dataset.json was made by hand: nothing to compare, []."""
    record = _record(dataset_dir)
    if record is None:
        return []
    recorded = record.get("settings") or record.get("config")  # older datasets recorded the whole config
    if not isinstance(recorded, dict):
        return ["its settings were not recorded"]
    wanted = dataset_settings(config)
    return [f"{name} {recorded.get(name)!r} → {wanted[name]!r}" for name in DATASET_FIELDS
            if recorded.get(name) != wanted[name]]


def photo_changes(dataset_dir: Path, photos: dict[str, str]) -> list[str]:
    """How the photos (name → sha256) differ from those the dataset was made from; [] when equal or not recorded."""
    record = _record(dataset_dir) or {}
    made_from = record.get("photos")
    if not isinstance(made_from, dict) or made_from == photos:
        return []
    added = len(set(photos) - set(made_from))
    removed = len(set(made_from) - set(photos))
    replaced = sum(1 for name in set(photos) & set(made_from) if photos[name] != made_from[name])
    return [f"photos changed since it was made ({added} added, {removed} removed, {replaced} replaced)"]


def dataset_changes(dataset_dir: Path, config: TrainConfig, photos: dict[str, str] | None = None) -> list[str]:
    """Why the dataset in `dataset_dir` is out of date for `config` (and the identity's current `photos`)."""
    return settings_changes(dataset_dir, config) + (photo_changes(dataset_dir, photos) if photos is not None else [])


def read_holdout(dataset_dir: Path) -> list[str]:
    summary = dataset_dir / "dataset.json"
    return json.loads(summary.read_text(encoding="utf-8")).get("holdout", []) if summary.is_file() else []


def _prepare_one(index, path, face, out, stack, config, upscaler, tagger) -> DatasetItem:
    image = load_photo(path).image
    crop = square_crop(face, config.crop_ratio, image.size)
    cropped = image.crop(crop)
    side = config.resolution
    upscaled = cropped.width < side
    if upscaled and config.upscale_small:
        cropped = (upscaler or classical)(cropped, side)
    else:
        cropped = cropped.resize((side, side), Image.LANCZOS)
    pixels = to_array(cropped)
    scale = side / (crop[2] - crop[0])
    local_face = face.in_crop(crop, (scale, scale))
    if config.retouch and stack.parser is not None:
        pixels = smooth_skin(pixels, stack.parser.parse(pixels, local_face).skin)
    matted = config.matting and stack.matter is not None
    if matted:
        alpha = stack.matter.matte(pixels) * head_region(face, crop, side)
        pixels = (pixels * alpha[..., None] + 255 * (1 - alpha[..., None])).round().astype(np.uint8)
    result = Image.fromarray(pixels, "RGB")
    caption = tagger(result) if tagger else config.caption
    buffer = io.BytesIO()
    result.save(buffer, "JPEG", quality=JPEG_QUALITY)
    atomic_write_bytes(out / "train" / f"{index}.jpg", buffer.getvalue())
    atomic_write_text(out / "train" / f"{index}.txt", caption)
    return DatasetItem(index, path.name, crop, upscaled and config.upscale_small, matted, caption)


