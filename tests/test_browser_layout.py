"""The garment layout editor in a real browser (issue 16): Debian's headless Chromium opens EasyPhoto's layout editor
page, two classes picked from the palette and two rectangles dragged with the real mouse give exactly those labels,
and the downloaded palette PNG reads back (easyphoto.design.layout.read_layout) to the very same labels; a label PNG
and that palette PNG open in the page as the labels they hold, a bad one is refused naming where; brush, fill,
eraser, undo and clear write integer labels; Generate sends the layout to POST /design (the kit's tiny SD 1.5 and
tiny segmentation ControlNet), follows the job and shows the garment, the layout's size and white outside it.

Runs in the forge pin set, beside tests/test_browser_sam.py (run-tests.sh forge installs chromium +
chromium-driver). Under CI=true a missing browser fails; elsewhere it skips, saying why."""

from __future__ import annotations

import io
import os
import shutil
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from easyphoto.design import layout as L

READY_TIMEOUT = 60
GENERATE_TIMEOUT = 600
W, H = 128, 96  # the canvas of these tests: not square, so a transposed layout cannot pass
JACKET, SLEEVE, TOP = 4, 31, 1

pytestmark = [pytest.mark.slow, pytest.mark.timeout(GENERATE_TIMEOUT + 600)]

if os.environ.get("EASYPHOTO_PINSET") != "forge":
    pytest.skip("runs in the forge pin set (run-tests.sh forge), beside tests/test_browser.py", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The standalone API (no UI) on a free loopback port, in a fresh offline data folder."""
    from easyphoto.context import standalone_context
    from tests.kit.browser import live_app

    root = tmp_path_factory.mktemp("browser-layout")
    ctx = standalone_context(root / "data", root / "models", offline=True)
    with live_app(ctx) as url:
        yield url, ctx


@pytest.fixture(scope="module")
def downloads(browser, tmp_path_factory):
    """Where the page's downloads land (Chromium's own download, set over the DevTools protocol)."""
    folder = tmp_path_factory.mktemp("downloads")
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    return folder


def _wait(driver, script: str, timeout: float, what: str, *args):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.kit.browser import console

    try:
        return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script, *args))
    except TimeoutException:
        pytest.fail(f"{what} within {timeout} s.\npage status: {_status(driver)}\nconsole:\n" +
                    "\n".join(console(driver)), pytrace=False)


def _status(driver) -> str:
    return driver.execute_script("return document.getElementById('easyphoto_layout_status').textContent")


def _open(driver, url: str, width: int = W, height: int = H):
    """The editor with a fresh width × height canvas, through the page's own inputs."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/easyphoto/v1/design/editor")
    _wait(driver, "const e = window.EasyPhotoLayout?.editor; return e && e.ready", READY_TIMEOUT,
          "the editor did not load its palette")
    for name, value in (("width", width), ("height", height)):
        field = driver.find_element(By.ID, f"easyphoto_layout_{name}")
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "easyphoto_layout_new").click()
    assert _editor(driver, "[e.width, e.height]") == [width, height]
    return driver.find_element(By.ID, "easyphoto_layout_canvas")


def _editor(driver, expression: str):
    return driver.execute_script(f"const e = window.EasyPhotoLayout.editor; return {expression}")


def _labels(driver) -> np.ndarray:
    width, height = _editor(driver, "[e.width, e.height]")
    return np.asarray(_editor(driver, "Array.from(e.labels)"), np.uint8).reshape(height, width)


def _offset(driver, canvas, x: int, y: int) -> tuple[int, int]:
    """Selenium's offset (from the middle of the element, border included) of the middle of layout pixel (x, y):
    the page shows each pixel as zoom × zoom screen pixels inside a 1 px border, even on both sides."""
    width, shown_w, shown_h = driver.execute_script(
        "const c = arguments[0]; return [c.width, c.clientWidth, c.clientHeight]", canvas)
    zoom = shown_w / width
    return round((x + 0.5) * zoom - shown_w / 2), round((y + 0.5) * zoom - shown_h / 2)


def _drag(driver, canvas, start: tuple[int, int], end: tuple[int, int]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver).move_to_element_with_offset(canvas, *_offset(driver, canvas, *start))
    chain.click_and_hold().move_to_element_with_offset(canvas, *_offset(driver, canvas, *end)).release().perform()


def _pick(driver, label: int, tool: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, f"easyphoto_layout_class_{label}").click()
    driver.find_element(By.ID, f"easyphoto_layout_tool_{tool}").click()
    assert _editor(driver, "[e.current, e.tool]") == [label, tool]


