"""FastAPI router under /easyphoto/v1. Works on FastAPI 0.94 + pydantic 1 (A1111) and 0.112 + pydantic 2 (Forge).

Long work (photo checks, datasets, downloads, training, portraits) is submitted to the job queue and answered
with a job record at once; clients poll GET /jobs/{id} and cancel with POST /jobs/{id}/cancel. Every error is a
JSON body {error, phase, message, hint} with a 4xx status; malformed bodies get FastAPI's 422 naming the field.

The WebUI calls `install()` from `on_app_started` with a new app after every "Reload UI"; `install()` is
idempotent per app so a second call on the same app adds nothing.
"""

from __future__ import annotations

import inspect
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from easyphoto import __version__, weights
from easyphoto.api.design_editor_routes import add_design_editor_routes
from easyphoto.api.design_routes import add_design_routes
from easyphoto.api.mask_routes import add_mask_routes
from easyphoto.api.model_routes import add_model_routes
from easyphoto.api.payloads import MAX_IMAGE_MB, MAX_IMAGES, decode_base64, decode_images, read_upload, write_uploads
from easyphoto.api.schemas import JobModel, RequestModel
from easyphoto.api.tryon_routes import add_tryon_routes
from easyphoto.config import CompareConfig, PortraitConfig, TrainConfig
from easyphoto.context import AppContext
from easyphoto.errors import Conflict, EasyPhotoError, InvalidRequest, NotFound
from easyphoto.job_params import CheckPhotosParams, FetchModelsParams, PortraitParams, PrepareDatasetParams, TrainParams
from easyphoto.store import is_easyphoto_lora, read_json

API_PREFIX = "/easyphoto/v1"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}")
_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]  # catch-all routes answer every method
MAX_JOBS_LISTED = 1000  # GET /jobs?limit= accepts 1 to this
IMAGE_MODES = ("base64", "files")  # GET /jobs/{id}/result?images=
PUBLIC_PATHS = (f"{API_PREFIX}/health",)  # answered even where the rest of the API is not mounted or refused
_PHOTOS_HELP = f"Images as base64 or data URLs (image/*), at most {MAX_IMAGES} per request and {MAX_IMAGE_MB} MB each."


class NotAllowed(EasyPhotoError):
    phase = "auth"
    http_status = 403


@dataclass(frozen=True)
class Exposure:
    """How much of the API a server may offer (see easyphoto_webui.api_guard.api_exposure and easyphoto.app).

    private: mount every route (False: only PUBLIC_PATHS, and a 404 naming `hint` for the others).
    refuse: answer every non-public route with 403 (the server is reachable beyond loopback without auth).
    hint: what the user sets to get the full API."""

    private: bool = True
    refuse: bool = False
    hint: str = ""


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
    noncommercial: bool = Field(False, description="Weights published for non-commercial use only: downloaded only "
                                "with the opt-in setting allow_noncommercial_tryon.")


class ErrorResponse(BaseModel):
    error: str
    phase: str
    message: str
    hint: str = ""


class IdentityModel(BaseModel):
    id: str
    photos: int
    checked: bool
    kept: int | None = None
    reference: str | None = None
    has_lora: bool
    lora_file: str


class PhotosAddedModel(IdentityModel):
    added: int  # photos stored by this request
    already_stored: int  # photos of the request the identity already had (same bytes): not stored twice


class CreateIdentityRequest(RequestModel):
    id: str = Field(..., description="Identity id: lowercase letters, digits, '_' or '-'.")
    photos: list[str] = Field([], description=_PHOTOS_HELP)


class PhotosRequest(RequestModel):
    photos: list[str] = Field(..., description=_PHOTOS_HELP)


class TrainStepRequest(RequestModel):
    config: TrainConfig = Field(default_factory=TrainConfig)


class TrainRequest(RequestModel):
    identity_id: str
    config: TrainConfig = Field(default_factory=TrainConfig)
    base: str | None = Field(None, description="Base checkpoint (.safetensors) or diffusers folder; when empty, the "
                                               "WebUI's selected checkpoint (standalone: models/Stable-diffusion/"
                                               "v1-5-pruned-emaonly.safetensors, model id sd15-base).")
    resume: bool = Field(False, description="Continue from the identity's last checkpoint.")


