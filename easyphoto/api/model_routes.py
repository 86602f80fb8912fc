"""The digital model under /easyphoto/v1 (issue 14).

    POST /digital-model          job: mannequin/half-body → model, outfit / scene / pose swap (DigitalModelConfig)
    POST /digital-model/pose     the pose the model mode would use (found or given, completed): editable OpenPose
                                 JSON, the joints placed, the canvas padding, the skeleton drawn (no generation)
    GET  /poses                  the pose gallery: names and skeletons (OpenPose JSON on a 512×768 canvas)
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from easyphoto.api.payloads import decode_base64, sniff_suffix
from easyphoto.api.schemas import JobModel, RequestModel
from easyphoto.config import DigitalModelConfig
from easyphoto.context import AppContext
from easyphoto.errors import InvalidRequest
from easyphoto.job_params import DigitalModelParams

_SKELETON = ("OpenPose JSON (an object or its text): canvas_width, canvas_height, people[0].pose_keypoints_2d (18 "
             "COCO-18 joints × x, y, visible).")
GALLERY_CANVAS = (512, 768)


class DigitalModelRequest(RequestModel):
    person: str | None = Field(None, description="The photo (mannequin, half-body or a model wearing the garment) as "
                               "base64 or a data URL; a pose swap may go without one.")
    garment_id: str | None = Field(None, description="The garment's trained LoRA (needed for a pose swap).")
    outfit_id: str | None = Field(None, description="Outfit swap: the trained garment put on outfit_category.")
    identity_id: str | None = Field(None, description="A trained identity as the model: its LoRA and its face.")
    mask: str | None = Field(None, description="With mask_source 'mask': the kept garment (white), photo-sized.")
    points: list[tuple[float, float, bool]] = Field([], description="With mask_source 'points': [x, y, positive].")
    boxes: list[tuple[float, float, float, float]] = Field([], description="With mask_source 'points'.")
    skeleton: dict[str, Any] | str | None = Field(None, description=_SKELETON)
    pose_photo: str | None = Field(None, description="Pose swap: a photo whose pose the model takes (base64).")
    config: DigitalModelConfig = Field(default_factory=DigitalModelConfig)
    base: str | None = Field(None, description="Standalone only: the SD 1.5 base the LoRAs were trained on.")


class PosePreviewRequest(RequestModel):
    person: str = Field(..., description="The photo as base64 or a data URL.")
    skeleton: dict[str, Any] | str | None = Field(None, description=_SKELETON + " Empty: found in the photo.")
    config: DigitalModelConfig = Field(default_factory=DigitalModelConfig)


def add_model_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    @router.post("/digital-model", response_model=JobModel, status_code=202)
    def digital_model(body: DigitalModelRequest) -> dict:
        """Keep the garment, regenerate the model, outfit, scene or pose; GET /jobs/{id}/result returns the images,
        how well each kept the garment, and the skeleton used (editable OpenPose JSON)."""
        from easyphoto.api.tryon_routes import _check_mask_source, _check_tryon_images, submit_with_uploads
        from easyphoto.operations import require
        from easyphoto.tryon.model_run import check_request

        params = _params(body)
        check_request(ctx, DigitalModelParams.checked({**params, "person": "pending" if body.person else None}))
        queue = jobs()
        require(queue, "digital_model")
        images = _images(body)
        if body.person:
            _check_mask_source(body, body.config.mask_source)
            _check_tryon_images(ctx, body, [images["person"]] + ([images["mask"]] if "mask" in images else []))
        elif body.mask or body.points or body.boxes:
            raise InvalidRequest("A mask or clicks were sent without the photo they mark.", phase="digital_model",
                                 hint="Send person with them, or leave them out for a pose swap without a photo.")
        named = {name: (data, sniff_suffix(data)) for name, data in images.items()}
        return submit_with_uploads(ctx, queue, "digital_model", DigitalModelParams, params, named).to_dict()

    @router.post("/digital-model/pose")
    def pose(body: PosePreviewRequest) -> dict:
        """The completed pose of a photo, or of a given skeleton, without generating anything."""
        from easyphoto.imageops import UnreadableImage, load_photo
        from easyphoto.tryon.model_run import pose_preview

        try:
            image = load_photo(decode_base64(body.person, "person"),
                               max_megapixels=ctx.settings.max_upload_megapixels).image
        except UnreadableImage as exc:
            raise InvalidRequest(f"person: {exc.message.removeprefix('upload: ')}", phase="pose",
                                 hint=exc.hint or "Send a JPEG, PNG or WebP image.") from None
        preview = pose_preview(image, body.config, _skeleton_text(body.skeleton))
        return {**{k: v for k, v in preview.items() if k != "image"}, "image": _png_base64(preview["image"])}

    @router.get("/poses")
    def poses() -> list[dict]:
        from easyphoto.pose.gallery import gallery_pose, pose_gallery
        from easyphoto.pose.skeleton import skeleton_to_json

        return [{"name": name, "skeleton": skeleton_to_json([gallery_pose(name, GALLERY_CANVAS)], GALLERY_CANVAS)}
                for name in pose_gallery()]


def _params(body: DigitalModelRequest) -> dict:
    return {"garment_id": body.garment_id or None, "outfit_id": body.outfit_id or None,
            "identity_id": body.identity_id or None, "points": body.points, "boxes": body.boxes,
            "skeleton": _skeleton_text(body.skeleton), "config": body.config.to_dict(), "base": body.base or None}


def _images(body: DigitalModelRequest) -> dict[str, bytes]:
    fields = {"person": body.person, "mask": body.mask, "pose_photo": body.pose_photo}
    return {name: decode_base64(value, name) for name, value in fields.items() if value}


def _skeleton_text(skeleton: dict | str | None) -> str | None:
    if skeleton is None or skeleton == "":
        return None
    return skeleton if isinstance(skeleton, str) else json.dumps(skeleton)


def _png_base64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
