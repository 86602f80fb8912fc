"""The garment dataset: every photo of a garment cut out onto white, squared around the garment and captioned.

    config = GarmentDatasetConfig(category="upper", mask_source="parsing")
    report = build_garment_dataset(ctx, "red_shirt", config, progress=report_progress, should_stop=stopped)
    captions(layout)                                         # [("train/0.png", "red_shirt_garment, top, ..."), ...]
    set_caption(layout, "train/0.png", "red_shirt_garment, top, short sleeves")
    dataset_out_of_date(layout, config)                      # why a rebuild is due ([] when current)

Written into garments/<id>/ (the previous dataset is replaced only when the new one is complete):

    dataset/train/0.png, 1.png, ...   resolution², RGB: the garment on pure white (PNG, so white stays 255)
    dataset/masks/0.png, ...          the garment in each crop, 0/255 (garment validation reads it)
    dataset/metadata.jsonl            {"file_name": "train/0.png", "text": "<caption>"} per line: what the trainer
                                      reads (easyphoto.train.trainer.read_dataset)
    dataset/dataset.json              the settings, and the photos, masks and clicks (by content) it was made from
    masks/computed/<photo>.png        the mask found for each photo by parsing or clicks, for review
    report.json                       every photo: kept, or dropped with the reason

Per photo: its garment mask — the uploaded mask when there is one (a person's drawing beats any model), else by the
mask source: the clothes parser's labels for the category, or the point segmenter on the photo's clicks — must cover
at least `min_garment_fraction` of the photo; everything outside it becomes white; a square around the mask's
bounding box, grown by `margin` on each side and padded with white where it passes the photo's edge (the garment
stays centred), is resized to the resolution. The caption is the trigger word, the category's words and, when the
WD14 tagger's files are present and `tagger` is on, its general tags for the crop.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field

from easyphoto.config import ConfigModel, _cross_field_check, in_group
from easyphoto.context import AppContext
from easyphoto.errors import Cancelled, EasyPhotoError, NotFound
from easyphoto.imageops import UnreadableImage, load_photo, to_array
from easyphoto.segment.types import ClothesParser, Parsing, PointSegmenter
from easyphoto.store import (
    GarmentLayout,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    photo_digests_by_name,
    swap_in_folder,
)
from easyphoto.tryon.garments import PhotoPrompts, photo_prompts, read_mask, uploaded_masks

GarmentCategory = Literal[  # the keys of segment.types.GARMENT_CATEGORIES (a test holds them equal)
    "upper", "lower", "dress", "pants", "skirt", "scarf", "hat", "bag", "belt"]
MaskSource = Literal["parsing", "points", "mask"]
Progress = Callable[[int, int, str], None]  # (photo index, photo count, photo name); may raise Cancelled
Tagger = Callable[[Image.Image], Sequence[str]]  # an image → its tags (a WD14Tagger, or any callable)

# What a caption says about each category, after the trigger word.
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "upper": ("top",), "lower": ("bottoms",), "dress": ("dress",), "pants": ("pants",), "skirt": ("skirt",),
    "scarf": ("scarf",), "hat": ("hat",), "bag": ("bag",), "belt": ("belt",),
}
MAX_CAPTION_CHARS = 500  # as TrainConfig.caption
UNINFORMATIVE_TAGS = {"white background", "simple background"}  # true of every cut-out: no word to learn from
# Labels of the clothes parser that are garments, for saying what it found when the category was not there.
_GARMENT_LABELS = ("upper_clothes", "dress", "skirt", "pants", "scarf", "hat", "bag", "belt")
_GARMENT, _MASK, _CROP, _CAPTIONS = "Garment", "Garment mask", "Crop", "Captions"


def _check_trigger(trigger: str | None) -> None:
    if trigger is not None and (not trigger.strip() or any(c in trigger for c in ",\n\r\t")):
        raise ValueError("trigger must be a word (or words) without commas or line breaks")


class GarmentDatasetConfig(ConfigModel):
    """How a garment's photos become its training images and captions (easyphoto.tryon.dataset)."""

    category: GarmentCategory = Field("upper", description="What the garment is: the region cut out of each photo.",
                                      **in_group(_GARMENT))
    mask_source: MaskSource = Field(
        "parsing",
        description="Where a photo's garment mask comes from when none was uploaded for it: the clothes parser "
        "(parsing), the point segmenter on the photo's clicks (points), or none (mask: uploaded masks only).",
        **in_group(_MASK))
    min_garment_fraction: float = Field(0.02, ge=0.0, le=0.9, description="Smallest garment accepted, as a share "
                                        "of the photo's area.", **in_group(_MASK, advanced=True))
    resolution: int = Field(512, ge=256, le=2048, multiple_of=64, description="Training image size in pixels.",
                            **in_group(_CROP))
    margin: float = Field(0.1, ge=0.0, le=1.0, description="Space around the garment in each crop, as a share of "
                          "its larger side, on every side.", **in_group(_CROP, advanced=True))
    background: Literal["white"] = Field("white", description="What replaces everything outside the garment.",
                                         **in_group(_CROP, advanced=True))
    trigger: str | None = Field(None, max_length=64, description="The word the LoRA learns the garment by; empty "
                                "= '<garment id>_garment'.", **in_group(_CAPTIONS))
    tagger: bool = Field(True, description="Add the WD14 tagger's tags to the captions when its files are present "
                         "(else the captions are the trigger and the category's words).", **in_group(_CAPTIONS))
    tag_threshold: float = Field(0.35, ge=0.05, le=0.99, description="Smallest tag probability used.",
                                 **in_group(_CAPTIONS, advanced=True))
    max_tags: int = Field(12, ge=0, le=50, description="Most tags per caption.", **in_group(_CAPTIONS, advanced=True))

    check_trigger = _cross_field_check("check_trigger", lambda v: _check_trigger(v["trigger"]))

    def trigger_for(self, garment_id: str) -> str:
        return self.trigger.strip() if self.trigger else f"{garment_id}_garment"


