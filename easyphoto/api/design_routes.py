"""Garment design under /easyphoto/v1 (issue 16).

    POST /design               job: a layout (label PNG or the editor's palette PNG, base64) → garment image(s) on a
                               clean background, route "diffusion" (seg ControlNet) or "smis" (a trained generator)
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
from easyphoto.job_params import DesignParams


class DesignRequest(RequestModel):
    layout: str = Field(..., description="The layout as base64 or a data URL: a one-channel label PNG (0–45 = the "
                        "FGVC6 classes of GET /design/classes, 255 = background) or the editor's palette PNG.")
    garment_id: str | None = Field(None, description="Route diffusion: a trained garment's LoRA to draw with.")
    config: DesignConfig = Field(default_factory=DesignConfig)
    base: str | None = Field(None, description="Standalone, route diffusion: the SD 1.5 base model.")


def add_design_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
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
