"""Garment design under /easyphoto/v1 (issue 16).

    POST /design               job: a layout (label PNG or the editor's palette PNG, base64) → garment image(s) on a
                               clean background, route "diffusion" (seg ControlNet) or "smis" (a trained generator)
    POST /design/train         job: train (or resume) the native SMIS generator on a dataset in the FGVC6 layout
    GET  /design/models        the trained design models (name, step, size, usable or not)
    GET  /design/models/{name}/losses   every logged step's loss terms (the loss curves)
    (the layout classes and their colours: GET /design/palette, with the layout editor's routes)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from easyphoto.api.payloads import decode_base64
from easyphoto.api.schemas import JobModel, RequestModel
from easyphoto.config import DesignConfig
from easyphoto.context import AppContext
from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.job_params import DesignParams, DesignTrainParams


class DesignRequest(RequestModel):
    layout: str = Field(..., description="The layout as base64 or a data URL: a one-channel label PNG (0–45 = the "
                        "FGVC6 classes of GET /design/classes, 255 = background) or the editor's palette PNG.")
    garment_id: str | None = Field(None, description="Route diffusion: a trained garment's LoRA to draw with.")
    config: DesignConfig = Field(default_factory=DesignConfig)
    base: str | None = Field(None, description="Standalone, route diffusion: the SD 1.5 base model.")


class DesignTrainRequest(RequestModel):
    model_name: str = Field(..., description="The design model: a folder name (lowercase letters, digits, _ or -).")
    dataset: str = Field(..., description="The training set, a folder on the server: images/ plus train.csv (FGVC6 "
                         "RLE rows) or masks/<image name>.png (label PNGs).")
    config: DesignTrainConfig | None = Field(None, description="Training settings; empty: the defaults for a new "
                                             "model, the model's own when resuming.")
    resume: bool = Field(False, description="Continue from the model's last checkpoint.")
    overwrite: bool = Field(False, description="Start the model again (its checkpoints are deleted first).")


def add_design_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    _train_routes(router, ctx, jobs)

    @router.post("/design", response_model=JobModel, status_code=202)
    def design(body: DesignRequest) -> dict:
        """Draw the garment a layout describes; GET /jobs/{id}/result lists the images (the layout's size, white
        outside the layout) and their seeds. The layout is checked before the job is queued."""
        from easyphoto.api.tryon_routes import submit_with_uploads
        from easyphoto.design.layout import read_layout
        from easyphoto.operations import require

        data = decode_base64(body.layout, "layout")
        read_layout(data)  # labels outside 0–45, empty, unreadable: 422 now
        queue = jobs()
        require(queue, "design")
        params = {"layout": "pending", "garment_id": body.garment_id, "config": body.config.to_dict(),
                  "base": body.base or None}
        _check(ctx, params, data)
        return submit_with_uploads(ctx, queue, "design", DesignParams, params, {"layout": (data, "png")}).to_dict()


def _train_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    @router.post("/design/train", response_model=JobModel, status_code=202)
    def design_train(body: DesignTrainRequest) -> dict:
        """Train the native layout-to-garment generator; the job's progress has the step, its result the loss
        terms, the sample grids and the generator file. Dataset and model problems are said before it is queued."""
        from easyphoto.design.smis.run import check_request
        from easyphoto.operations import require

        params = DesignTrainParams.checked({**body_dict(body), "config": body.config.to_dict() if body.config
                                            else None}, "design_train")
        check_request(ctx, params)
        queue = jobs()
        require(queue, "design_train")
        return queue.submit("design_train", params).to_dict()

    @router.get("/design/models")
    def design_models() -> list[dict]:
        """The design models on disk: name, state, step and steps, image size, whether it can draw yet."""
        from easyphoto.design.smis.run import list_design_models

        return list_design_models(ctx)

    @router.get("/design/models/{name}/losses")
    def design_losses(name: str) -> list[dict]:
        """Every logged step of the model's training: {"step": n, "<loss term>": value, ...}."""
        from easyphoto.design.smis.run import model_folder, read_losses

        if not model_folder(ctx, name).is_dir():
            from easyphoto.errors import NotFound

            raise NotFound(f"There is no design model {name!r}.", phase="design")
        return read_losses(ctx, name)


def body_dict(body) -> dict:
    return body.model_dump(exclude={"config"}) if hasattr(body, "model_dump") else body.dict(exclude={"config"})


def _check(ctx: AppContext, params: dict, data: bytes) -> None:
    """The route's own inputs (a trained garment, a trained SMIS model fitting the layout) before anything is
    written, through the job's own check on a temporary copy of the layout."""
    import tempfile
    from pathlib import Path

    from easyphoto.design.run import check_request

    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout.png"
        layout.write_bytes(data)
        check_request(ctx, DesignParams.checked({**params, "layout": str(layout)}))


__all__ = ["add_design_routes"]