class InvalidCaption(EasyPhotoError):
    phase = "dataset"
    http_status = 422


# ---------------------------------------------------------------------------------------------- the report


@dataclass
class GarmentPhotoDecision:
    file: str
    kept: bool = False
    reason: str = ""  # why dropped
    mask_source: str | None = None  # "uploaded" | "parsing" | "points"
    garment_fraction: float | None = None  # of the photo's area
    crop: tuple[int, int, int, int] | None = None  # in photo pixels; may reach past the edges (padded white)
    image: str | None = None  # its training image, as metadata.jsonl names it
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"file": self.file, "kept": self.kept, "reason": self.reason, "mask_source": self.mask_source,
                "garment_fraction": None if self.garment_fraction is None else round(self.garment_fraction, 4),
                "crop": list(self.crop) if self.crop else None, "image": self.image, "notes": self.notes}


@dataclass
class GarmentDatasetReport:
    garment_id: str
    decisions: list[GarmentPhotoDecision]
    settings: dict
    tagger: str | None  # the tagger that captioned, None when captions are the category words only

    @property
    def kept(self) -> list[GarmentPhotoDecision]:
        return [d for d in self.decisions if d.kept]

    def to_dict(self) -> dict:
        return {"garment_id": self.garment_id, "kept": len(self.kept), "total": len(self.decisions),
                "settings": self.settings, "tagger": self.tagger, "photos": [d.to_dict() for d in self.decisions]}

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())


# ---------------------------------------------------------------------------------------------- inputs and models


@dataclass
class DatasetModels:
    """What a build may use; the parser / segmenter is needed only for photos without an uploaded mask."""

    parser: ClothesParser | None = None
    segmenter: PointSegmenter | None = None
    tagger: Tagger | None = None


@dataclass
class DatasetInputs:
    photos: list[Path]
    digests: dict[str, str]  # photo name → sha256
    masks: dict[str, Path]  # photo name → uploaded mask
    prompts: dict[str, PhotoPrompts]  # photo name → clicks

    def fingerprint(self) -> dict:
        """By content: what dataset.json records and dataset_out_of_date compares."""
        return {"photos": self.digests,
                "masks": {name: _sha256(path.read_bytes()) for name, path in self.masks.items()},
                "points": {name: _sha256(json.dumps([[[p.x, p.y, p.positive] for p in v.points], v.boxes]).encode())
                           for name, v in self.prompts.items()}}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def collect_inputs(layout: GarmentLayout, config: GarmentDatasetConfig) -> DatasetInputs:
    """The garment's photos, masks and clicks; raises before any model loads when no photo could be used."""
    digests = photo_digests_by_name(layout)
    inputs = DatasetInputs([layout.photos / name for name in digests], digests, uploaded_masks(layout),
                           photo_prompts(layout))
    name = layout.garment_id
    if not inputs.photos:
        raise EasyPhotoError(f"The garment {name!r} has no photos yet.", phase="dataset",
                             hint="Upload 10–30 photos of the garment first.")
    if config.mask_source == "mask" and not inputs.masks:
        raise EasyPhotoError(f"No photo of {name!r} has an uploaded mask, and the mask source is 'mask'.",
                             phase="dataset", hint="Upload masks, or choose the mask source 'parsing' or 'points'.")
    if config.mask_source == "points" and not (inputs.masks or inputs.prompts):
        raise EasyPhotoError(f"No photo of {name!r} has clicks or a mask, and the mask source is 'points'.",
                             phase="dataset", hint="Click on the garment in each photo, or choose 'parsing'.")
    return inputs


