"""The "tryon" job: a trained garment + a person photo + TryOnConfig → saved try-on images with fidelity scores.

Everything that can be checked is checked before the first generation: the garment exists and has its LoRA and a
dataset reference, the person photo reads, the mask input fits the mask source (a mask file, clicks, or the clothes
parser's files), the backend has the ControlNet models the config needs, and the mask is not empty, the category is
in the photo and a person is there (tryon/masks.py).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from easyphoto import __version__
from easyphoto.context import AppContext
from easyphoto.errors import Cancelled, EasyPhotoError, InvalidRequest
from easyphoto.generation import GenerationInterrupted, LoraRef
from easyphoto.imageops import load_photo, to_array
from easyphoto.job_params import TryOnParams
from easyphoto.jobs import JobContext
from easyphoto.segment.types import Point
from easyphoto.store import atomic_write_bytes, read_json
from easyphoto.tryon.pipeline import GarmentAssets, MaskInput, TryOnPipeline, TryOnResult

log = logging.getLogger("easyphoto")


class GarmentNotReady(EasyPhotoError):
    phase = "garment"
    http_status = 409


def require_trained_garment(ctx: AppContext, garment_id: str) -> tuple[dict, Path]:
    """(garment.json, its LoRA file) of a trained garment; GarmentNotReady (409) when it is not. Cheap: the API
    and the CLI call it before they submit a try-on job."""
    layout = ctx.garments.get(garment_id)  # InvalidGarmentId / GarmentNotFound
    info = read_json(layout.garment_json) if layout.garment_json.is_file() else {}
    lora_path = Path(info.get("lora_file") or layout.lora_file)
    if not lora_path.is_absolute():
        lora_path = ctx.paths.lora_dir / lora_path
    if not info or not lora_path.is_file():
        raise GarmentNotReady(f"Garment {garment_id!r} has no trained LoRA yet (expected {lora_path}).",
                              hint="Train it first in EasyPhoto → Try-On → Garments (CLI: garment train).")
    return info, lora_path


def load_garment(ctx: AppContext, garment_id: str) -> GarmentAssets:
    """The garment's LoRA, trigger, category and first dataset crop with its mask (paste and fidelity reference)."""
    from easyphoto.tryon.dataset import captions
    from easyphoto.tryon.training import crop_mask

    info, lora_path = require_trained_garment(ctx, garment_id)
    layout = ctx.garments.get(garment_id)
    entries = captions(layout) if (layout.dataset / "metadata.jsonl").is_file() else []
    if not entries:
        raise GarmentNotReady(f"Garment {garment_id!r} has no dataset images left to take its reference from.",
                              hint="Rebuild its dataset (Try-On → Garments → Build dataset); the LoRA is kept.")
    name = entries[0][0]
    reference = np.asarray(Image.open(layout.dataset / name).convert("RGB"))
    settings = read_json(layout.dataset / "dataset.json").get("settings", {})
    trigger = str(settings.get("trigger") or f"{garment_id}_garment")
    category = str(info.get("category") or settings.get("category") or "upper")
    return GarmentAssets(garment_id, LoraRef(lora_path.stem, 1.0, lora_path), trigger, category, reference,
                         crop_mask(layout.dataset, name, reference))


def mask_input(ctx: AppContext, params: TryOnParams, size: tuple[int, int]) -> MaskInput:
    """The given garment region for mask_source "mask" (a file) and "points" (clicks and boxes through the point
    segmenter); an empty MaskInput for "parsing". A missing or mismatched input is said before any model loads."""
    source = params.config.mask_source
    if source == "mask":
        if not params.mask:
            raise InvalidRequest("mask_source is 'mask' but no mask was given.", phase="tryon",
                                 hint="Send a mask image (white = the garment region), or use mask_source 'parsing'.")
        from easyphoto.tryon.garments import binary_mask

        image = load_photo(Path(params.mask), max_megapixels=ctx.settings.max_upload_megapixels).image
        if image.size != size:
            raise InvalidRequest(f"The mask is {image.size[0]}×{image.size[1]}, the person photo {size[0]}×{size[1]}.",
                                 phase="tryon", hint="Draw the mask on the same photo, at its size.")
        return MaskInput(mask=binary_mask(image))
    if source == "points":
        if not params.points and not params.boxes:
            raise InvalidRequest("mask_source is 'points' but no click or box was given.", phase="tryon",
                                 hint="Click on the garment (points [x, y, true]) or draw a box around it.")
        return MaskInput(mask=None)  # segmented in tryon_operation, once the photo's pixels are there
    return MaskInput()


def _segment_points(ctx: AppContext, params: TryOnParams, pixels: np.ndarray) -> np.ndarray:
    from easyphoto.segment import load_segmenter

    segmenter = load_segmenter(ctx.paths)  # cached: a browser session's clicks reuse its image embedding
    points = [Point(float(x), float(y), bool(positive)) for x, y, positive in params.points]
    return segmenter.segment(pixels, points, [tuple(b) for b in params.boxes])


