"""FastAPI router. Works on FastAPI 0.94 + pydantic 1 (A1111) and FastAPI 0.112 + pydantic 2 (Forge).

The WebUI calls `install()` from `on_app_started` with a new app after every "Reload UI"; `install()` is
idempotent per app so a second call on the same app adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from easyphoto import __version__, weights
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError

API_PREFIX = "/easyphoto/v1"


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


class ErrorResponse(BaseModel):
    error: str
    phase: str
    message: str
    hint: str = ""


def build_router(ctx: AppContext, dependencies: Sequence = ()) -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, tags=["easyphoto"], dependencies=list(dependencies))

    @router.get("/health", response_model=HealthResponse)
    def health() -> dict:
        """Liveness and versions: cheap, loads nothing."""
        return {
            "name": "EasyPhoto",
            "version": __version__,
            "api": "v1",
            "host": ctx.host.to_dict(),
            "offline": ctx.offline,
        }

    @router.get("/models", response_model=list[WeightStatusModel])
    def list_models(group: str | None = None) -> list[dict]:
        """Every manifest entry with its state on disk (present / missing / corrupt)."""
        return [s.to_dict() for s in weights.status_all(ctx.paths, group)]

    return router


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
