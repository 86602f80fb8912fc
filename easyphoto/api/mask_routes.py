"""Click-to-mask under /easyphoto/v1 (issue 14): the server computes a photo's SAM image embedding once; the browser
runs the prompt decoder with ONNX Runtime Web on every click (javascript/easyphoto_sam.js); API users get the same
decoder on the server.

    POST /segment/embedding        {image} → the embedding as .npy (float32 1×C×64×64); headers: the image's key and
                                   its original and resized sizes (the decoder's point scaling)
    POST /segment/predict          {image, points, boxes?, embedding_key?} → {mask (PNG data URL), area, ...}
    GET  /segment/decoder.onnx     the prompt decoder the page runs
    GET  /segment/editor           the mask editor page (also usable on its own; ?photo=KEY opens a tab's photo)
    GET  /segment/photos/{key}, PUT /segment/masks/{key} {mask}   the hand-over between a tab and the editor
    GET  /segment/pose-editor?photo=KEY, GET/PUT /segment/poses/{key}  the pose editor (drag the joints) and its pose
    GET  /assets/onnxruntime-web/{name}, GET /assets/easyphoto_sam.js   the page's scripts, from EasyPhoto itself
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import Field

from easyphoto.api.payloads import decode_base64
from easyphoto.api.schemas import RequestModel
from easyphoto.context import AppContext
from easyphoto.errors import Conflict, InvalidRequest, NotFound

SCRIPT = Path(__file__).resolve().parents[2] / "javascript" / "easyphoto_sam.js"
EDITOR = Path(__file__).with_name("mask_editor.html")
POSE_EDITOR = Path(__file__).with_name("pose_editor.html")
# the pages' own scripts in javascript/, nothing else is served (easyphoto_layout: design_editor_routes' page)
SCRIPTS = ("easyphoto_sam", "easyphoto_pose", "easyphoto_layout")
KEY_HEADER, ORIGINAL_HEADER, RESIZED_HEADER = "X-EasyPhoto-Image-Key", "X-EasyPhoto-Original-Size", \
    "X-EasyPhoto-Resized-Size"


class EmbeddingRequest(RequestModel):
    image: str = Field(..., description="The photo as base64 or a data URL (image/*).")


class PredictRequest(RequestModel):
    image: str = Field(..., description="The photo as base64 or a data URL (image/*).")
    points: list[tuple[float, float, bool]] = Field([], description="Clicks [x, y, positive] in photo pixels.")
    boxes: list[tuple[float, float, float, float]] = Field([], description="Boxes [x0, y0, x1, y1] in photo pixels.")
    embedding_key: str | None = Field(None, description="The key POST /segment/embedding answered for this photo: "
                                      "refused when it belongs to another image.")


def add_mask_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    @router.post("/segment/embedding", response_class=Response)
    def embedding(body: EmbeddingRequest) -> Response:
        """The photo's SAM image embedding as a .npy file, for a decoder in the browser."""
        from easyphoto.segment import load_segmenter
        from easyphoto.segment.sam import pixel_key

        pixels = _pixels(ctx, body.image)
        array, resized, original = load_segmenter(ctx.paths).embedding_with_sizes(pixels)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array, np.float32), allow_pickle=False)
        headers = {KEY_HEADER: pixel_key(pixels), ORIGINAL_HEADER: f"{original[0]},{original[1]}",
                   RESIZED_HEADER: f"{resized[0]},{resized[1]}",
                   "Access-Control-Expose-Headers": f"{KEY_HEADER}, {ORIGINAL_HEADER}, {RESIZED_HEADER}"}
        return Response(buffer.getvalue(), media_type="application/octet-stream", headers=headers)

    @router.post("/segment/predict")
    def predict(body: PredictRequest) -> dict:
        """The mask of the clicks and boxes, by the same decoder on the server."""
        from easyphoto.segment import Point, load_segmenter
        from easyphoto.segment.sam import pixel_key

        pixels = _pixels(ctx, body.image)
        key = pixel_key(pixels)
        if body.embedding_key is not None and body.embedding_key != key:
            raise Conflict("This embedding was computed for another image: its key does not match this photo.",
                           phase="segment", hint="Request the embedding of this photo (POST /segment/embedding) "
                                                 "and use its key, or send the photo the embedding was made from.")
        points = [Point(x, y, positive) for x, y, positive in body.points]
        mask = load_segmenter(ctx.paths).segment(pixels, points, [tuple(b) for b in body.boxes])
        return {"mask": _png_data_url(mask), "area": int(np.count_nonzero(mask)), "width": int(mask.shape[1]),
                "height": int(mask.shape[0]), "image_key": key}

    @router.get("/segment/decoder.onnx", response_class=FileResponse)
    def decoder() -> FileResponse:
        from easyphoto.segment.checks import require_models
        from easyphoto.segment.sam import SEGMENTER_IDS

        (_, path) = require_models(SEGMENTER_IDS, ctx.paths, "Click-to-mask")
        return FileResponse(path, media_type="application/octet-stream")

    _asset_routes(router, ctx)
    _editor_routes(router, ctx)


