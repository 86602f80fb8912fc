"""The garment layout editor under /easyphoto/v1 (issue 16): paint a semantic layout of the 46 FGVC6 classes in the
browser (javascript/easyphoto_layout.js), download it as a palette PNG or send it to POST /design.

    GET /design/editor     the editor page (standalone, or inside the WebUI with --api, like the mask editor)
    GET /design/palette    [{id, name, group, rgb}]: the classes in easyphoto.design.layout's PALETTE, then background

The page's script, GET /assets/easyphoto_layout.js, is served by mask_routes' allow-list of EasyPhoto's own scripts.
The palette comes from the server so that the page, the PNG it downloads and read_layout never disagree on a colour.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from easyphoto.context import AppContext

EDITOR = Path(__file__).with_name("layout_editor.html")


class PaletteEntry(BaseModel):
    id: int = Field(..., description="The label: FGVC6 ClassId 0–45, or 255 for background.")
    name: str
    group: str = Field(..., description="garment (0–26: garments and accessories), part (27–45) or background.")
    rgb: tuple[int, int, int] = Field(..., description="Its colour in the editor and in a palette PNG.")


def palette_entries() -> list[dict]:
    """Every class with its palette colour, then background (white): what the editor paints and decodes with."""
    from easyphoto.design import layout

    entries = [{"id": index, "name": name, "group": "garment" if index in layout.GARMENTS else "part",
                "rgb": tuple(int(c) for c in layout.PALETTE[index])} for index, name in enumerate(layout.CLASSES)]
    return entries + [{"id": layout.BACKGROUND, "name": "background", "group": "background",
                       "rgb": tuple(layout.BACKGROUND_RGB)}]


def add_design_editor_routes(router: APIRouter, ctx: AppContext, jobs: Callable[[], Any]) -> None:
    @router.get("/design/editor", response_class=HTMLResponse)
    def design_editor() -> HTMLResponse:
        """The layout editor: pick a class, paint with brush, rectangle or fill, then Download or Generate."""
        return HTMLResponse(EDITOR.read_text(encoding="utf-8"))

    @router.get("/design/palette", response_model=list[PaletteEntry])
    def design_palette() -> list[dict]:
        """The 46 FGVC6 classes (id, name, colour) and background (id 255, white)."""
        return palette_entries()