def _click(driver, canvas, x: int, y: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element_with_offset(canvas, *_offset(driver, canvas, x, y)).click().perform()


def _downloaded(path, timeout: float = 30) -> bytes:
    """The file once Chromium has finished it (it writes NAME.crdownload, then renames); the timeout is a failure
    guard, nothing asserts on it."""
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path.name} in {path.parent}: {sorted(p.name for p in path.parent.iterdir())}")
        time.sleep(0.05)
    return path.read_bytes()


def two_rectangles() -> np.ndarray:
    expected = np.full((H, W), L.BACKGROUND, np.uint8)
    expected[12:81, 10:71] = JACKET  # dragged from (10, 12) to (70, 80), corners included
    expected[20:51, 60:111] = SLEEVE  # over the jacket's right edge: painted later, so it wins
    return expected


def _label_png(path, labels: np.ndarray):
    Image.fromarray(labels, "L").save(path)
    return path


def test_two_rectangles_dragged_with_the_mouse_download_as_exactly_those_labels(server, browser, downloads):
    from selenium.webdriver.common.by import By

    url, _ = server
    canvas = _open(browser, url)
    assert browser.execute_script("const c = arguments[0]; return [c.clientWidth, c.clientHeight]", canvas) \
        == [2 * W, 2 * H]  # the page's default zoom
    _pick(browser, JACKET, "rect")
    _drag(browser, canvas, (10, 12), (70, 80))
    _pick(browser, SLEEVE, "rect")
    _drag(browser, canvas, (110, 50), (60, 20))  # corner to corner the other way round
    expected = two_rectangles()
    assert np.array_equal(_labels(browser), expected)
    assert _editor(browser, "e.history.length") == 3  # the new canvas and one step per rectangle

    browser.find_element(By.ID, "easyphoto_layout_download").click()
    data = _downloaded(downloads / "layout.png")
    assert np.array_equal(L.read_layout(data), expected)  # palette colours only: no smoothing, no colour shift
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (W, H) and image.mode in ("RGB", "RGBA")
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(url) for u in urls), urls  # offline: nothing but EasyPhoto's own routes


