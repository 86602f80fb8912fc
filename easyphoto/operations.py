"""The operations that run as jobs, and the one job queue per data folder that runs them.

Every front end (Train/Portrait/Models tabs, REST API, CLI) submits work here, so GPU work is serial and every run
leaves a job record. Each kind's parameters are typed (easyphoto.job_params): validated once at submit, whether
they arrive as a dict or as the model, and handed to the operation as the model.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from easyphoto import job_params
from easyphoto.context import AppContext
from easyphoto.job_params import (
    AnyGarmentParams,
    CheckPhotosParams,
    ComparePortraitParams,
    DesignParams,
    DesignTrainParams,
    DigitalModelParams,
    FetchModelsParams,
    GarmentDatasetParams,
    GarmentTrainParams,
    GenerateParams,
    PortraitParams,
    PrepareDatasetParams,
    TryOnParams,
)
from easyphoto.jobs import JobContext, JobQueue, UnknownJobKind

# Kinds whose operations arrive with later parts of EasyPhoto; submitting one before says so in plain words.
NOT_YET_AVAILABLE: dict[str, str] = {}

_queues: dict[Path, JobQueue] = {}
_lock = threading.Lock()


def job_queue(ctx: AppContext) -> JobQueue:
    """The process-wide queue for this data folder (a WebUI "Reload UI" must not start a second worker); with a
    broker (ctx.broker), the distributed queue on it, whose workers run the jobs (easyphoto.distributed)."""
    folder = ctx.paths.jobs_dir.resolve()
    with _lock:
        queue = _queues.get(folder)
        if queue is None:
            queue = _queues[folder] = _new_queue(ctx)
            register_operations(queue, ctx)
        return queue


def _new_queue(ctx: AppContext):
    broker = ctx.broker_url
    if not broker:
        return JobQueue(ctx.paths.jobs_dir, gpu_lock=ctx.gpu_lock, host=ctx.host)
    from easyphoto.distributed.queue import DistributedQueue
    from easyphoto.distributed.worker import check_data_root

    queue = DistributedQueue(ctx.paths.jobs_dir, broker)
    check_data_root(ctx, queue.store, create=True)
    return queue


def require(queue: JobQueue, kind: str) -> None:
    """Raise UnknownJobKind (HTTP 501) with a plain explanation when `kind` cannot run in this install."""
    if kind not in queue.kinds():
        message = NOT_YET_AVAILABLE.get(kind, f"No operation is registered for job kind {kind!r}.")
        raise UnknownJobKind(message, hint=f"Available here: {', '.join(queue.kinds())}.")


def refuse_while_busy(queue: JobQueue, identity_id: str, then: str, *, phase: str) -> None:
    """Conflict (409) while a queued or running job uses the identity (or garment): its files must not change under
    it."""
    from easyphoto.errors import Conflict

    busy = [j for j in queue.list(limit=1000) if identity_id in (j.params.get("identity_id"), j.params.get("garment_id"))
            and j.state.value in ("queued", "running")]  # an identity's or a garment's id: never both (store.py)
    if busy:
        raise Conflict(f"{identity_id!r} is used by job {busy[0].id} ({busy[0].state.value}).",
                       hint=f"Cancel the job or wait for it to finish, {then}.", phase=phase)


def submit(ctx: AppContext, kind: str, params: Any):
    """Queue a `kind` job; `params` is its job_params model or a dict of the same fields (InvalidRequest, HTTP 422,
    naming each bad field when it does not validate)."""
    queue = job_queue(ctx)
    require(queue, kind)
    return queue.submit(kind, job_params.parse(kind, params))


def shutdown_all() -> None:
    with _lock:
        for queue in _queues.values():
            queue.shutdown()
        _queues.clear()


# Whether each job kind needs the GPU. Only those hold the WebUI's queue lock while they run (so they never overlap
# a txt2img request); the others (face detection on small photos, cropping, downloads) run beside the WebUI.
NEEDS_GPU: dict[str, bool] = {
    "check_photos": False,
    "prepare_dataset": False,
    "fetch_models": False,
    "train": True,  # the child process trains on the GPU, and the WebUI's checkpoint is moved off it meanwhile
    "portrait": True,  # the WebUI's img2img (or diffusers) pipeline
    "portrait_compare": True,  # as "portrait", twice
    "garment_dataset": False,  # a small parsing / point model on photos, like the photo check
    "garment_train": True,  # as "train"
    "tryon": True,  # as "portrait"
    "tryon_any": True,  # its own diffusers pipeline, with the WebUI's checkpoint moved off the GPU meanwhile
    "digital_model": True,  # as "portrait"
    "generate": True,  # txt2img / img2img on the standalone backend
    "design": True,  # txt2img under the seg ControlNet, or the trained SMIS generator
    "design_train": True,  # the SMIS generator's training, in the job's thread (the WebUI's checkpoint offloaded)
}


def register_operations(queue: JobQueue, ctx: AppContext) -> None:
    def add(kind, operation, label) -> None:
        queue.register(kind, operation, label=label, gpu=NEEDS_GPU[kind], params=job_params.parser(kind))

    add("check_photos", lambda p, job: check_photos(ctx, p, job), lambda p: f"check photos of {p.identity_id}")
    add("prepare_dataset", lambda p, job: prepare_dataset(ctx, p, job), lambda p: f"dataset of {p.identity_id}")
    add("fetch_models", lambda p, job: fetch_models(ctx, p, job), lambda p: "download model files")
    from easyphoto.train.runner import train_operation  # light: the training itself runs in a child process

    add("train", lambda p, job: train_operation(ctx, p, job), lambda p: f"train {p.identity_id}")
    add("portrait", lambda p, job: portrait(ctx, p, job), lambda p: f"portrait of {', '.join(p.identity_ids)}")
    add("portrait_compare", lambda p, job: portrait_compare(ctx, p, job),
        lambda p: f"LoRA vs {p.compare.training_free_mode}: {p.identity_id}")
    add("garment_dataset", lambda p, job: garment_dataset(ctx, p, job), lambda p: f"dataset of garment {p.garment_id}")
    add("garment_train", lambda p, job: garment_train(ctx, p, job), lambda p: f"train garment {p.garment_id}")
    add("tryon", lambda p, job: tryon(ctx, p, job), lambda p: f"try-on of {p.garment_id}")
    add("tryon_any", lambda p, job: tryon_any(ctx, p, job),
        lambda p: f"try-on ({p.config.backend}) of {p.garment_id or Path(p.garment_image or '').name}")
    add("digital_model", lambda p, job: digital_model(ctx, p, job),
        lambda p: f"digital model ({p.config.mode}){f' of {p.garment_id}' if p.garment_id else ''}")
    add("generate", lambda p, job: generate(ctx, p, job), lambda p: "img2img" if p.init_image else "txt2img")
    add("design", lambda p, job: design(ctx, p, job), lambda p: f"design ({p.config.route})")
    add("design_train", lambda p, job: design_train(ctx, p, job), lambda p: f"train design {p.model_name}")


def portrait(ctx: AppContext, params: PortraitParams, job: JobContext) -> dict:
    from easyphoto.portrait.run import portrait_operation

    return portrait_operation(ctx, params, job)


def portrait_compare(ctx: AppContext, params: ComparePortraitParams, job: JobContext) -> dict:
    from easyphoto.portrait.compare import compare_operation

    return compare_operation(ctx, params, job)


def garment_dataset(ctx: AppContext, params: GarmentDatasetParams, job: JobContext) -> dict:
    from easyphoto.tryon.dataset import build_garment_dataset

    report = build_garment_dataset(ctx, params.garment_id, params.dataset, progress=_photo_progress(job, "preparing"),
                                   should_stop=lambda: job.cancelled)
    job.progress(phase="done", fraction=1.0, message=f"{len(report.kept)} of {len(report.decisions)} photos kept")
    return {"garment_id": params.garment_id, "kept": len(report.kept), "total": len(report.decisions),
            "tagger": report.tagger}


def garment_train(ctx: AppContext, params: GarmentTrainParams, job: JobContext) -> dict:
    from easyphoto.tryon.training import garment_train_operation

    return garment_train_operation(ctx, params, job)


def tryon(ctx: AppContext, params: TryOnParams, job: JobContext) -> dict:
    from easyphoto.tryon.run import tryon_operation

    return tryon_operation(ctx, params, job)


def tryon_any(ctx: AppContext, params: AnyGarmentParams, job: JobContext) -> dict:
    from easyphoto.tryon.zeroshot.run import any_garment_operation

    return any_garment_operation(ctx, params, job)


def design(ctx: AppContext, params: DesignParams, job: JobContext) -> dict:
    from easyphoto.design.run import design_operation

    return design_operation(ctx, params, job)


def design_train(ctx: AppContext, params: DesignTrainParams, job: JobContext) -> dict:
    from easyphoto.design.smis.run import design_train_operation

    return design_train_operation(ctx, params, job)


def _photo_progress(job: JobContext, phase: str):
    def report(index: int, total: int, name: str) -> None:
        job.check_cancelled()
        job.progress(phase=phase, fraction=index / max(total, 1), message=name, step=index, total=total)

    return report


def check_photos(ctx: AppContext, params: CheckPhotosParams, job: JobContext) -> dict:
    from easyphoto.train import prepare

    report = prepare.check_photos(ctx, params.identity_id, params.config, _photo_progress(job, "checking photos"))
    job.progress(phase="done", fraction=1.0, message=f"{len(report.kept)} of {len(report.decisions)} kept")
    return {"identity_id": params.identity_id, "kept": len(report.kept), "total": len(report.decisions),
            "reference": report.reference}


def prepare_dataset(ctx: AppContext, params: PrepareDatasetParams, job: JobContext) -> dict:
    from easyphoto.train import prepare

    items = prepare.prepare_identity_dataset(ctx, params.identity_id, params.config, _photo_progress(job, "preparing"))
    job.progress(phase="done", fraction=1.0, message=f"{len(items)} training images")
    return {"identity_id": params.identity_id, "images": len(items)}


def fetch_models(ctx: AppContext, params: FetchModelsParams, job: JobContext) -> dict:
    """Download missing model files (all, a group, or ids); the job fails naming each file that could not be had.
    Its first message and its result name the licences of the files it downloads. Non-commercial weights only with
    the opt-in setting: left out of "all" (skipped, with a note), refused when named."""
    from easyphoto import weights

    allow = ctx.settings.allow_noncommercial_tryon
    entries = weights.select(params.ids or None, params.group)
    ids = None if not params.ids and params.group is None else [e.id for e in entries]  # None: the whole manifest
    licences = weights.licence_lines(weights.to_download(ids, ctx.paths, allow_noncommercial=allow))
    if licences and not ctx.offline:
        job.progress(phase="licences", message="\n".join(licences))
    sizes = {e.id: e.size for e in entries}
    received: dict[str, int] = {}

    def progress(entry_id: str, done: int, total: int | None) -> None:
        received[entry_id] = done
        sizes[entry_id] = sizes.get(entry_id) or total
        known = sum(v for v in sizes.values() if v)
        fraction = sum(received.values()) / known if known and all(sizes.values()) else None
        job.progress(phase="downloading", message=entry_id, fraction=fraction)

    results = weights.fetch(ids, ctx.paths, offline=ctx.offline, progress=progress, cancel=lambda: job.cancelled,
                            allow_noncommercial=allow)
    job.check_cancelled()
    weights.raise_for_failures(results)
    return {"files": [r.to_dict() for r in results], "licences": licences}


def digital_model(ctx: AppContext, params: DigitalModelParams, job: JobContext) -> dict:
    from easyphoto.tryon.model_run import digital_model_operation

    return digital_model_operation(ctx, params, job)


def generate(ctx: AppContext, params: GenerateParams, job: JobContext) -> dict:
    from easyphoto.generate import generate_operation

    return generate_operation(ctx, params, job)