def clothes_parser(ctx: AppContext, mask_source: str):
    """(the clothes parser, a note): required for mask_source "parsing" (its missing files are the error);
    otherwise used when installed (it finds the face and hair to keep out of a drawn or clicked mask), and its
    absence becomes the note. The try-on job and the Try-On tab's mask preview both use it."""
    from easyphoto.segment import load_parser

    try:
        return load_parser(ctx.paths), ""
    except EasyPhotoError:
        if mask_source == "parsing":
            raise
        return None, "no clothes parser installed: face and hair are protected only where the pose finds them"


def tryon_operation(ctx: AppContext, params: TryOnParams, job: JobContext) -> dict:
    from easyphoto.portrait.run import make_generator

    job.progress(phase="loading", fraction=0.0, message="garment, photo and models")
    garment = load_garment(ctx, params.garment_id)
    person = load_photo(Path(params.person), max_megapixels=ctx.settings.max_upload_megapixels).image
    given = mask_input(ctx, params, person.size)
    generator = make_generator(ctx, {"base": params.base, "config_dir": params.config_dir})
    parser, note = clothes_parser(ctx, params.config.mask_source)
    from easyphoto.tryon.depth import load_depth

    depth = load_depth(ctx.paths)
    try:
        if params.config.mask_source == "points":
            given = MaskInput(mask=_segment_points(ctx, params, to_array(person)))
        pipeline = TryOnPipeline(generator, params.config, parser=parser, depth=depth)
        pipeline.check()
        pipeline.prepare(to_array(person), given)  # mask errors now, before the first generation
        if hasattr(generator, "interrupt"):
            job.on_cancel(generator.interrupt)
        counts_before = generator.counter.totals()
        results = _render(pipeline, person, garment, given, params, job)
    finally:  # the helper models must not hold memory the next job (a training) needs
        for model in (parser, depth):
            if model is not None:
                model.unload()
    out_dir = Path(params.out) if params.out else ctx.paths.outputs_dir
    saved = [save(r, params, out_dir, [note] if note else []) for r in results]
    evaluations = {k: v - counts_before.get(k, 0) for k, v in generator.counter.totals().items()}
    job.progress(phase="done", fraction=1.0, message=f"{len(saved)} try-on image(s)")
    return {"tryons": [_summary(path, r, note) for path, r in zip(saved, results, strict=True)],
            "images": [_share(path, job.work_dir) for path in saved], "backend": generator.name,
            "evaluations": evaluations}


def _render(pipeline: TryOnPipeline, person, garment, given, params: TryOnParams, job: JobContext) -> list:
    def progress(fraction: float, message: str) -> None:
        job.progress(phase="generating", fraction=fraction, message=message)

    try:
        return pipeline.render_batch(person, garment, given, None, progress, lambda: job.cancelled)
    except GenerationInterrupted as exc:
        raise Cancelled(exc.message, hint="Submit the try-on again.") from exc


def _summary(path: Path, result: TryOnResult, note: str) -> dict:
    return {"file": str(path), "seed": result.seed, "notes": result.notes + ([note] if note else []),
            "fidelity": result.fidelity.to_dict() if result.fidelity else None, "controls": result.controls,
            "protected": result.protected}


def metadata(result: TryOnResult, params: TryOnParams, notes: list[str]) -> dict:
    return {"easyphoto_version": __version__, "garment_id": params.garment_id, "person": Path(params.person).name,
            "seed": result.seed, "fidelity": result.fidelity.to_dict() if result.fidelity else None,
            "notes": result.notes + notes, "controls": result.controls, "config": params.config.to_dict()}


def save(result: TryOnResult, params: TryOnParams, outputs_dir: Path, notes: list[str]) -> Path:
    """outputs/<yyyy-mm-dd>/<NNNNN>-tryon-<garment>.png with the infotext (PNG Info reads it) and our JSON."""
    return write_png(outputs_dir, result.image, result.infotext, metadata(result, params, notes),
                     f"tryon-{params.garment_id}")


def write_png(outputs_dir: Path, image: Image.Image, infotext: str, meta: dict, name: str) -> Path:
    """outputs/<yyyy-mm-dd>/<NNNNN>-<name>.png (the next free number), written atomically, with the infotext
    ("parameters") and our JSON ("easyphoto") as PNG text."""
    return write_numbered_png(Path(outputs_dir) / time.strftime("%Y-%m-%d"), image, infotext, meta, name)


def write_numbered_png(folder: Path, image: Image.Image, infotext: str, meta: dict, name: str) -> Path:
    """folder/<NNNNN>-<name>.png (the next free number), written atomically, with the PNG text."""
    folder.mkdir(parents=True, exist_ok=True)
    data = png_bytes(image, infotext, meta)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:48]
    while True:
        number = 1 + max((int(p.name[:5]) for p in folder.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")), default=0)
        target = folder / f"{number:05d}-{stem}.png"
        if not target.exists():
            return atomic_write_bytes(target, data)


def png_bytes(image: Image.Image, infotext: str, meta: dict) -> bytes:
    """The PNG of `image` with the infotext ("parameters", what PNG Info reads) and our JSON ("easyphoto")."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    info.add_text("easyphoto", json.dumps(meta, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _share(saved: Path, work_dir: Path) -> str:
    from easyphoto.portrait.run import _share as share

    return share(saved, work_dir)