class PortraitRequest(RequestModel):
    identity_ids: list[str] = Field(..., description="The identities to render, one per chosen template face.")
    templates: list[str] = Field([], description=f"Template images: {_PHOTOS_HELP}")
    template_names: list[str] = Field([], description="Gallery templates by name (GET /templates), e.g. 'user/x.png'.")
    face_indices: list[int] | None = Field(None, description="Template face number (left to right, from 0) per "
                                                             "identity; default: the largest faces, left to right.")
    config: PortraitConfig = Field(default_factory=PortraitConfig)
    base: str | None = Field(None, description="Standalone only: the SD 1.5 base model (.safetensors or diffusers "
                                               "folder) the identities were trained on.")


class CompareRequest(RequestModel):
    identity_id: str = Field(..., description="A trained identity (its LoRA is one side, its reference face the other).")
    template_name: str = Field(..., description="A gallery template (GET /templates; POST /templates adds one).")
    face_index: int | None = Field(None, description="Template face number (left to right, from 0); default: largest.")
    config: PortraitConfig = Field(default_factory=PortraitConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    base: str | None = Field(None, description="Standalone only: the base model the identity was trained on.")


class TemplateUpload(RequestModel):
    image: str = Field(..., description=f"The template photo as base64 or a data URL (image/*), at most {MAX_IMAGE_MB} MB.")
    filename: str = Field("template.png", max_length=200)


class TemplateModel(BaseModel):
    name: str
    source: str
    file: str


class ModelsRequest(RequestModel):
    ids: list[str] = []
    group: str | None = None


_IMPORT_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["bundle"],
    "properties": {"bundle": {"type": "string", "format": "binary", "description": "The exported .easyphoto.zip"},
                   "id": {"type": "string", "description": "Import under this id instead of the bundle's."}}}}}}}


def _dump(model: BaseModel) -> dict:
    return model.to_dict() if hasattr(model, "to_dict") else model.dict()


# ---------------------------------------------------------------------------------------------- router


