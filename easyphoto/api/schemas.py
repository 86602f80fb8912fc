"""Request and response bases shared by the API's route modules (routes.py, tryon_routes.py)."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import BaseModel

from easyphoto.config import PYDANTIC_V2


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


class RequestModel(BaseModel):
    """Base of every request body: an unknown top-level field is a 422 naming it (a typo is never ignored)."""

    if PYDANTIC_V2:
        model_config = pydantic.ConfigDict(extra="forbid")
    else:

        class Config:
            extra = "forbid"
