"""FastAPI router under /easyphoto/v1. Works on FastAPI 0.94 + pydantic 1 (A1111) and 0.112 + pydantic 2 (Forge).

Long work (photo checks, datasets, downloads, training, portraits) is submitted to the job queue and answered
with a job record at once; clients poll GET /jobs/{id} and cancel with POST /jobs/{id}/cancel. Every error is a
JSON body {error, phase, message, hint} with a 4xx status; malformed bodies get FastAPI's 422 naming the field.

The WebUI calls `install()` from `on_app_started` with a new app after every "Reload UI"; `install()` is
idempotent per app so a second call on the same app adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from easyphoto import __version__, weights
from easyphoto.api.payloads import MAX_IMAGES, decode_base64, decode_images, write_uploads
from easyphoto.config import PortraitConfig, TrainConfig
from easyphoto.context import AppContext
from easyphoto.errors import Conflict, EasyPhotoError, InvalidRequest, NotFound
from easyphoto.store import read_json

API_PREFIX = "/easyphoto/v1"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}")


# ---------------------------------------------------------------------------------------------- models


class HostModel(BaseModel):
    flavour: str
    version: str


class HealthResponse(BaseModel):
    name: str
    version: str
    api: str
    host: HostModel
    offline: bool


class WeightStatusModel(BaseModel):
    id: str
    file: str
    group: str
    purpose: str
    licence: str
    state: str
    path: str
    size: int | None = None
    detail: str = ""
    sources: list[str]
    # Added fields only (older clients ignore them): which features read the file, and whether they need it.
    features: list[str] = Field([], description="Features that read this file: training, portraits, face check, ...")
    required: bool = Field(False, description="True: those features fail without it; False: they fall back.")


class ErrorResponse(BaseModel):
    error: str
    phase: str
    message: str
    hint: str = ""


class JobModel(BaseModel):
    id: str
    kind: str
    label: str = ""
    state: str
    created: float
    started: float | None = None
    finished: float | None = None
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class IdentityModel(BaseModel):
    id: str
    photos: int
    checked: bool
    kept: int | None = None
    reference: str | None = None
    has_lora: bool
    lora_file: str


class CreateIdentityRequest(BaseModel):
    id: str = Field(..., description="Identity id: lowercase letters, digits, '_' or '-'.")
    photos: list[str] = Field([], description=f"Images as base64 or data URLs (at most {MAX_IMAGES}).")


class PhotosRequest(BaseModel):
    photos: list[str] = Field(..., description=f"Images as base64 or data URLs (at most {MAX_IMAGES}).")


class TrainStepRequest(BaseModel):
    config: TrainConfig = Field(default_factory=TrainConfig)


class TrainRequest(BaseModel):
    identity_id: str
    config: TrainConfig = Field(default_factory=TrainConfig)
    base: str | None = Field(None, description="Base checkpoint (.safetensors) or diffusers folder; when empty, the "
                                               "WebUI's selected checkpoint (standalone: models/Stable-diffusion/"
                                               "v1-5-pruned-emaonly.safetensors, model id sd15-base).")
    resume: bool = Field(False, description="Continue from the identity's last checkpoint.")


class PortraitRequest(BaseModel):
    identity_ids: list[str] = Field(..., description="The identities to render, one per chosen template face.")
    templates: list[str] = Field([], description="Template images as base64 or data URLs.")
    template_names: list[str] = Field([], description="Gallery templates by name (GET /templates), e.g. 'user/x.png'.")
    face_indices: list[int] | None = Field(None, description="Template face number (left to right, from 0) per "
                                                             "identity; default: the largest faces, left to right.")
    config: PortraitConfig = Field(default_factory=PortraitConfig)
    base: str | None = Field(None, description="Standalone only: the SD 1.5 base model (.safetensors or diffusers "
                                               "folder) the identities were trained on.")


class TemplateUpload(BaseModel):
    image: str = Field(..., description="The template photo as base64 or a data URL.")
    filename: str = Field("template.png", max_length=200)


class TemplateModel(BaseModel):
    name: str
    source: str
    file: str


class ImportRequest(BaseModel):
    bundle: str = Field(..., description="The exported zip as base64.")
    id: str | None = Field(None, description="Import under this id instead of the bundle's.")


class ModelsRequest(BaseModel):
    ids: list[str] = []
    group: str | None = None


def _dump(model: BaseModel) -> dict:
    return model.to_dict() if hasattr(model, "to_dict") else model.dict()


# ---------------------------------------------------------------------------------------------- router


def build_router(ctx: AppContext, dependencies: Sequence = ()) -> APIRouter:
    from easyphoto.operations import job_queue

    router = APIRouter(prefix=API_PREFIX, tags=["easyphoto"], dependencies=list(dependencies),
                       responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
    jobs = lambda: job_queue(ctx)  # noqa: E731 - created on first use, never at import or UI build

    @router.get("/health", response_model=HealthResponse)
    def health() -> dict:
        """Liveness and versions: cheap, loads nothing."""
        return {"name": "EasyPhoto", "version": __version__, "api": "v1", "host": ctx.host.to_dict(),
                "offline": ctx.offline}

    # ------------------------------------------------------------------ identities

    @router.get("/identities", response_model=list[IdentityModel])
    def list_identities() -> list[dict]:
        return [identity_info(ctx, i) for i in ctx.identities.list()]

    @router.post("/identities", response_model=IdentityModel, status_code=201)
    def create_identity(body: CreateIdentityRequest) -> dict:
        if ctx.identities.exists(body.id):
            from easyphoto.errors import InvalidIdentityId

            raise InvalidIdentityId(f"An identity named {body.id!r} already exists.", hint="Add photos with POST "
                                    f"{API_PREFIX}/identities/{body.id}/photos, or pick another id.")
        images = decode_images(body.photos, "photos")
        ctx.identities.create(body.id)
        _add_photos(ctx, body.id, images)
        return identity_info(ctx, body.id)

    @router.get("/identities/{identity_id}", response_model=IdentityModel)
    def get_identity(identity_id: str) -> dict:
        ctx.identities.get(identity_id)
        return identity_info(ctx, identity_id)

    @router.post("/identities/{identity_id}/photos", response_model=IdentityModel)
    def add_photos(identity_id: str, body: PhotosRequest) -> dict:
        ctx.identities.get(identity_id)
        _add_photos(ctx, identity_id, decode_images(body.photos, "photos"))
        return identity_info(ctx, identity_id)

    @router.get("/identities/{identity_id}/report")
    def get_report(identity_id: str) -> dict:
        layout = ctx.identities.get(identity_id)
        if not layout.report.is_file():
            raise Conflict(f"The photos of {identity_id!r} have not been checked yet.", phase="photos",
                                 hint=f"POST {API_PREFIX}/identities/{identity_id}/check first.")
        return read_json(layout.report)

    @router.post("/identities/{identity_id}/check", response_model=JobModel, status_code=202)
    def check_identity(identity_id: str, body: TrainStepRequest | None = None) -> dict:
        ctx.identities.get(identity_id)
        config = (body or TrainStepRequest()).config
        return jobs().submit("check_photos", {"identity_id": identity_id, "config": _dump(config)}).to_dict()

    @router.post("/identities/{identity_id}/dataset", response_model=JobModel, status_code=202)
    def prepare_identity(identity_id: str, body: TrainStepRequest | None = None) -> dict:
        ctx.identities.get(identity_id)
        config = (body or TrainStepRequest()).config
        return jobs().submit("prepare_dataset", {"identity_id": identity_id, "config": _dump(config)}).to_dict()

    @router.delete("/identities/{identity_id}", status_code=204)
    def delete_identity(identity_id: str) -> Response:
        busy = [j for j in jobs().list(limit=1000) if j.params.get("identity_id") == identity_id
                and j.state.value in ("queued", "running")]
        if busy:
            raise Conflict(f"{identity_id!r} is used by job {busy[0].id} ({busy[0].state.value}).",
                                 hint="Cancel the job or wait for it to finish.", phase="identity")
        ctx.identities.delete(identity_id)
        return Response(status_code=204)

    @router.get("/identities/{identity_id}/export", response_class=Response,
                responses={200: {"content": {"application/zip": {}}}})
    def export_identity(identity_id: str, include_dataset: bool = True) -> Response:
        from easyphoto.bundle import export_identity as export

        data = export(ctx.identities, identity_id, include_dataset=include_dataset)
        headers = {"Content-Disposition": f'attachment; filename="{identity_id}.easyphoto.zip"'}
        return Response(content=data, media_type="application/zip", headers=headers)

    @router.post("/identities/import", response_model=IdentityModel, status_code=201)
    def import_identity(body: ImportRequest) -> dict:
        from easyphoto.bundle import import_identity as load

        identity_id = load(ctx.identities, decode_base64(body.bundle, "bundle", max_bytes=4 * 1024**3), identity_id=body.id)
        return identity_info(ctx, identity_id)

    # ------------------------------------------------------------------ training and portraits

    @router.post("/train", response_model=JobModel, status_code=202)
    def train(body: TrainRequest) -> dict:
        from easyphoto.operations import submit

        ctx.identities.get(body.identity_id)
        params = {"identity_id": body.identity_id, "config": _dump(body.config), "resume": body.resume}
        if body.base:
            params["base"] = body.base
        return submit(ctx, "train", params).to_dict()

    @router.post("/portraits", response_model=JobModel, status_code=202)
    def portraits(body: PortraitRequest) -> dict:
        """Render every template (uploaded and/or from the gallery) with the identities; the result lists the
        saved portraits with their likeness scores, and GET /jobs/{id}/result returns the images."""
        from easyphoto.operations import require
        from easyphoto.portrait import templates as gallery

        if not body.identity_ids:
            raise InvalidRequest("identity_ids: name at least one identity.")
        for identity_id in body.identity_ids:
            ctx.identities.get(identity_id)
        if not body.templates and not body.template_names:
            raise InvalidRequest("Send templates (images) or template_names (from GET /templates).")
        for name in body.template_names:
            gallery.resolve(ctx.paths, name)  # 404 before any upload is written
        queue = jobs()
        require(queue, "portrait")  # before writing template files for a job that cannot run
        images = decode_images(body.templates, "templates")
        uploaded = [str(p) for p in write_uploads(images, ctx.paths.data_root / "uploads")]
        params = {"identity_ids": body.identity_ids, "templates": list(body.template_names) + uploaded,
                  "face_indices": body.face_indices, "config": _dump(body.config)}
        if body.base:
            params["base"] = body.base
        return queue.submit("portrait", params).to_dict()

    # ------------------------------------------------------------------ templates

    @router.get("/templates", response_model=list[TemplateModel])
    def list_templates() -> list[dict]:
        from easyphoto.portrait import templates as gallery

        return [t.to_dict() for t in gallery.list_templates(ctx.paths)]

    @router.post("/templates", response_model=TemplateModel, status_code=201)
    def add_template(body: TemplateUpload) -> dict:
        from easyphoto.portrait import templates as gallery

        data = decode_base64(body.image, "image")
        return gallery.add_template(ctx.paths, data, body.filename, ctx.settings.max_upload_megapixels).to_dict()

    @router.get("/templates/{source}/{name}", response_class=FileResponse)
    def template_image(source: str, name: str) -> FileResponse:
        from easyphoto.portrait import templates as gallery

        return FileResponse(gallery.resolve(ctx.paths, f"{source}/{name}"))

    @router.delete("/templates/{source}/{name}", status_code=204)
    def delete_template(source: str, name: str) -> Response:
        from easyphoto.portrait import templates as gallery

        gallery.delete_template(ctx.paths, f"{source}/{name}")
        return Response(status_code=204)

    # ------------------------------------------------------------------ jobs

    @router.get("/jobs", response_model=list[JobModel])
    def list_jobs(state: str | None = None, kind: str | None = None, limit: int = 100) -> list[dict]:
        from easyphoto.jobs import JobState

        wanted = _job_state(state, JobState) if state else None
        return [j.to_dict() for j in jobs().list(state=wanted, kind=kind, limit=max(1, min(limit, 1000)))]

    @router.get("/jobs/{job_id}", response_model=JobModel)
    def get_job(job_id: str) -> dict:
        return jobs().get(job_id).to_dict()

    @router.post("/jobs/{job_id}/cancel", response_model=JobModel)
    def cancel_job(job_id: str) -> dict:
        return jobs().cancel(job_id).to_dict()

    @router.get("/jobs/{job_id}/result")
    def job_result(job_id: str, images: str = "base64") -> dict:
        """The finished job's result; image files as base64 (default) or as URLs (images=files)."""
        record = jobs().get(job_id)
        if record.state.value != "succeeded":
            raise Conflict(f"Job {job_id} is {record.state.value}; it has no result.", phase="job",
                                 hint="Poll GET /jobs/{id} until its state is 'succeeded'.")
        return _with_images(record, images, job_id, ctx)

    @router.get("/jobs/{job_id}/files/{name}", response_class=FileResponse)
    def job_file(job_id: str, name: str) -> FileResponse:
        record = jobs().get(job_id)
        folder = ctx.paths.jobs_dir / record.id
        if not _FILE_NAME.fullmatch(name) or not (folder / name).is_file():
            raise NotFound(f"Job {job_id} has no file {name!r}.", phase="job")
        return FileResponse(folder / name)

    # ------------------------------------------------------------------ models

    @router.get("/models", response_model=list[WeightStatusModel])
    def list_models(group: str | None = None) -> list[dict]:
        """Every manifest entry with its state on disk (present / missing / corrupt)."""
        return [s.to_dict() for s in weights.status_all(ctx.paths, group)]

    @router.post("/models/fetch", response_model=JobModel, status_code=202)
    def fetch_models(body: ModelsRequest) -> dict:
        if not body.ids and not body.group:
            raise InvalidRequest("Name the model files (ids) or a group to download.", phase="models",
                                 hint=f"Groups: {', '.join(weights.GROUPS)}; ids: GET {API_PREFIX}/models.")
        if body.group and body.group not in weights.GROUPS:
            raise InvalidRequest(f"Unknown model group {body.group!r}.", phase="models",
                                 hint=f"Groups: {', '.join(weights.GROUPS)}.")
        for entry_id in body.ids:
            _weight(entry_id)
        return jobs().submit("fetch_models", {"ids": body.ids, "group": body.group}).to_dict()

    return router