def build_router(ctx: AppContext, dependencies: Sequence = ()) -> APIRouter:
    from easyphoto.operations import job_queue

    router = APIRouter(prefix=API_PREFIX, tags=["easyphoto"], dependencies=list(dependencies),
                       responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
    jobs = lambda: job_queue(ctx)  # noqa: E731 - created on first use, never at import or UI build
    for add_routes in (_health_routes, _identity_routes, _identity_job_routes, _generation_routes, _template_routes,
                       _job_routes, _model_routes, add_tryon_routes, add_model_routes, add_mask_routes,
                       add_design_routes, add_design_editor_routes):
        add_routes(router, ctx, jobs)
    return router


def _health_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """Liveness."""

    @router.get("/health", response_model=HealthResponse)
    def health() -> dict:
        """Liveness and versions: cheap, loads nothing."""
        return {"name": "EasyPhoto", "version": __version__, "api": "v1", "host": ctx.host.to_dict(),
                "offline": ctx.offline}


def _identity_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """Identities and their photos."""
    from easyphoto.operations import refuse_while_busy

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

    @router.post("/identities/{identity_id}/photos", response_model=PhotosAddedModel)
    def add_photos(identity_id: str, body: PhotosRequest) -> dict:
        ctx.identities.get(identity_id)
        result = _add_photos(ctx, identity_id, decode_images(body.photos, "photos"))
        return {**identity_info(ctx, identity_id), "added": len(result.added),
                "already_stored": len(result.duplicates)}

    @router.delete("/identities/{identity_id}/photos/{name}", status_code=204)
    def delete_photo(identity_id: str, name: str) -> Response:
        """Remove one photo by its name in the report (looked up among the identity's photos, never used as a path);
        the saved report forgets it and the next check or training starts from the photos left."""
        from easyphoto.train import prepare

        ctx.identities.get(identity_id)
        refuse_while_busy(jobs(), identity_id, "then remove the photo", phase="photos")
        prepare.remove_photos(ctx, identity_id, [name])
        return Response(status_code=204)

    @router.get("/identities/{identity_id}/report")
    def get_report(identity_id: str) -> dict:
        layout = ctx.identities.get(identity_id)
        if not layout.report.is_file():
            raise Conflict(f"The photos of {identity_id!r} have not been checked yet.", phase="photos",
                                 hint=f"POST {API_PREFIX}/identities/{identity_id}/check first.")
        return read_json(layout.report)


def _identity_job_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """Photo checks and datasets (jobs), deletion, export and import of an identity."""
    from easyphoto.operations import refuse_while_busy

    @router.post("/identities/{identity_id}/check", response_model=JobModel, status_code=202)
    def check_identity(identity_id: str, body: TrainStepRequest | None = None) -> dict:
        ctx.identities.get(identity_id)
        config = (body or TrainStepRequest()).config
        params = CheckPhotosParams.checked({"identity_id": identity_id, "config": _dump(config)})
        return jobs().submit("check_photos", params).to_dict()

    @router.post("/identities/{identity_id}/dataset", response_model=JobModel, status_code=202)
    def prepare_identity(identity_id: str, body: TrainStepRequest | None = None) -> dict:
        ctx.identities.get(identity_id)
        config = (body or TrainStepRequest()).config
        params = PrepareDatasetParams.checked({"identity_id": identity_id, "config": _dump(config)})
        return jobs().submit("prepare_dataset", params).to_dict()

    @router.delete("/identities/{identity_id}", status_code=204)
    def delete_identity(identity_id: str) -> Response:
        refuse_while_busy(jobs(), identity_id, "then delete it", phase="identity")
        notes = ctx.identities.delete(identity_id)
        if notes:  # e.g. a LoRA of that name EasyPhoto did not write was left in place: say so, not only in the log
            return JSONResponse({"deleted": identity_id, "notes": notes})
        return Response(status_code=204)

    @router.get("/identities/{identity_id}/export", response_class=Response,
                responses={200: {"content": {"application/zip": {}}}})
    def export_identity(identity_id: str, include_dataset: bool = True) -> Response:
        from easyphoto.bundle import export_identity as export

        data = export(ctx.identities, identity_id, include_dataset=include_dataset)
        headers = {"Content-Disposition": f'attachment; filename="{identity_id}.easyphoto.zip"'}
        return Response(content=data, media_type="application/zip", headers=headers)

    @router.post("/identities/import", response_model=IdentityModel, status_code=201, openapi_extra=_IMPORT_BODY)
    async def import_identity(request: Request) -> dict:
        """The zip from GET /identities/{id}/export as a multipart file field `bundle` (optional text field `id`:
        import under this id). Spooled to a temporary file while it arrives; refused past the size limit."""
        from starlette.concurrency import run_in_threadpool

        from easyphoto import bundle

        form, fields = await read_upload(request, "bundle", max_bytes=bundle.MAX_BUNDLE_BYTES, text_fields=("id",))
        try:
            upload = form.get("bundle")
            identity_id = await run_in_threadpool(bundle.import_identity, ctx.identities, upload.file,
                                                  identity_id=fields.get("id"))
        finally:
            await form.close()
        return identity_info(ctx, identity_id)


def _generation_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """Training and portraits (jobs)."""

    @router.post("/train", response_model=JobModel, status_code=202)
    def train(body: TrainRequest) -> dict:
        from easyphoto.operations import submit
        from easyphoto.train.runner import base_model

        ctx.identities.get(body.identity_id)
        params = TrainParams.checked({"identity_id": body.identity_id, "config": _dump(body.config),
                                      "resume": body.resume, "base": body.base or None})
        base_model(ctx, params)  # no base, or a path that is not there: 4xx now, not a failed job later
        return submit(ctx, "train", params).to_dict()

    @router.post("/portraits", response_model=JobModel, status_code=202)
    def portraits(body: PortraitRequest) -> dict:
        """Render every template (uploaded and/or from the gallery) with the identities; the result lists the
        saved portraits with their likeness scores, and GET /jobs/{id}/result returns the images."""
        from easyphoto.operations import require
        from easyphoto.portrait import templates as gallery

        if not body.identity_ids:
            raise InvalidRequest("identity_ids: name at least one identity.")
        from easyphoto.portrait.run import require_ready

        if not body.templates and not body.template_names:
            raise InvalidRequest("Send templates (images) or template_names (from GET /templates).")
        for identity_id in body.identity_ids:
            # 404 unknown, 409 not trained (or, training-free, no checked photos): before any upload is written
            require_ready(ctx, identity_id, body.config.identity_mode)
        for name in body.template_names:
            gallery.resolve(ctx.paths, name)  # 404 before any upload is written
        queue = jobs()
        require(queue, "portrait")  # before writing template files for a job that cannot run
        images = decode_images(body.templates, "templates")
        params = PortraitParams.checked({"identity_ids": body.identity_ids, "templates": list(body.template_names),
                                         "face_indices": body.face_indices, "config": _dump(body.config),
                                         "base": body.base or None})
        return _submit_with_uploads(ctx, queue, params, images).to_dict()

    @router.post("/portraits/compare", response_model=JobModel, status_code=202)
    def compare_portraits(body: CompareRequest) -> dict:
        """Render one gallery template with the identity's LoRA and training-free (same seed and settings); the
        result holds both portraits with their likeness scores, GET /jobs/{id}/result returns both images."""
        from easyphoto.job_params import ComparePortraitParams
        from easyphoto.operations import require
        from easyphoto.portrait.compare import check_request

        params = ComparePortraitParams.checked({
            "identity_id": body.identity_id, "template": body.template_name, "face_index": body.face_index,
            "config": _dump(body.config), "compare": _dump(body.compare), "base": body.base or None})
        check_request(ctx, params)  # 404 unknown identity or template, 409 untrained or no reference face
        queue = jobs()
        require(queue, "portrait_compare")
        return queue.submit("portrait_compare", params).to_dict()


def _template_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """The template gallery."""

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


def _job_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """The job queue: list, state, cancel, results and output files."""

    @router.get("/jobs", response_model=list[JobModel])
    def list_jobs(state: str | None = Query(None, description="queued, running, succeeded, failed or cancelled"),
                  kind: str | None = Query(None, description="A job kind, e.g. train, portrait, check_photos"),
                  limit: int = Query(100, description=f"1 to {MAX_JOBS_LISTED}")) -> list[dict]:
        from easyphoto.jobs import JobState

        wanted = _job_state(state, JobState) if state is not None else None
        queue = jobs()
        if kind is not None and kind not in queue.kinds():
            raise InvalidRequest(f"kind: unknown job kind {kind!r}.", phase="job",
                                 hint=f"Use one of: {', '.join(queue.kinds())}.")
        if not 1 <= limit <= MAX_JOBS_LISTED:
            raise InvalidRequest(f"limit: {limit} is out of range; use 1 to {MAX_JOBS_LISTED}.", phase="job")
        return [j.to_dict() for j in queue.list(state=wanted, kind=kind, limit=limit)]

    @router.get("/jobs/{job_id}", response_model=JobModel)
    def get_job(job_id: str) -> dict:
        return jobs().get(job_id).to_dict()

    @router.post("/jobs/{job_id}/cancel", response_model=JobModel)
    def cancel_job(job_id: str) -> dict:
        return jobs().cancel(job_id).to_dict()

    @router.get("/jobs/{job_id}/result")
    def job_result(job_id: str, images: str = Query("base64", description="base64 or files")) -> dict:
        """The finished job's result; image files as base64 (default) or as URLs (images=files)."""
        if images not in IMAGE_MODES:
            raise InvalidRequest(f"images: {images!r} is not accepted; use images=base64 or images=files.",
                                 phase="job")
        record = jobs().get(job_id)
        if record.state.value != "succeeded":
            raise Conflict(f"Job {job_id} is {record.state.value}; it has no result.", phase="job",
                                 hint="Poll GET /jobs/{id} until its state is 'succeeded'.")
        return _with_images(record, images, job_id, ctx)

    @router.get("/jobs/{job_id}/files/{name}", response_class=FileResponse)
    def job_file(job_id: str, name: str) -> FileResponse:
        record = jobs().get(job_id)
        folder = ctx.paths.jobs_dir / record.id
        # Outputs only: the job folder also holds internal files (spec.json, child.log) with server paths.
        if name not in _output_names(record) or not (folder / name).is_file():
            raise NotFound(f"Job {job_id} has no output file {name!r}.", phase="job",
                           hint=f"GET {API_PREFIX}/jobs/{job_id}/result?images=files lists them.")
        return FileResponse(folder / name)


def _model_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """Model files: state on disk and downloads (a job)."""

    @router.get("/models", response_model=list[WeightStatusModel])
    def list_models(group: str | None = Query(None, description=f"One of: {', '.join(weights.GROUPS)}")) -> list[dict]:
        """Every manifest entry with its state on disk (present / missing / corrupt)."""
        if group is not None and group not in weights.GROUPS:
            raise InvalidRequest(f"group: unknown model group {group!r}.", phase="models",
                                 hint=f"Groups: {', '.join(weights.GROUPS)}.")
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
        return jobs().submit("fetch_models", FetchModelsParams.checked({"ids": body.ids, "group": body.group})).to_dict()



def identity_info(ctx: AppContext, identity_id: str) -> dict:
    layout = ctx.identities.layout(identity_id)
    report = read_json(layout.report) if layout.report.is_file() else None
    photos = sum(1 for p in layout.photos.iterdir() if p.is_file()) if layout.photos.is_dir() else 0
    return {"id": identity_id, "photos": photos, "checked": report is not None,
            "kept": report.get("kept") if report else None, "reference": report.get("reference") if report else None,
            "has_lora": layout.lora_file.is_file() and is_easyphoto_lora(layout.lora_file),  # not a namesake's
            "lora_file": str(layout.lora_file)}


def _add_photos(ctx: AppContext, identity_id: str, images: list[tuple[bytes, str]]):
    """Store decoded uploads; they carry no file name, so each is named by its place in the request and the format
    its bytes really are (upload_00.jpg). Returns prepare.AddedPhotos: photos already stored are not stored again."""
    from easyphoto.train import prepare

    return prepare.add_photos(ctx, identity_id, [(f"upload_{i:02d}", data) for i, (data, _) in enumerate(images)])


def _weight(entry_id: str):
    try:
        return weights.get(entry_id)
    except KeyError as exc:
        raise NotFound(str(exc.args[0]), phase="models") from None


def _job_state(value: str, states):
    try:
        return states(value)
    except ValueError:
        raise InvalidRequest(f"state: unknown job state {value!r}.", phase="job",
                             hint=f"Use one of: {', '.join(s.value for s in states)}.") from None


def _output_names(record) -> list[str]:
    """The files of a job that clients may fetch: the images its result lists, nothing else in its folder."""
    names = (record.result or {}).get("images")
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and _FILE_NAME.fullmatch(n) and n.lower().endswith(_OUTPUT_SUFFIXES)]


