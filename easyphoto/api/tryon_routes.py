"""Garments and try-on under /easyphoto/v1 (issue 13): the same shapes as identities and portraits.

    GET/POST /garments, GET/DELETE /garments/{id}, POST /garments/{id}/photos, DELETE /garments/{id}/photos/{name}
    PUT/DELETE /garments/{id}/masks/{photo}      an uploaded garment mask for one photo (white = garment)
    PUT /garments/{id}/points/{photo}            clicks and boxes for the point segmenter
    POST /garments/{id}/dataset                  job: cut out + caption (GarmentDatasetConfig)
    GET /garments/{id}/report, GET/PUT /garments/{id}/captions
    POST /garments/{id}/train                    job: dataset when out of date, then the garment LoRA
    POST /tryon                                  job: a trained garment on a person photo (TryOnConfig)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from easyphoto.api.payloads import MAX_IMAGE_MB, decode_base64, decode_images, sniff_suffix, write_uploads
from easyphoto.api.schemas import JobModel, RequestModel
from easyphoto.config import TrainConfig, TryOnConfig
from easyphoto.context import AppContext
from easyphoto.errors import Conflict, InvalidRequest
from easyphoto.job_params import GarmentDatasetParams, GarmentTrainParams, TryOnParams
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
    garment_id: str
    person: str = Field(..., description="The person photo as base64 or a data URL (image/*).")
    mask: str | None = Field(None, description="With mask_source 'mask': the garment region (white), photo-sized.")
    points: list[tuple[float, float, bool]] = Field([], description="With mask_source 'points': [x, y, positive].")
    boxes: list[tuple[float, float, float, float]] = Field([], description="With mask_source 'points'.")
    config: TryOnConfig = Field(default_factory=TryOnConfig)
    base: str | None = Field(None, description="Standalone only: the SD 1.5 base the garment was trained on.")


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
        """Put a trained garment on the person photo; GET /jobs/{id}/result returns the images and their garment
        fidelity scores."""
        from easyphoto.operations import require
        from easyphoto.tryon.run import require_trained_garment

        require_trained_garment(ctx, body.garment_id)  # 404 / 409 before any upload is written
        _check_mask_source(body)
        queue = jobs()
        require(queue, "tryon")
        images = [decode_base64(body.person, "person")] + ([decode_base64(body.mask, "mask")] if body.mask else [])
        _check_tryon_images(ctx, body, images)
        images = [(data, sniff_suffix(data)) for data in images]
        params = {"garment_id": body.garment_id, "person": "pending", "points": body.points, "boxes": body.boxes,
                  "config": _dump(body.config), "base": body.base or None}
        return _submit_with_uploads(ctx, queue, params, images).to_dict()


def _check_mask_source(body: TryOnRequest) -> None:
    """The garment region's input matches config.mask_source: a mask or clicks sent for another source would be
    ignored without a word, so they are refused like an unknown field."""
    source, hint = body.config.mask_source, "Set config.mask_source to the input you send ('mask' or 'points')."
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


def _check_tryon_images(ctx: AppContext, body: TryOnRequest, images: list[bytes]) -> None:
    """The person photo decodes, a mask is its size and not empty, clicks and boxes lie inside it: said now,
    before any upload is written or a job exists (the job checks again, for the CLI)."""
    from easyphoto.imageops import UnreadableImage, load_photo
    from easyphoto.tryon.garments import binary_mask

    loaded = []
    for data, field in zip(images, ("person", "mask")[:len(images)], strict=True):
        try:
            loaded.append(load_photo(data, max_megapixels=ctx.settings.max_upload_megapixels).image)
        except UnreadableImage as exc:
            raise InvalidRequest(f"{field}: {exc.message.removeprefix('upload: ')}", phase="tryon",
                                 hint=exc.hint or "Send a JPEG, PNG or WebP image.") from None
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
