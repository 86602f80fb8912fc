"""Garments and try-on under /easyphoto/v1 (issue 13): the same shapes as identities and portraits.

    GET/POST /garments, GET/DELETE /garments/{id}, POST /garments/{id}/photos, DELETE /garments/{id}/photos/{name}
    PUT/DELETE /garments/{id}/masks/{photo}      an uploaded garment mask for one photo (white = garment)
    PUT /garments/{id}/points/{photo}            clicks and boxes for the point segmenter
    POST /garments/{id}/dataset                  job: cut out + caption (GarmentDatasetConfig)
    GET /garments/{id}/report, GET/PUT /garments/{id}/captions
    POST /garments/{id}/train                    job: dataset when out of date, then the garment LoRA
    POST /tryon                                  job: a trained garment on a person photo (backend 'lora', TryOnConfig),
                                                 or any garment photo without training (backend 'leffa', 'catvton' or
                                                 'ootd', AnyGarmentConfig; issue 15)
    GET /tryon/backends                          the zero-shot backends: licence, defaults, files, allowed or not
    GET /tryon/config-schema?backend=            the JSON schema of POST /tryon's config for that backend
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from easyphoto.api.payloads import MAX_IMAGE_MB, decode_base64, decode_images, sniff_suffix, write_uploads
from easyphoto.api.schemas import JobModel, RequestModel
from easyphoto.config import AnyGarmentConfig, TrainConfig, TryOnConfig, describe_errors
from easyphoto.context import AppContext
from easyphoto.errors import Conflict, InvalidRequest
from easyphoto.job_params import AnyGarmentParams, GarmentDatasetParams, GarmentTrainParams, TryOnParams
from easyphoto.store import is_easyphoto_lora, read_json
from easyphoto.tryon.dataset import GarmentDatasetConfig

_IMAGES = "Images as base64 or data URLs (image/*)."


class GarmentModel(BaseModel):
    id: str
    photos: int
    masks: int = Field(..., description="Photos with an uploaded garment mask.")
    dataset_images: int
    kept: int | None = None
    category: str | None = None
    has_lora: bool
    lora_file: str


class CreateGarmentRequest(RequestModel):
    id: str = Field(..., description="Garment id: lowercase letters, digits, '_' or '-' (not an identity's id).")
    photos: list[str] = Field([], description=_IMAGES)


class GarmentPhotosRequest(RequestModel):
    photos: list[str] = Field(..., description=_IMAGES)


class MaskRequest(RequestModel):
    mask: str = Field(..., description=f"The mask image (white = garment), the photo's size; at most {MAX_IMAGE_MB} MB.")


class PointsRequest(RequestModel):
    points: list[tuple[float, float, bool]] = Field([], description="Clicks [x, y, positive] in photo pixels.")
    boxes: list[tuple[float, float, float, float]] = Field([], description="Boxes [x0, y0, x1, y1] in photo pixels.")


class CaptionRequest(RequestModel):
    file_name: str = Field(..., description="The training image as GET .../captions names it (train/0.png).")
    text: str = Field(..., description="Its new caption.")


class GarmentDatasetRequest(RequestModel):
    dataset: GarmentDatasetConfig = Field(default_factory=GarmentDatasetConfig)


class GarmentTrainRequest(RequestModel):
    dataset: GarmentDatasetConfig = Field(default_factory=GarmentDatasetConfig)
    config: TrainConfig = Field(default_factory=TrainConfig)
    base: str | None = Field(None, description="Base checkpoint; empty: the WebUI's selected one (standalone: the "
                                               "SD 1.5 base, model id sd15-base).")
    resume: bool = False


class TryOnRequest(RequestModel):
    backend: Literal["lora", "leffa", "catvton", "ootd"] = Field(
        "lora", description="lora: a trained garment (garment_id; config is TryOnConfig). leffa, catvton, ootd: any "
                            "garment photo without training (garment_image or garment_id; config is AnyGarmentConfig; "
                            "GET /tryon/backends lists their licences: catvton and ootd are non-commercial only).")
    garment_id: str | None = Field(None, description="lora: the trained garment (required). Zero-shot: a stored "
                                                     "garment whose photo is used when no garment_image is sent.")
    garment_image: str | None = Field(None, description="Zero-shot backends: the garment photo as base64 or a data "
                                                        "URL (a product shot on white works best).")
    person: str = Field(..., description="The person photo as base64 or a data URL (image/*).")
    mask: str | None = Field(None, description="With mask_source 'mask': the garment region (white), photo-sized.")
    points: list[tuple[float, float, bool]] = Field([], description="With mask_source 'points': [x, y, positive].")
    boxes: list[tuple[float, float, float, float]] = Field([], description="With mask_source 'points'.")
    config: dict[str, Any] = Field(default_factory=dict, description="The backend's config: TryOnConfig fields for "
                                   "'lora', AnyGarmentConfig fields for a zero-shot backend (its 'backend' field may be "
                                   "left out: the request's backend is used); empty: the defaults.")
    base: str | None = Field(None, description="Standalone, backend 'lora' only: the SD 1.5 base the garment was "
                                               "trained on.")


class TryOnBackendModel(BaseModel):
    name: str
    title: str
    licence: str
    licence_line: str = Field(..., description="What the UI and the CLI show before anything is downloaded.")
    commercial_use: bool
    note: str
    steps: int = Field(..., description="Its default number of sampling steps.")
    guidance: float = Field(..., description="Its default guidance scale.")
    default_variant: str
    variants: list[str]
    categories: dict[str, list[str]] = Field(..., description="Per variant, the categories it was trained on.")
    files_present: bool = Field(..., description="Every file of its default variant is on disk.")
    missing_files: list[str] = Field(..., description="models.json ids not on disk (fetched by the first job when "
                                                      "online, or `python -m easyphoto models fetch --group GROUP`).")
    group: str
    allowed: bool = Field(..., description="The current settings let it run (non-commercial weights need the opt-in "
                                           "setting named in 'setting').")
    setting: str


def _dump(model) -> dict[str, Any]:
    return model.to_dict() if hasattr(model, "to_dict") else model.dict()


def add_tryon_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    for add in (_garment_routes, _garment_mask_routes, _garment_job_routes, _tryon_route):
        add(router, ctx, jobs)


def garment_info(ctx: AppContext, garment_id: str) -> dict:
    from easyphoto.train.runner import dataset_images
    from easyphoto.tryon.garments import uploaded_masks

    layout = ctx.garments.layout(garment_id)
    report = read_json(layout.report) if layout.report.is_file() else None
    info = read_json(layout.garment_json) if layout.garment_json.is_file() else {}
    photos = sum(1 for p in layout.photos.iterdir() if p.is_file()) if layout.photos.is_dir() else 0
    category = info.get("category") or ((report or {}).get("settings") or {}).get("category")
    return {"id": garment_id, "photos": photos, "masks": len(uploaded_masks(layout)),
            "dataset_images": len(dataset_images(layout.dataset)), "kept": report.get("kept") if report else None,
            "category": category, "has_lora": layout.lora_file.is_file() and is_easyphoto_lora(layout.lora_file),
            "lora_file": str(layout.lora_file)}


def _add_photos(ctx: AppContext, garment_id: str, images: list[tuple[bytes, str]]):
    from easyphoto.tryon import garments

    return garments.add_photos(ctx, garment_id, [(f"upload_{i:02d}", data) for i, (data, _) in enumerate(images)])


def _garment_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    from easyphoto.operations import refuse_while_busy

    @router.get("/garments", response_model=list[GarmentModel])
    def list_garments() -> list[dict]:
        return [garment_info(ctx, g) for g in ctx.garments.list()]

    @router.post("/garments", response_model=GarmentModel, status_code=201)
    def create_garment(body: CreateGarmentRequest) -> dict:
        images = decode_images(body.photos, "photos")  # bad base64 is said before the garment exists
        if images and not ctx.garments.exists(body.id):
            _add_photos(ctx, body.id, images)  # creates it only once every upload decoded as an image
        else:
            ctx.garments.create(body.id)  # "already exists", an identity's id, or a garment without photos yet
        return garment_info(ctx, body.id)

    @router.get("/garments/{garment_id}", response_model=GarmentModel)
    def get_garment(garment_id: str) -> dict:
        ctx.garments.get(garment_id)
        return garment_info(ctx, garment_id)

    @router.delete("/garments/{garment_id}", status_code=204)
    def delete_garment(garment_id: str) -> Response:
        refuse_while_busy(jobs(), garment_id, "then delete it", phase="garment")
        notes = ctx.garments.delete(garment_id)
        if notes:  # e.g. a LoRA of that name EasyPhoto did not write was left in place: say so, as for identities
            from fastapi.responses import JSONResponse

            return JSONResponse({"deleted": garment_id, "notes": notes})
        return Response(status_code=204)

    @router.post("/garments/{garment_id}/photos", response_model=GarmentModel)
    def add_garment_photos(garment_id: str, body: GarmentPhotosRequest) -> dict:
        ctx.garments.get(garment_id)
        _add_photos(ctx, garment_id, decode_images(body.photos, "photos"))
        return garment_info(ctx, garment_id)

    @router.delete("/garments/{garment_id}/photos/{name}", status_code=204)
    def delete_garment_photo(garment_id: str, name: str) -> Response:
        from easyphoto.tryon import garments

        ctx.garments.get(garment_id)
        refuse_while_busy(jobs(), garment_id, "then remove the photo", phase="photos")
        garments.remove_photos(ctx, garment_id, [name])
        return Response(status_code=204)


def _garment_mask_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    """Masks and clicks are refused while a job uses the garment: a dataset build records what it was made from."""
    from easyphoto.operations import refuse_while_busy
    from easyphoto.tryon import garments

    @router.put("/garments/{garment_id}/masks/{photo}", status_code=204)
    def put_mask(garment_id: str, photo: str, body: MaskRequest) -> Response:
        data = decode_base64(body.mask, "mask")
        refuse_while_busy(jobs(), garment_id, "then change its masks", phase="garment")
        garments.add_mask(ctx, garment_id, photo, (f"mask.{sniff_suffix(data)}", data))
        return Response(status_code=204)

    @router.delete("/garments/{garment_id}/masks/{photo}", status_code=204)
    def delete_mask(garment_id: str, photo: str) -> Response:
        refuse_while_busy(jobs(), garment_id, "then change its masks", phase="garment")
        garments.remove_mask(ctx, garment_id, photo)
        return Response(status_code=204)

    @router.put("/garments/{garment_id}/points/{photo}", status_code=204)
    def put_points(garment_id: str, photo: str, body: PointsRequest) -> Response:
        from easyphoto.segment.types import Point

        refuse_while_busy(jobs(), garment_id, "then change its clicks", phase="garment")
        points = [Point(x, y, positive) for x, y, positive in body.points]
        garments.set_points(ctx, garment_id, photo, points, [tuple(b) for b in body.boxes])
        return Response(status_code=204)

    @router.get("/garments/{garment_id}/report")
    def garment_report(garment_id: str) -> dict:
        layout = ctx.garments.get(garment_id)
        if not layout.report.is_file():
            raise Conflict(f"The dataset of garment {garment_id!r} has not been built yet.", phase="dataset",
                           hint=f"POST /easyphoto/v1/garments/{garment_id}/dataset first.")
        return read_json(layout.report)

    @router.get("/garments/{garment_id}/captions")
    def get_captions(garment_id: str) -> list[dict]:
        from easyphoto.tryon.dataset import captions

        layout = ctx.garments.get(garment_id)
        if not (layout.dataset / "metadata.jsonl").is_file():  # as the report: not built yet is a 409, not a 404
            raise Conflict(f"The dataset of garment {garment_id!r} has not been built yet.", phase="dataset",
                           hint=f"POST /easyphoto/v1/garments/{garment_id}/dataset first.")
        return [{"file_name": name, "text": text} for name, text in captions(layout)]

    @router.put("/garments/{garment_id}/captions")
    def put_caption(garment_id: str, body: CaptionRequest) -> dict:
        from easyphoto.tryon.dataset import set_caption

        return {"file_name": body.file_name, "text": set_caption(ctx.garments.get(garment_id), body.file_name,
                                                                 body.text)}


def _garment_job_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    @router.post("/garments/{garment_id}/dataset", response_model=JobModel, status_code=202)
    def garment_dataset(garment_id: str, body: GarmentDatasetRequest | None = None) -> dict:
        from easyphoto.tryon.dataset import collect_inputs

        dataset = (body or GarmentDatasetRequest()).dataset
        collect_inputs(ctx.garments.get(garment_id), dataset)  # no photos, or no masks for source 'mask': 400 now
        params = GarmentDatasetParams.checked({"garment_id": garment_id, "dataset": _dump(dataset)})
        return jobs().submit("garment_dataset", params).to_dict()

    @router.post("/garments/{garment_id}/train", response_model=JobModel, status_code=202)
    def garment_train(garment_id: str, body: GarmentTrainRequest | None = None) -> dict:
        from easyphoto.operations import submit
        from easyphoto.train.runner import base_model

        ctx.garments.get(garment_id)
        body = body or GarmentTrainRequest()
        params = GarmentTrainParams.checked({"garment_id": garment_id, "dataset": _dump(body.dataset),
                                             "config": _dump(body.config), "base": body.base or None,
                                             "resume": body.resume})
        base_model(ctx, params)  # no base: 4xx now, not a failed job later
        return submit(ctx, "garment_train", params).to_dict()


def _tryon_route(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    @router.post("/tryon", response_model=JobModel, status_code=202)
    def tryon(body: TryOnRequest) -> dict:
        """Put a trained garment (backend 'lora') or any garment photo (a zero-shot backend) on the person photo;
        GET /jobs/{id}/result returns the images and their garment fidelity scores."""
        config = _request_config(body)
        if body.backend != "lora":
            return _submit_any_garment(ctx, jobs, body, config).to_dict()
        from easyphoto.operations import require
        from easyphoto.tryon.run import require_trained_garment

        _check_lora_request(body)
        require_trained_garment(ctx, body.garment_id)  # 404 / 409 before any upload is written
        _check_mask_source(body, config.mask_source)
        queue = jobs()
        require(queue, "tryon")
        images = [decode_base64(body.person, "person")] + ([decode_base64(body.mask, "mask")] if body.mask else [])
        _check_tryon_images(ctx, body, images)
        images = [(data, sniff_suffix(data)) for data in images]
        params = {"garment_id": body.garment_id, "person": "pending", "points": body.points, "boxes": body.boxes,
                  "config": config.to_dict(), "base": body.base or None}
        return _submit_with_uploads(ctx, queue, params, images).to_dict()

    @router.get("/tryon/config-schema")
    def tryon_config_schema(backend: str = "lora") -> dict:
        """The JSON schema of POST /tryon's `config` for `backend`: TryOnConfig for 'lora', AnyGarmentConfig for a
        zero-shot backend (the request body types `config` loosely, so that a bad field is named for the right one)."""
        if backend != "lora":
            from easyphoto.tryon.zeroshot.registry import backend_info

            backend_info(backend)  # 422 naming the known backends
        return (TryOnConfig if backend == "lora" else AnyGarmentConfig).json_schema()

    @router.get("/tryon/backends", response_model=list[TryOnBackendModel])
    def tryon_backends() -> list[dict]:
        """The zero-shot backends (POST /tryon with backend = name): licence, defaults, variants, whether their files
        are on disk and whether the current settings allow them. Nothing is downloaded or loaded."""
        from easyphoto.tryon.backend_status import backend_status
        from easyphoto.tryon.zeroshot.registry import BACKENDS, LICENCE_SETTING

        allow = bool(getattr(ctx.settings, LICENCE_SETTING))
        return [backend_status(ctx, name, allow_noncommercial=allow) for name in BACKENDS]


def _request_config(body: TryOnRequest) -> TryOnConfig | AnyGarmentConfig:
    """body.config as the backend's config (TryOnConfig for 'lora', else AnyGarmentConfig with the backend set);
    a bad field is a 422 naming it, before anything else is looked at."""
    model = TryOnConfig if body.backend == "lora" else AnyGarmentConfig
    given = dict(body.config)
    if model is AnyGarmentConfig and given.setdefault("backend", body.backend) != body.backend:
        raise InvalidRequest(f"config.backend is {given['backend']!r} but backend is {body.backend!r}.",
                             phase="tryon", hint="Leave config.backend out: the request's backend chooses it.")
    try:
        return model.from_dict(given)
    except ValueError as exc:  # pydantic's ValidationError on both versions
        raise InvalidRequest(f"config ({model.__name__} for backend {body.backend!r}): {describe_errors(exc)}.",
                             phase="request", hint="Fix or leave out the named fields (their schema: GET "
                                                   f"/easyphoto/v1/tryon/config-schema?backend={body.backend}).") from None


def _check_lora_request(body: TryOnRequest) -> None:
    if not body.garment_id:
        raise InvalidRequest("backend 'lora' needs garment_id: the trained garment to put on.", phase="tryon",
                             hint="Send garment_id, or backend 'leffa' with garment_image to try on a garment photo "
                                  "without training.")
    if body.garment_image:
        raise InvalidRequest("garment_image is used by the zero-shot backends, not by 'lora', so it would be ignored.",
                             phase="tryon", hint="Send backend 'leffa' (or 'catvton', 'ootd') with it, or leave it out.")


def _submit_any_garment(ctx: AppContext, jobs: Callable[[], Any], body: TryOnRequest, config: AnyGarmentConfig):
    """The tryon_any job: the licence, the garment source and the inputs checked before any upload is written."""
    from easyphoto.operations import require
    from easyphoto.tryon.zeroshot.run import check_request

    if body.base:
        raise InvalidRequest(f"base is used by backend 'lora' only; {body.backend!r} reads its own files.",
                             phase="tryon", hint="Leave base out.")
    params = {"person": "pending", "garment_image": "pending" if body.garment_image else None,
              "garment_id": body.garment_id or None, "points": body.points, "boxes": body.boxes,
              "config": config.to_dict()}
    check_request(ctx, AnyGarmentParams.checked(params, "tryon_any"))  # 403 licence, 422 no garment, 404 garment
    _check_mask_source(body, config.mask_source)
    queue = jobs()
    require(queue, "tryon_any")
    named = {"person": decode_base64(body.person, "person")}
    if body.garment_image:
        named["garment_image"] = decode_base64(body.garment_image, "garment_image")
    if body.mask:
        named["mask"] = decode_base64(body.mask, "mask")
    _check_tryon_images(ctx, body, [named["person"], *([named["mask"]] if body.mask else [])])
    if body.garment_image:
        _load_upload(ctx, named["garment_image"], "garment_image")
    uploads = {field: (data, sniff_suffix(data)) for field, data in named.items()}
    return submit_with_uploads(ctx, queue, "tryon_any", AnyGarmentParams, params, uploads)


def _check_mask_source(body: TryOnRequest, source: str) -> None:
    """The garment region's input matches config.mask_source: a mask or clicks sent for another source would be
    ignored without a word, so they are refused like an unknown field."""
    hint = "Set config.mask_source to the input you send ('mask' or 'points')."
    if source == "mask" and not body.mask:
        raise InvalidRequest("mask_source is 'mask' but no mask was sent.", phase="tryon",
                             hint="Send mask (white = the garment region), or use mask_source 'parsing'.")
    if source == "points" and not (body.points or body.boxes):
        raise InvalidRequest("mask_source is 'points' but no click or box was sent.", phase="tryon",
                             hint="Send points [[x, y, true]] on the garment or boxes [[x0, y0, x1, y1]] around it.")
    if body.mask and source != "mask":
        raise InvalidRequest(f"A mask was sent but mask_source is {source!r}, so it would be ignored.",
                             phase="tryon", hint=hint)
    if (body.points or body.boxes) and source != "points":
        raise InvalidRequest(f"Points or boxes were sent but mask_source is {source!r}, so they would be ignored.",
                             phase="tryon", hint=hint)


def _load_upload(ctx: AppContext, data: bytes, field: str):
    """The uploaded image, or a 422 naming the field and what is wrong with it."""
    from easyphoto.imageops import UnreadableImage, load_photo

    try:
        return load_photo(data, max_megapixels=ctx.settings.max_upload_megapixels).image
    except UnreadableImage as exc:
        raise InvalidRequest(f"{field}: {exc.message.removeprefix('upload: ')}", phase="tryon",
                             hint=exc.hint or "Send a JPEG, PNG or WebP image.") from None


def _check_tryon_images(ctx: AppContext, body: TryOnRequest, images: list[bytes]) -> None:
    """The person photo decodes, a mask is its size and not empty, clicks and boxes lie inside it: said now,
    before any upload is written or a job exists (the job checks again, for the CLI)."""
    from easyphoto.tryon.garments import binary_mask

    loaded = [_load_upload(ctx, data, field) for data, field in zip(images, ("person", "mask")[:len(images)],
                                                                       strict=True)]
    width, height = loaded[0].size
    if len(loaded) > 1 and loaded[1].size != (width, height):
        raise InvalidRequest(f"The mask is {loaded[1].width}×{loaded[1].height}, the person photo {width}×{height}.",
                             phase="tryon", hint="Draw the mask on the same photo, at its size.")
    if len(loaded) > 1 and not binary_mask(loaded[1]).any():
        raise InvalidRequest("The mask is empty: no pixel is painted.", phase="tryon",
                             hint="Paint the garment region white on black.")
    outside = [list(p) for p in body.points if not (0 <= p[0] < width and 0 <= p[1] < height)]
    outside += [list(b) for b in body.boxes if not (0 <= b[0] < b[2] <= width and 0 <= b[1] < b[3] <= height)]
    if outside:
        raise InvalidRequest(f"{outside[0]} is not inside the person photo ({width}×{height}).", phase="tryon",
                             hint="Points [x, y, positive] and boxes [x0, y0, x1, y1] (x0 < x1, y0 < y1) are pixels "
                                  "of the upright photo, from its top-left corner.")


def _submit_with_uploads(ctx: AppContext, queue, params: dict, images: list[tuple[bytes, str]]):
    """Submit a try-on whose person photo (and mask) live in their own folder, removed when the job ends."""
    named = dict(zip(("person", "mask"), images, strict=False))
    return submit_with_uploads(ctx, queue, "tryon", TryOnParams, params, named)


def submit_with_uploads(ctx: AppContext, queue, kind: str, model, params: dict, images: dict[str, tuple[bytes, str]]):
    """Submit a `kind` job whose uploaded images (field name -> (bytes, suffix)) are written to their own folder,
    each field set to its file's path, and removed when the job ends."""
    from easyphoto.portrait import templates as gallery

    folder = gallery.new_upload_folder(ctx.paths)
    try:
        files = [str(p) for p in write_uploads(list(images.values()), folder)]
        checked = model.checked({**params, **dict(zip(images, files, strict=True))})
        record = queue.submit(kind, checked)
    except BaseException:
        gallery.remove_upload_folder(ctx.paths, folder)
        raise

    def remove_when_done() -> None:
        queue.wait(record.id)
        gallery.remove_upload_folder(ctx.paths, folder)

    threading.Thread(target=remove_when_done, name=f"easyphoto-uploads-{record.id}", daemon=True).start()
    return record