def _with_images(record, mode: str, job_id: str, ctx: AppContext) -> dict:
    """Replace result["images"] (file names in the job folder) by base64 strings or URLs."""
    import base64

    result = dict(record.result or {})
    if not isinstance(result.get("images"), list):
        return result
    names = _output_names(record)
    folder = ctx.paths.jobs_dir / record.id
    if mode == "files":
        result["images"] = [f"{API_PREFIX}/jobs/{job_id}/files/{n}" for n in names]
        return result
    try:
        result["images"] = [base64.b64encode((folder / n).read_bytes()).decode() for n in names]
    except OSError:
        raise Conflict(f"The images of job {job_id} are no longer on disk.", phase="job",
                       hint="Run the job again.") from None
    return result


def _submit_with_uploads(ctx: AppContext, queue, params: PortraitParams, images: list[tuple[bytes, str]]):
    """Submit a portrait job whose uploaded templates live in their own folder, removed when the job ends."""
    from easyphoto.portrait import templates as gallery

    unfinished = [t for j in queue.list(limit=MAX_JOBS_LISTED) if not j.is_final
                  for t in j.params.get("templates") or [] if isinstance(t, str)]
    gallery.sweep_uploads(ctx.paths, unfinished)  # what a crash or kill left behind
    if not images:
        return queue.submit("portrait", params)
    folder = gallery.new_upload_folder(ctx.paths)
    try:
        uploaded = [str(p) for p in write_uploads(images, folder)]
        record = queue.submit("portrait", params.updated(templates=[*params.templates, *uploaded]))
    except BaseException:
        gallery.remove_upload_folder(ctx.paths, folder)
        raise

    def remove_when_done() -> None:
        queue.wait(record.id)
        gallery.remove_upload_folder(ctx.paths, folder)

    threading.Thread(target=remove_when_done, name=f"easyphoto-uploads-{record.id}", daemon=True).start()
    return record