def needed_models(inputs: DatasetInputs, config: GarmentDatasetConfig) -> set[str]:
    """{"parser"} / {"segmenter"} when some photo without an uploaded mask needs it; set() when masks cover all."""
    unmasked = [p.name for p in inputs.photos if p.name not in inputs.masks]
    if config.mask_source == "parsing" and unmasked:
        return {"parser"}
    if config.mask_source == "points" and any(name in inputs.prompts for name in unmasked):
        return {"segmenter"}
    return set()


def build_garment_dataset(
    ctx: AppContext, garment_id: str, config: GarmentDatasetConfig | None = None, *,
    parser: ClothesParser | None = None, segmenter: PointSegmenter | None = None, tagger: Tagger | None = None,
    progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
) -> GarmentDatasetReport:
    """Build garments/<id>/dataset/ and report.json. Models not given are loaded when needed (the parser or the
    segmenter only for photos without an uploaded mask; the tagger when `config.tagger` and its files are present)
    and unloaded afterwards: the training that follows needs the memory."""
    layout = ctx.garments.get(garment_id)
    config = config or GarmentDatasetConfig()
    inputs = collect_inputs(layout, config)
    models, loaded = DatasetModels(parser, segmenter, tagger), []
    try:
        needs = needed_models(inputs, config)
        if "parser" in needs and models.parser is None:
            from easyphoto.segment.parsing import load_parser

            models.parser = load_parser(ctx.paths)
            loaded.append(models.parser)
        if "segmenter" in needs and models.segmenter is None:
            from easyphoto.segment.sam import load_segmenter

            models.segmenter = load_segmenter(ctx.paths)
            loaded.append(models.segmenter)
        if config.tagger and models.tagger is None:
            from easyphoto.tryon.tagger import load_tagger

            models.tagger = load_tagger(ctx.paths)
            loaded.append(models.tagger)
        return build_dataset(layout, config, models, inputs=inputs, progress=progress, should_stop=should_stop,
                             max_megapixels=ctx.settings.max_upload_megapixels)
    finally:
        for model in loaded:
            if model is not None:
                model.unload()


# ---------------------------------------------------------------------------------------------- the build


@dataclass
class _Build:
    layout: GarmentLayout
    config: GarmentDatasetConfig
    models: DatasetModels
    inputs: DatasetInputs
    staging: Path
    max_megapixels: float
    seen: dict[str, str] = field(default_factory=dict)  # sha256 → the kept photo with it
    captions: list[tuple[str, str]] = field(default_factory=list)  # (file_name, text) of the kept photos


