"""The `tryon_any` job: any garment photo on a person photo through a zero-shot backend, in every host.

    result = any_garment_operation(ctx, AnyGarmentParams(person=..., garment_image=..., config=...), job)

Order, so that every mistake is said before gigabytes load: the licence gate (a non-commercial backend needs the
opt-in setting) → the photos and the mask (agnostic silhouette, clicks or a drawn mask; pipeline.prepare) → the
backend's files (downloaded when online and missing; their licence is the job's first message) → inside the WebUI,
the host's checkpoint moved off the GPU (as for training) and the host's job state entered, so its Interrupt button
stops the run between steps; the job worker already holds the host's queue lock (a GPU job kind) → the backend is
loaded, run, and unloaded again (a training or a portrait after it gets the memory back) → PNGs with the infotext,
and the backend, variant and licence in each image's metadata and the job's result.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto import __version__, weights
from easyphoto.context import AppContext
from easyphoto.errors import Cancelled, InvalidRequest
from easyphoto.generation import GenerationInterrupted
from easyphoto.imageops import load_photo, to_array
from easyphoto.job_params import AnyGarmentParams
from easyphoto.jobs import JobContext
from easyphoto.tryon.run import _share, clothes_parser, write_png
from easyphoto.tryon.zeroshot.agnostic import backend_category
from easyphoto.tryon.zeroshot.pipeline import AnyGarmentPipeline, AnyGarmentResult, GarmentImage
from easyphoto.tryon.zeroshot.registry import BackendInfo, backend_info, check_licence, weight_ids


def check_request(ctx: AppContext, params: AnyGarmentParams) -> BackendInfo:
    """Cheap checks the API and the CLI make before they submit: the backend, its licence, a garment source."""
    info = backend_info(params.config.backend)
    check_licence(info, ctx.settings)
    info.variant_for(backend_category(params.config.category), params.config.variant or None)
    if not params.garment_image and not params.garment_id:
        raise InvalidRequest("A zero-shot try-on needs the garment: give garment_image (a photo) or garment_id.",
                             phase="tryon", hint="Upload the garment photo (a product shot on white works best).")
    if params.garment_id and not params.garment_image:
        ctx.garments.get(params.garment_id)  # InvalidGarmentId / GarmentNotFound
    return info


def any_garment_operation(ctx: AppContext, params: AnyGarmentParams, job: JobContext) -> dict:
    cfg = params.config
    info = check_request(ctx, params)
    variant = info.variant_for(backend_category(cfg.category), cfg.variant or None)
    job.progress(phase="loading", fraction=0.0, message=info.describe_licence())
    person = load_photo(Path(params.person), max_megapixels=ctx.settings.max_upload_megapixels).image
    garment = garment_image(ctx, params)
    pixels = to_array(person)
    given = _given_mask(ctx, params, pixels)
    parser, note = clothes_parser(ctx, cfg.mask_source)
    pipeline = AnyGarmentPipeline(None, cfg, parser=parser)
    try:
        prepared = pipeline.prepare(pixels, given)  # input errors now, before any weight loads
    finally:
        if parser is not None:
            parser.unload()
    files = _ensure_files(ctx, info, variant, job)
    with _offloaded(ctx), _host_job(ctx, f"try-on ({info.title})") as host:
        backend = load_backend(info.name, variant, files, device=params.device, reuse_reference=cfg.reuse_reference)
        pipeline.backend = backend
        try:
            results = _render(pipeline, pixels, garment, prepared, job, host)
        finally:
            backend.unload()
    out_dir = Path(params.out) if params.out else ctx.paths.outputs_dir
    notes = [note] if note else []
    saved = [save(r, params, out_dir, notes, backend.evals.counts) for r in results]
    job.progress(phase="done", fraction=1.0, message=f"{len(saved)} try-on image(s)")
    return {"tryons": [summary(path, r, notes) for path, r in zip(saved, results, strict=True)],
            "images": [_share(path, job.work_dir) for path in saved], "backend": info.name, "variant": variant,
            "licence": results[0].licence if results else {}, "evaluations": dict(backend.evals.counts)}


def garment_image(ctx: AppContext, params: AnyGarmentParams) -> GarmentImage:
    """The garment photo given, or the stored garment's: its first dataset crop and mask when it has a dataset,
    else its first photo with its uploaded mask (or, for a product shot, the non-white pixels)."""
    limit = ctx.settings.max_upload_megapixels
    if params.garment_image:
        return GarmentImage(to_array(load_photo(Path(params.garment_image), max_megapixels=limit).image))
    layout = ctx.garments.get(params.garment_id)
    from easyphoto.store import photo_files
    from easyphoto.tryon.dataset import captions
    from easyphoto.tryon.training import crop_mask

    entries = captions(layout) if (layout.dataset / "metadata.jsonl").is_file() else []
    if entries:
        pixels = np.asarray(Image.open(layout.dataset / entries[0][0]).convert("RGB"))
        return GarmentImage(pixels, crop_mask(layout.dataset, entries[0][0], pixels))
    photos = photo_files(layout.photos)
    if not photos:
        raise InvalidRequest(f"Garment {params.garment_id!r} has no photo.", phase="tryon",
                             hint="Add a photo of the garment (Try-On → Garments), or send garment_image.")
    pixels = to_array(load_photo(photos[0], max_megapixels=limit).image)
    uploaded = layout.masks / f"{photos[0].name}.png"
    mask = None
    if uploaded.is_file():
        mask_image = Image.open(uploaded).convert("L").resize((pixels.shape[1], pixels.shape[0]), Image.NEAREST)
        mask = (np.asarray(mask_image) >= 128).astype(np.uint8) * 255
    return GarmentImage(pixels, mask)


def _given_mask(ctx: AppContext, params: AnyGarmentParams, pixels: np.ndarray) -> np.ndarray | None:
    from easyphoto.tryon.run import _segment_points, mask_input

    source = params.config.mask_source
    if source == "parsing":
        return None
    given = mask_input(ctx, params, (pixels.shape[1], pixels.shape[0]))
    if source == "points":
        return _segment_points(ctx, params, pixels)
    return given.mask


def _ensure_files(ctx: AppContext, info: BackendInfo, variant: str, job: JobContext) -> dict[str, Path]:
    """{weight id: path} of the backend's files; missing ones are downloaded when online (the job's progress names
    each file, after the licence line), or named with their sources when offline."""
    ids = weight_ids(info.name, variant)

    def progress(entry_id: str, done: int, total: int | None) -> None:
        job.check_cancelled()
        job.progress(phase="downloading", message=f"{entry_id} ({info.licence})",
                     fraction=(done / total) if total else None)

    paths = weights.ensure(ids, ctx.paths, offline=ctx.offline, progress=progress, cancel=lambda: job.cancelled,
                           allow_noncommercial=ctx.settings.allow_noncommercial_tryon)
    return dict(zip(ids, paths, strict=True))


def load_backend(name: str, variant: str, files: dict[str, Path], *, device: str | None = None,
                 reuse_reference: bool = False):
    """The backend `name` from its files ({models.json id: path}), laid out as published."""
    if name == "leffa":
        from easyphoto.tryon.zeroshot.leffa import LeffaBackend, LeffaFiles

        config_dir = files["leffa-unet-config"].parent.parent
        weights_file = files[backend_info(name).variants[variant][0]]
        return LeffaBackend(LeffaFiles(config_dir, weights_file), variant=variant, device=device,
                            reuse_reference=reuse_reference)
    if name == "catvton":
        from easyphoto.tryon.zeroshot.catvton import CatVTONBackend, CatVTONFiles

        return CatVTONBackend(CatVTONFiles(files["catvton-unet-config"].parent, files["catvton-scheduler-config"],
                                           files["catvton-vae-config"].parent,
                                           files[backend_info(name).variants[variant][0]]),
                              variant=variant, device=device)
    from easyphoto.tryon.zeroshot.ootd import OOTDBackend, OOTDFiles

    return OOTDBackend(OOTDFiles(files["ootd-vae-config"].parent.parent, files["clip-vit-large-config"].parent),
                       variant=variant, device=device)


def _offloaded(ctx: AppContext):
    from easyphoto.train.runner import _host_offload

    return _host_offload(ctx)


class _NoHostJob:
    def should_stop(self) -> bool:
        return False

    def progress(self, fraction: float, message: str) -> None:
        pass


def _host_job(ctx: AppContext, label: str):
    if ctx.host_job is None:
        return contextlib.nullcontext(_NoHostJob())
    return ctx.host_job(label)


def _render(pipeline: AnyGarmentPipeline, pixels, garment, prepared, job: JobContext, host) -> list:
    def progress(fraction: float, message: str) -> None:
        job.progress(phase="generating", fraction=fraction, message=message)
        host.progress(fraction, message)

    def should_stop() -> bool:
        return job.cancelled or host.should_stop()

    try:
        results = pipeline.render_batch(pixels, garment, prepared=prepared, progress=progress,
                                        should_stop=should_stop)
    except GenerationInterrupted as exc:
        raise Cancelled(exc.message, hint="Submit the try-on again.") from exc
    job.check_cancelled()
    return results


def metadata(result: AnyGarmentResult, params: AnyGarmentParams, notes: list[str], evaluations: dict) -> dict:
    garment = params.garment_id if params.garment_id and not params.garment_image else Path(params.garment_image).name
    return {"easyphoto_version": __version__, "kind": "tryon_any", "person": Path(params.person).name,
            "garment": garment, "config": params.config.to_dict(), "seed": result.seed, "licence": result.licence,
            "frame": list(result.frame), "working_size": list(result.size), "steps": result.steps,
            "guidance": result.guidance, "evaluations": dict(evaluations),
            "fidelity": result.fidelity.to_dict() if result.fidelity else None,
            "protected": result.protected, "notes": [*notes, *result.notes]}


def save(result: AnyGarmentResult, params: AnyGarmentParams, out_dir: Path, notes: list[str],
         evaluations: dict) -> Path:
    name = f"tryon-{result.licence['backend']}"
    return write_png(out_dir, result.image, result.infotext, metadata(result, params, notes, evaluations), name)


def summary(path: Path, result: AnyGarmentResult, notes: list[str]) -> dict:
    return {"file": str(path), "seed": result.seed, "licence": result.licence,
            "fidelity": result.fidelity.to_dict() if result.fidelity else None, "protected": result.protected,
            "notes": [*notes, *result.notes]}


__all__ = ["any_garment_operation", "check_request", "garment_image", "load_backend"]