def install(app: FastAPI, ctx: AppContext, dependencies: Sequence = (), *, exposure: Exposure = Exposure()) -> bool:
    """Mount the router and our error handlers on `app` once. Returns False when already installed.

    `dependencies` (authentication) apply to every route; `exposure` decides which routes exist and whether
    they answer (see Exposure)."""
    if getattr(app.state, "easyphoto_api_installed", False):
        return False
    app.include_router(_exposed(build_router(ctx), dependencies, exposure))
    app.add_exception_handler(EasyPhotoError, _error_response)
    previous = app.exception_handlers.get(RequestValidationError)
    app.add_exception_handler(RequestValidationError, _validation_handler(previous))
    app.state.easyphoto_api_installed = True
    return True


def _exposed(router: APIRouter, dependencies: Sequence, exposure: Exposure) -> APIRouter:
    """The routes of `router` split into public ones (PUBLIC_PATHS) and the rest, each with its guards."""
    public, private = APIRouter(), APIRouter()
    for route in router.routes:
        (public if getattr(route, "path", "") in PUBLIC_PATHS else private).routes.append(route)
    exposed = APIRouter()
    exposed.include_router(public, dependencies=list(dependencies))
    if exposure.private:
        guard = [Depends(_refuse(exposure.hint))] if exposure.refuse else []
        exposed.include_router(private, dependencies=[*dependencies, *guard])
        # last, so it only answers what no route matched: our error shape naming the route, not {"detail": ...}
        exposed.add_api_route(API_PREFIX + "/{path:path}", _no_such_route, include_in_schema=False,
                              methods=_ANY_METHOD, dependencies=[*dependencies, *guard])
    else:
        exposed.add_api_route(API_PREFIX + "/{path:path}", _not_mounted(exposure.hint), include_in_schema=False,
                              methods=_ANY_METHOD, dependencies=list(dependencies))
    return exposed


