"""The garment layout editor's routes (issue 16): the page and its script served by EasyPhoto itself (nothing from
elsewhere), the palette the page paints and decodes with is layout.py's own, and the page ships in the wheel.
The page in a real browser: tests/test_browser_layout.py."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import numpy as np

from easyphoto.api.design_editor_routes import EDITOR
from easyphoto.design import layout as L

API = "/easyphoto/v1"
ROOT = Path(__file__).resolve().parent.parent


def test_the_editor_page_and_its_script_are_served_with_nothing_from_elsewhere(api_client):
    page = api_client.get(f"{API}/design/editor")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ("canvas", "classes", "file", "photo", "download", "generate", "undo", "clear", "brush",
                    "width", "height", "route", "prompt", "result"):
        assert f'id="easyphoto_layout_{element}"' in page.text, element
    assert '<script src="../assets/easyphoto_layout.js">' in page.text
    script = api_client.get(f"{API}/assets/easyphoto_layout.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "window.EasyPhotoLayout = {" in script.text
    for text in (page.text, script.text):
        assert not re.search(r"https?://", text)  # no CDN: the page works offline and inside a closed network
    assert api_client.get(f"{API}/assets/easyphoto_layouts.js").status_code == 404  # still an allow-list


def test_the_palette_is_layouts_46_classes_then_background(api_client):
    entries = api_client.get(f"{API}/design/palette").json()
    assert len(entries) == L.NUM_CLASSES + 1 == 47
    classes, background = entries[:-1], entries[-1]
    assert [e["id"] for e in classes] == list(range(46)) and [e["name"] for e in classes] == list(L.CLASSES)
    assert np.array_equal(np.asarray([e["rgb"] for e in classes]), L.PALETTE)
    assert [e["group"] for e in classes] == ["garment"] * 27 + ["part"] * 19
    assert background == {"id": 255, "name": "background", "group": "background", "rgb": [255, 255, 255]}
    assert len({tuple(e["rgb"]) for e in entries}) == 47  # one colour, one label: a palette PNG decodes exactly


def test_the_pages_garment_choices_are_design_configs_categories(api_client):
    from easyphoto.config import DesignCategory

    page = api_client.get(f"{API}/design/editor").text
    select = page.split('id="easyphoto_layout_category"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option value="([^"]+)"', select) == list(typing.get_args(DesignCategory))
    route = page.split('id="easyphoto_layout_route"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option value="([^"]+)"', route) == ["diffusion", "smis"]


def test_the_page_ships_in_the_wheel():
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    line = next(x for x in section.splitlines() if x.startswith('"easyphoto.api" ='))
    assert EDITOR.name in line and EDITOR.parent == ROOT / "easyphoto" / "api"