def identity_info(ctx: AppContext, identity_id: str) -> dict:
    layout = ctx.identities.layout(identity_id)
    report = read_json(layout.report) if layout.report.is_file() else None
    photos = sum(1 for p in layout.photos.iterdir() if p.is_file()) if layout.photos.is_dir() else 0
    return {"id": identity_id, "photos": photos, "checked": report is not None,
            "kept": report.get("kept") if report else None, "reference": report.get("reference") if report else None,
            "has_lora": layout.lora_file.is_file(), "lora_file": str(layout.lora_file)}


def _add_photos(ctx: AppContext, identity_id: str, images: list[tuple[bytes, str]]) -> None:
    import tempfile
    from pathlib import Path

    from easyphoto.train import prepare

    with tempfile.TemporaryDirectory(prefix="easyphoto-upload-") as tmp:
        prepare.add_photos(ctx, identity_id, write_uploads(images, Path(tmp)))


def _weight(entry_id: str):
    try:
        return weights.get(entry_id)
    except KeyError as exc:
        raise NotFound(str(exc.args[0]), phase="models") from None


def _job_state(value: str, states):
    try:
        return states(value)
    except ValueError:
        raise InvalidRequest(f"Unknown job state {value!r}.", phase="job",
                             hint=f"Use one of: {', '.join(s.value for s in states)}.") from None


def _with_images(record, mode: str, job_id: str, ctx: AppContext) -> dict:
    """Replace result["images"] (file names in the job folder) by base64 strings or URLs."""
    import base64

    result = dict(record.result or {})
    names = result.get("images")
    if not isinstance(names, list):
        return result
    folder = ctx.paths.jobs_dir / record.id
    if mode == "files":
        result["images"] = [f"{API_PREFIX}/jobs/{job_id}/files/{n}" for n in names]
    else:
        result["images"] = [base64.b64encode((folder / n).read_bytes()).decode() for n in names]
    return result


def install(app: FastAPI, ctx: AppContext, dependencies: Sequence = ()) -> bool:
    """Mount the router and our error handler on `app` once. Returns False when already installed."""
    if getattr(app.state, "easyphoto_api_installed", False):
        return False
    app.include_router(build_router(ctx, dependencies))
    app.add_exception_handler(EasyPhotoError, _error_response)
    app.state.easyphoto_api_installed = True
    return True


async def _error_response(_request: Request, exc: EasyPhotoError) -> JSONResponse:
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict())