def _no_such_route(request: Request, path: str) -> None:
    raise NotFound(f"There is no API route {request.method} {API_PREFIX}/{path} (or it does not take "
                   f"{request.method}).", phase="request", hint="The routes are listed at /docs.")


def _refuse(hint: str):
    def refuse() -> None:
        raise NotAllowed("EasyPhoto's API is reachable from other machines without authentication, so it "
                         "refuses this request (only /health answers).", hint=hint)

    return refuse


def _not_mounted(hint: str):
    def not_mounted(path: str) -> None:
        raise NotFound(f"{API_PREFIX}/{path} is not served: only {', '.join(PUBLIC_PATHS)} is.", phase="api",
                       hint=hint)

    return not_mounted


async def _error_response(_request: Request, exc: EasyPhotoError) -> JSONResponse:
    return JSONResponse(status_code=exc.http_status, content=exc.to_dict())


def _validation_handler(previous):
    """422 for our routes as {error, phase, message, hint, detail}: the message names the fields, and the details
    are made JSON-safe (pydantic 2 echoes the input, and a NaN in it made the default handler fail with a 500).
    Other routes of a host app keep their previous handler."""

    async def handle(request: Request, exc: RequestValidationError):
        # ours: the API, and the routes the standalone app adds (its /sdapi/v1; inside the WebUI that is the host's)
        prefixes = (API_PREFIX, *getattr(request.app.state, "easyphoto_extra_prefixes", ()))
        path = request.scope.get("path", "") + "/"
        if not any(path.startswith(prefix + "/") for prefix in prefixes) and previous is not None:
            answer = previous(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        detail = _json_safe(list(exc.errors()))
        body = {"error": "InvalidRequest", "phase": "request", "message": _summary(detail),
                "hint": f"See the request schemas at /docs; limits: {MAX_IMAGES} images per request, "
                        f"{MAX_IMAGE_MB} MB each.", "detail": detail}
        return JSONResponse(status_code=422, content=body)

    return handle


def _summary(errors: list, shown: int = 3) -> str:
    parts = [_describe(e) for e in errors[:shown]]
    more = f" (and {len(errors) - shown} more)" if len(errors) > shown else ""
    return "; ".join(parts) + more if parts else "The request is not valid."


def _describe(error: Any) -> str:
    """'config.learning_rate: must be a finite number, not nan', 'limit (query parameter): ...'."""
    if not isinstance(error, dict):
        return str(error)
    loc = [str(p) for p in error.get("loc") or []]
    where = ""
    if loc and loc[0] in ("query", "path", "header", "cookie"):
        where, loc = f" ({loc[0]} parameter)", loc[1:]
    elif loc and loc[0] == "body":
        loc = loc[1:]
    text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") in ("extra_forbidden", "value_error.extra"):
        text = "unknown field; it is not part of this request"
    return f"{'.'.join(loc) or 'body'}{where}: {text}"


def _json_safe(value: Any, depth: int = 0) -> Any:
    """`value` with every non-finite float spelled out, long strings cut and unknown objects as text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if depth > 6:
        return "..."
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value[:50]]
    return _json_safe(str(value), depth + 1)