class EditorPoseRequest(RequestModel):
    skeleton: dict[str, Any] = Field(..., description="OpenPose JSON: canvas_width, canvas_height, people.")


class EditorMaskRequest(RequestModel):
    mask: str = Field(..., description="The mask as a PNG data URL or base64 (white = selected).")


def _editor_routes(router: APIRouter, ctx: AppContext) -> None:
    """The hand-over between a tab and the editor page: the photo the tab shows, the mask the editor sends."""
    from easyphoto.segment import editor_store

    @router.get("/segment/photos/{key}", response_class=FileResponse)
    def editor_photo(key: str) -> FileResponse:
        return FileResponse(editor_store.photo_file(ctx.paths, key), media_type="image/png")

    @router.get("/segment/poses/{key}")
    def editor_pose(key: str) -> dict:
        from easyphoto.store import read_json

        found = editor_store.pose_file(ctx.paths, key)
        if found is None:
            raise NotFound("No pose for this photo yet.", phase="pose",
                           hint="Press Preview pose in the Digital model section first.")
        return read_json(found)

    @router.put("/segment/poses/{key}", status_code=204)
    def put_editor_pose(key: str, body: EditorPoseRequest) -> Response:
        editor_store.store_pose(ctx.paths, key, body.skeleton)
        return Response(status_code=204)

    @router.get("/segment/pose-editor", response_class=HTMLResponse)
    def pose_editor() -> HTMLResponse:
        """The pose editor: drag the joints of the photo's skeleton, then send it back to the tab."""
        return HTMLResponse(POSE_EDITOR.read_text(encoding="utf-8"))

    @router.put("/segment/masks/{key}", status_code=204)
    def editor_mask(key: str, body: EditorMaskRequest) -> Response:
        editor_store.store_mask(ctx.paths, key, decode_base64(body.mask, "mask"))
        return Response(status_code=204)


def _asset_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.get("/segment/editor", response_class=HTMLResponse)
    def editor() -> HTMLResponse:
        """The mask editor: open a photo, left click adds, right click removes, New region, Undo, Clear."""
        return HTMLResponse(EDITOR.read_text(encoding="utf-8"))

    @router.get("/assets/{name}.js")
    def script(name: str) -> FileResponse:
        if name not in SCRIPTS:
            raise NotFound(f"No EasyPhoto script {name}.js.", phase="segment", hint=f"Scripts: {', '.join(SCRIPTS)}.")
        path = SCRIPT.with_name(f"{name}.js")
        if not path.is_file():
            raise NotFound(f"{path} is missing from this install.", phase="segment",
                           hint="Reinstall EasyPhoto from its repository (the javascript/ folder ships with it).")
        return FileResponse(path, media_type="text/javascript")

    @router.get("/assets/onnxruntime-web/{name}")
    def ort_web(name: str) -> FileResponse:
        from easyphoto.segment.ort_web import ort_web_asset

        path, media_type = ort_web_asset(ctx.paths, name)
        return FileResponse(path, media_type=media_type)


def _pixels(ctx: AppContext, value: str) -> np.ndarray:
    from easyphoto.imageops import UnreadableImage, load_photo, to_array

    try:
        image = load_photo(decode_base64(value, "image"), max_megapixels=ctx.settings.max_upload_megapixels).image
    except UnreadableImage as exc:
        raise InvalidRequest(f"image: {exc.message.removeprefix('upload: ')}", phase="segment",
                             hint=exc.hint or "Send a JPEG, PNG or WebP image.") from None
    return to_array(image)


def _png_data_url(mask: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask, "L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