def build_dataset(
    layout: GarmentLayout, config: GarmentDatasetConfig, models: DatasetModels, *,
    inputs: DatasetInputs | None = None, max_megapixels: float = 64.0,
    progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
) -> GarmentDatasetReport:
    """build_garment_dataset without an AppContext, with the models given. report.json is written even when no
    photo is kept (then EasyPhotoError, and the previous dataset stays); a cancel leaves the previous one too."""
    inputs = inputs or collect_inputs(layout, config)
    _require_models(needed_models(inputs, config), models)
    staging = layout.dataset.with_name(layout.dataset.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    build = _Build(layout, config, models, inputs, staging, max_megapixels)
    try:
        (staging / "train").mkdir(parents=True)
        (staging / "masks").mkdir()
        decisions = []
        for index, path in enumerate(inputs.photos):
            if progress:
                progress(index, len(inputs.photos), path.name)
            if should_stop and should_stop():
                raise Cancelled("The garment dataset build was stopped.", hint="Build it again to finish it.")
            decisions.append(_one_photo(build, path))
        tagger = _tagger_name(models.tagger) if config.tagger else None
        report = GarmentDatasetReport(layout.garment_id, decisions, dataset_settings(config, layout.garment_id), tagger)
        report.save(layout.report)
        if not report.kept:
            raise EasyPhotoError(f"No photo of {layout.garment_id!r} was kept, so there is nothing to train on.",
                                 phase="dataset", hint="The report says why each photo was dropped.")
        _write_records(build, report)
        swap_in_folder(staging, layout.dataset)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tagger_name(tagger: Tagger | None) -> str | None:
    return None if tagger is None else str(getattr(tagger, "name", type(tagger).__name__))


def _require_models(needs: set[str], models: DatasetModels) -> None:
    if "parser" in needs and models.parser is None:
        raise EasyPhotoError("Photos without an uploaded mask need the clothes parser, and none was given.",
                             phase="dataset", hint="Upload masks for every photo, or install the parser's weights.")
    if "segmenter" in needs and models.segmenter is None:
        raise EasyPhotoError("Photos with clicks need the point segmenter, and none was given.", phase="dataset",
                             hint="Upload masks for those photos, or install the segmenter's weights.")


def _one_photo(build: _Build, path: Path) -> GarmentPhotoDecision:
    decision = GarmentPhotoDecision(path.name)
    digest = build.inputs.digests[path.name]
    if digest in build.seen:  # only kept photos are in `seen`: a copy of a dropped photo still gets its chance
        decision.reason = f"duplicate of {build.seen[digest]} (the same file)"
        return decision
    try:
        loaded = load_photo(path, max_megapixels=build.max_megapixels)
    except UnreadableImage as exc:
        decision.reason = f"unreadable: {exc.message}"
        return decision
    decision.notes.extend(loaded.notes)
    rgb = to_array(loaded.image)
    mask, decision.mask_source, problem = _garment_mask(build, path.name, rgb, decision.notes)
    if mask is None:
        decision.reason = problem
        return decision
    decision.garment_fraction = float(np.count_nonzero(mask)) / mask.size
    least = build.config.min_garment_fraction
    if decision.garment_fraction < least:
        decision.reason = (f"mask too small (the garment covers {decision.garment_fraction:.1%} of the photo; "
                           f"at least {least:.1%})")
        return decision
    if decision.mask_source != "uploaded":
        _save_png(build.layout.computed_masks / f"{path.name}.png", mask, "L")
    _write_crop(build, decision, rgb, mask)
    build.seen[digest] = path.name
    return decision


def _garment_mask(build: _Build, name: str, rgb: np.ndarray, notes: list[str]
                  ) -> tuple[np.ndarray | None, str | None, str]:
    """(mask 0/255 of the photo's size, its source, "") or (None, the source tried or None, why there is none)."""
    height, width = rgb.shape[:2]
    if name in build.inputs.masks:
        mask = read_mask(build.inputs.masks[name])
        if mask.shape != (height, width):
            notes.append(f"uploaded mask {mask.shape[1]}×{mask.shape[0]} resized to the photo")
            mask = np.asarray(Image.fromarray(mask, "L").resize((width, height), Image.NEAREST))
        return (mask, "uploaded", "") if mask.any() else (None, "uploaded", "the uploaded mask is empty")
    source, category = build.config.mask_source, build.config.category
    if source == "mask":
        return None, None, "no uploaded mask (the mask source is 'mask': uploaded masks only)"
    if source == "points":
        prompts = build.inputs.prompts.get(name)
        if prompts is None:
            return None, None, "no clicks on this photo (the mask source is 'points')"
        mask = _checked(build.models.segmenter.segment(rgb, prompts.points, prompts.boxes or None), rgb, "segmenter")
        return (mask, "points", "") if mask.any() else (None, "points", "the clicks selected nothing")
    parsing = build.models.parser.parse(rgb)
    mask = _checked(parsing.category_mask(category), rgb, "clothes parser")
    if not mask.any():
        return None, "parsing", f"no garment of the category '{category}' found ({_parsing_found(parsing)})"
    return mask, "parsing", ""


def _checked(mask: np.ndarray, rgb: np.ndarray, model: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise EasyPhotoError(f"The {model} returned a {mask.shape} mask for a {rgb.shape[:2]} photo.",
                             phase="dataset", hint="This is a bug: please report it with the model in use.")
    return np.where(mask >= 128, 255, 0).astype(np.uint8)


def _parsing_found(parsing: Parsing) -> str:
    fractions = parsing.fractions()
    found = sorted(((fractions[label], label) for label in _GARMENT_LABELS if label in fractions), reverse=True)
    if not found:
        return "the clothes parser found no garment"
    return "the clothes parser found " + ", ".join(f"{label.replace('_', ' ')} {share:.0%}" for share, label in found)


# ---------------------------------------------------------------------------------------------- crop and caption


def cut_out(rgb: np.ndarray, mask: np.ndarray, margin: float, size: int
            ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """(size² RGB with everything outside the garment white, size² mask 0/255, the square in photo pixels).

    The square is centred on the mask's bounding box, side = its larger side × (1 + 2 × margin), padded with white
    where it passes the photo's edge. After resizing, pixels outside the resized mask are set white again, so the
    resampling filter leaves no coloured fringe outside the garment."""
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    side = max(math.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * margin)), 1)
    left, top = int(round((x0 + x1 - side) / 2)), int(round((y0 + y1 - side) / 2))
    crop = (left, top, left + side, top + side)
    on_white = np.where(mask[..., None] > 0, rgb, 255).astype(np.uint8)
    image = Image.fromarray(_window(on_white, crop, 255), "RGB").resize((size, size), Image.LANCZOS)
    small = Image.fromarray(_window(mask, crop, 0), "L").resize((size, size), Image.BILINEAR)
    small_mask = np.where(np.asarray(small) >= 128, 255, 0).astype(np.uint8)
    pixels = np.asarray(image).copy()
    pixels[small_mask == 0] = 255
    return pixels, small_mask, crop


def _window(array: np.ndarray, box: tuple[int, int, int, int], fill: int) -> np.ndarray:
    """array[top:bottom, left:right] where the box may pass the edges: the outside is `fill`."""
    left, top, right, bottom = box
    height, width = array.shape[:2]
    out = np.full((bottom - top, right - left, *array.shape[2:]), fill, dtype=array.dtype)
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = array[sy0:sy1, sx0:sx1]
    return out


def compose_caption(trigger: str, category: str, tags: Sequence[str] = (), max_tags: int = 12) -> str:
    """'<trigger>, <category words>, <tags>': tags cleaned (underscores → spaces), without repeats or words every
    cut-out shares, at most `max_tags`, and dropped from the end while the caption is over MAX_CAPTION_CHARS."""
    words = [trigger, *CATEGORY_WORDS[category]]
    extra: list[str] = []
    for tag in tags:
        text = " ".join(str(tag).replace("_", " ").replace(",", " ").split())
        if text and text not in words and text not in extra and text not in UNINFORMATIVE_TAGS:
            extra.append(text)
    extra = extra[:max_tags]
    while extra and len(", ".join(words + extra)) > MAX_CAPTION_CHARS:
        extra.pop()
    return ", ".join(words + extra)


def _tags(build: _Build, pixels: np.ndarray) -> list[str]:
    tagger = build.models.tagger
    if tagger is None or not build.config.tagger:
        return []
    image = Image.fromarray(pixels, "RGB")
    tags = getattr(tagger, "tags", None)  # a WD14Tagger takes the configured threshold; other callables tag alone
    return list(tags(image, threshold=build.config.tag_threshold) if tags else tagger(image))


def _write_crop(build: _Build, decision: GarmentPhotoDecision, rgb: np.ndarray, mask: np.ndarray) -> None:
    config = build.config
    pixels, small_mask, crop = cut_out(rgb, mask, config.margin, config.resolution)
    side = crop[2] - crop[0]
    if side < config.resolution:
        decision.notes.append(f"garment crop {side} px upscaled to {config.resolution} px")
    number = len(build.captions)
    _save_png(build.staging / "train" / f"{number}.png", pixels, "RGB")
    _save_png(build.staging / "masks" / f"{number}.png", small_mask, "L")
    caption = compose_caption(config.trigger_for(build.layout.garment_id), config.category, _tags(build, pixels),
                              config.max_tags)
    decision.kept, decision.crop, decision.image = True, crop, f"train/{number}.png"
    build.captions.append((decision.image, caption))


def _save_png(target: Path, pixels: np.ndarray, mode: str) -> None:
    with atomic_path(target) as tmp:
        Image.fromarray(pixels, mode).save(tmp, "PNG")


def _write_records(build: _Build, report: GarmentDatasetReport) -> None:
    _write_metadata(build.staging, build.captions)
    record = {"garment_id": build.layout.garment_id, "settings": report.settings, "tagger": report.tagger,
              **build.inputs.fingerprint(),
              "items": [{"image": d.image, "source": d.file, "crop": list(d.crop), "mask_source": d.mask_source}
                        for d in report.kept]}
    atomic_write_json(build.staging / "dataset.json", record)


def _write_metadata(dataset_dir: Path, entries: Sequence[tuple[str, str]]) -> None:
    lines = [json.dumps({"file_name": name, "text": text}, ensure_ascii=False) for name, text in entries]
    atomic_write_text(Path(dataset_dir) / "metadata.jsonl", "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- after the build


def dataset_settings(config: GarmentDatasetConfig, garment_id: str) -> dict:
    """The settings that shape the dataset, the trigger resolved (a default trigger follows the garment id)."""
    values = {k: v for k, v in config.to_dict().items() if k != "config_version"}
    return {**values, "trigger": config.trigger_for(garment_id)}


def dataset_out_of_date(layout: GarmentLayout, config: GarmentDatasetConfig) -> list[str]:
    """Why garments/<id>/dataset/ no longer matches `config` and the garment's photos, masks and clicks, in words
    ([] when it does). Caption edits do not count: they are the user's, made on this dataset."""
    record_file = layout.dataset / "dataset.json"
    if not (record_file.is_file() and (layout.dataset / "metadata.jsonl").is_file()):
        return ["there is no dataset yet"]
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["its record (dataset.json) is damaged"]
    recorded, wanted = record.get("settings") or {}, dataset_settings(config, layout.garment_id)
    changes = [f"{name} {recorded.get(name)!r} → {value!r}" for name, value in wanted.items()
               if recorded.get(name) != value]
    current = DatasetInputs([], photo_digests_by_name(layout), uploaded_masks(layout), photo_prompts(layout))
    fingerprint = current.fingerprint()
    compared = [("photos", "photos"), ("masks", "uploaded masks")]
    if config.mask_source == "points":  # clicks shape the dataset only when they are what masks come from
        compared.append(("points", "clicks"))
    for key, words in compared:
        if record.get(key) != fingerprint[key]:
            changes.append(f"{words} changed since it was made")
    return changes


_caption_locks: dict[Path, threading.Lock] = {}
_caption_guard = threading.Lock()


def captions(layout: GarmentLayout) -> list[tuple[str, str]]:
    """(file name, caption) of every training image, in metadata.jsonl's order."""
    meta = layout.dataset / "metadata.jsonl"
    if not meta.is_file():
        raise NotFound(f"The garment {layout.garment_id!r} has no dataset yet.", phase="dataset",
                       hint="Build the garment dataset first.")
    entries = []
    for line in meta.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            entries.append((str(record["file_name"]), str(record["text"])))
    return entries


def set_caption(layout: GarmentLayout, file_name: str, text: str) -> str:
    """Replace one training image's caption (whitespace collapsed); returns the stored text. An empty caption or
    one over MAX_CAPTION_CHARS is refused; metadata.jsonl is rewritten atomically. A rebuild regenerates captions."""
    text = " ".join(str(text).split())
    if not text:
        raise InvalidCaption(f"The caption for {file_name} is empty.",
                             hint=f"Keep at least the trigger word ({_trigger_of(layout)}).")
    if len(text) > MAX_CAPTION_CHARS:
        raise InvalidCaption(f"The caption for {file_name} is {len(text)} characters; at most {MAX_CAPTION_CHARS}.",
                             hint="Keep the trigger word and the tags that describe the garment.")
    with _caption_guard:
        lock = _caption_locks.setdefault(layout.dataset.resolve(), threading.Lock())
    with lock:
        entries = captions(layout)
        names = [name for name, _ in entries]
        if file_name not in names:
            raise NotFound(f"The dataset of {layout.garment_id!r} has no image {file_name!r}.", phase="dataset",
                           hint=f"Its images: {', '.join(names[:10])}{' …' if len(names) > 10 else ''}.")
        _write_metadata(layout.dataset, [(name, text if name == file_name else old) for name, old in entries])
    return text


def _trigger_of(layout: GarmentLayout) -> str:
    try:
        return str(json.loads((layout.dataset / "dataset.json").read_text(encoding="utf-8"))["settings"]["trigger"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{layout.garment_id}_garment"