def test_label_and_palette_pngs_open_as_their_labels_and_a_bad_one_is_refused(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    _open(browser, url)
    upload = browser.find_element(By.ID, "easyphoto_layout_file")
    labels = np.full((64, 80), L.BACKGROUND, np.uint8)
    labels[5:40, 3:30] = 0
    labels[30:60, 20:75] = 45  # the last class
    labels[0, 79] = 13
    upload.send_keys(str(_label_png(tmp_path / "labels.png", labels)))
    _wait(browser, "const e = window.EasyPhotoLayout.editor; return e.width === 80 && e.height === 64", 30,
          "the label PNG did not open")
    assert np.array_equal(_labels(browser), labels)
    assert [browser.find_element(By.ID, f"easyphoto_layout_{n}").get_attribute("value") for n in ("width", "height")] \
        == ["80", "64"]

    palette = tmp_path / "palette.png"
    Image.fromarray(L.visualise(two_rectangles())).save(palette)  # what Download saves, made by layout.py
    upload.send_keys(str(palette))
    _wait(browser, f"const e = window.EasyPhotoLayout.editor; return e.width === {W} && e.height === {H}", 30,
          "the palette PNG did not open")
    assert np.array_equal(_labels(browser), two_rectangles())

    bad = two_rectangles()
    bad[7, 9] = 46  # no class
    upload.send_keys(str(_label_png(tmp_path / "bad.png", bad)))
    _wait(browser, "return document.getElementById('easyphoto_layout_status').textContent.includes('cannot')", 30,
          "the bad label PNG was not refused")
    assert "x=9, y=7" in _status(browser) and "0–45" in _status(browser)
    assert np.array_equal(_labels(browser), two_rectangles())  # the layout before it is kept
    browser.find_element(By.ID, "easyphoto_layout_undo").click()  # back to the label PNG, at its size
    assert np.array_equal(_labels(browser), labels)


def test_brush_fill_eraser_undo_and_clear_write_integer_labels(server, browser):
    from selenium.webdriver.common.by import By

    url, _ = server
    canvas = _open(browser, url)
    brush = browser.find_element(By.ID, "easyphoto_layout_brush")
    brush.clear()
    brush.send_keys("3")
    _pick(browser, TOP, "brush")
    _drag(browser, canvas, (0, 30), (W - 1, 30))  # one fast drag: the brush is stamped on every pixel between
    after_brush = _labels(browser)
    assert (after_brush[29:32] == TOP).all() and (after_brush == TOP).sum() == 3 * W  # a 3 px band, edge to edge
    _pick(browser, JACKET, "fill")
    _click(browser, canvas, 50, 31)  # inside the band: fills the band (4-connected), nothing else
    assert np.array_equal(_labels(browser) == JACKET, after_brush == TOP)
    _pick(browser, SLEEVE, "fill")
    _click(browser, canvas, 50, 80)  # the background below the band, not the one above it
    after_fill = _labels(browser)
    assert (after_fill[32:] == SLEEVE).all() and (after_fill[:29] == L.BACKGROUND).all()
    browser.find_element(By.ID, "easyphoto_layout_tool_eraser").click()
    _drag(browser, canvas, (50, 30), (50, 90))  # a vertical cut through the band and the fill
    erased = _labels(browser)
    assert (erased[29:92, 49:52] == L.BACKGROUND).all() and (erased[92:, 49:52] == SLEEVE).all()
    assert np.array_equal(erased[:, :49], after_fill[:, :49]) and np.array_equal(erased[:, 52:], after_fill[:, 52:])
    assert set(np.unique(erased)) == {JACKET, SLEEVE, L.BACKGROUND}  # integer labels, nothing blended

    undo = browser.find_element(By.ID, "easyphoto_layout_undo")
    undo.click()
    assert np.array_equal(_labels(browser), after_fill)
    undo.click()
    undo.click()
    assert np.array_equal(_labels(browser), after_brush)
    browser.find_element(By.ID, "easyphoto_layout_clear").click()
    assert (_labels(browser) == L.BACKGROUND).all()
    undo.click()
    assert np.array_equal(_labels(browser), after_brush)
    assert _editor(browser, "e.paintStroke([[0, 0], [10, 10]], 13, 1), e.fill(0, 95, 20), e.history.length") == 4
    diagonal = _labels(browser)
    assert all(diagonal[i, i] == 13 for i in range(11)) and diagonal[0, 1] != 13  # one pixel wide, no smoothing


@pytest.fixture
def design_models(server, tiny_sd_dir, tiny_controlnet_dirs):
    """The kit's tiny segmentation ControlNet where the manifest puts control_v11p_sd15_seg; the tiny SD 1.5 is
    the request's base (standalone)."""
    from easyphoto.generation import CONTROLNET_MODELS

    _, ctx = server
    target = ctx.paths.controlnet_dir / CONTROLNET_MODELS["seg"]
    if not target.exists():
        shutil.copytree(tiny_controlnet_dirs["seg"], target)
    return tiny_sd_dir


def test_generate_sends_the_layout_and_shows_the_garment_of_its_size(server, browser, design_models):
    from selenium.webdriver.common.by import By

    from tests.kit.tiny_sd import torch_threads

    url, _ = server
    _open(browser, url)
    browser.execute_script("const e = window.EasyPhotoLayout.editor; e.paintRect(10, 12, 70, 80, arguments[0]); "
                           "e.paintRect(110, 50, 60, 20, arguments[1]); "
                           "e.options = {base: arguments[2], config: {steps: 2, seed: 7}}",
                           JACKET, SLEEVE, str(design_models))
    expected = two_rectangles()
    assert np.array_equal(_labels(browser), expected)
    browser.find_element(By.ID, "easyphoto_layout_prompt").send_keys("blue denim")
    with torch_threads(1):
        browser.find_element(By.ID, "easyphoto_layout_generate").click()
        _wait(browser, "const e = window.EasyPhotoLayout.editor; return e.generated || e.error", GENERATE_TIMEOUT,
              "Generate showed no image")
    assert _editor(browser, "e.error") is None, _status(browser)
    job = _editor(browser, "e.job")
    assert job["kind"] == "design" and job["state"] == "succeeded"
    assert job["params"]["config"]["prompt"] == "blue denim" and job["params"]["config"]["route"] == "diffusion"
    shown = browser.find_element(By.CSS_SELECTOR, "#easyphoto_layout_result img")
    src, size = browser.execute_script("const i = arguments[0]; return [i.src, [i.naturalWidth, i.naturalHeight]]",
                                       shown)
    assert size == [W, H] and src.startswith(f"{url}/easyphoto/v1/jobs/{job['id']}/files/")
    stage = browser.find_element(By.ID, "easyphoto_layout_stage").rect
    assert shown.is_displayed() and shown.rect["x"] >= stage["x"] + stage["width"]  # beside the canvas
    with urllib.request.urlopen(src, timeout=60) as response:
        garment = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    assert garment.shape == (H, W, 3)
    assert (garment[expected == L.BACKGROUND] == 255).all()  # the job drew the layout the page sent
    assert (garment[expected != L.BACKGROUND] != 255).any()
