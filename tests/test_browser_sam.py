"""Click-to-mask in a real browser (issue 14): Debian's headless Chromium opens EasyPhoto's mask editor page, which
loads ONNX Runtime Web (the real onnxruntime-web 1.20.1 npm tarball, placed in the models folder as a user places it
offline) and the SAM prompt decoder from EasyPhoto's own routes; two real mouse clicks on the photo (one left, one
right) give a mask, decoded in the page, equal (IoU ≥ 0.99) to POST /segment/predict's for the same points on the
kit's tiny SAM; and the page fetched nothing from anywhere but the server.

Runs in the forge pin set (run-tests.sh forge installs chromium + chromium-driver; npm packs the tarball once into
the kit cache). Under CI=true, a missing browser or npm fails; elsewhere it skips, saying why."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.kit.photos import skip_or_fail

ORT_WEB_VERSION = "1.20.1"  # the manifest's onnxruntime-web
READY_TIMEOUT = 180
CLICK_TIMEOUT = 120

pytestmark = [pytest.mark.slow, pytest.mark.timeout(READY_TIMEOUT + 4 * CLICK_TIMEOUT + 600)]

if os.environ.get("EASYPHOTO_PINSET") != "forge":
    pytest.skip("runs in the forge pin set (run-tests.sh forge), beside tests/test_browser.py", allow_module_level=True)


@pytest.fixture(scope="module")
def ort_web_tarball(kit_root):
    from tests.kit.cache import SourceUnavailable
    from tests.kit.npm import npm_pack

    try:
        return npm_pack("onnxruntime-web", ORT_WEB_VERSION, kit_root)
    except SourceUnavailable as exc:
        skip_or_fail(str(exc))


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_segment, ort_web_tarball):
    """The standalone API (no UI) on a free loopback port, its models folder holding the tiny SAM pair and the
    onnxruntime-web tarball where the manifest puts them."""
    from easyphoto import weights
    from easyphoto.context import standalone_context
    from tests.kit.browser import live_app
    from tests.kit.tiny_segment import install_tiny_segment

    root = tmp_path_factory.mktemp("browser-sam")
    ctx = standalone_context(root / "data", root / "models", offline=True)
    install_tiny_segment(ctx.paths, tiny_segment, parser=False)
    target = weights.get("onnxruntime-web").path(ctx.paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ort_web_tarball, target)
    with live_app(ctx) as url:
        yield url, ctx


def _wait(driver, script: str, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.kit.browser import console

    try:
        return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))
    except TimeoutException:
        status = driver.execute_script("return document.getElementById('easyphoto_sam_status').textContent")
        pytest.fail(f"{what} within {timeout} s.\npage status: {status}\nconsole:\n" + "\n".join(console(driver)),
                    pytrace=False)


def _click(driver, canvas, x: float, y: float, right: bool = False) -> None:
    """A real mouse click at photo pixel (x, y): the canvas shows the photo at its own size, and selenium's offset
    is from the middle of the element (its border is even on both sides)."""
    from selenium.webdriver.common.action_chains import ActionChains

    width, height = driver.execute_script("const c = arguments[0]; return [c.width, c.height]", canvas)
    chain = ActionChains(driver).move_to_element_with_offset(canvas, x - width / 2, y - height / 2)
    (chain.context_click() if right else chain.click()).perform()


def _predict(server: str, image_b64: str, points) -> np.ndarray:
    body = json.dumps({"image": image_b64, "points": points}).encode()
    request = urllib.request.Request(f"{server}/easyphoto/v1/segment/predict", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask"].split(",", 1)[1])))) > 0


def test_two_clicks_in_the_browser_match_the_servers_decoder(server, browser, photo_astronaut, tmp_path):
    from selenium.webdriver.common.by import By

    server, _ = server
    photo = tmp_path / "astronaut.png"
    Image.open(photo_astronaut).convert("RGB").resize((200, 160)).save(photo)
    browser.get(f"{server}/easyphoto/v1/segment/editor")
    browser.find_element(By.ID, "easyphoto_sam_file").send_keys(str(photo))
    _wait(browser, "const e = window.EasyPhotoSam?.editor; return e && e.ready", READY_TIMEOUT,
          "the editor did not load ONNX Runtime Web, the decoder and the embedding")
    canvas = browser.find_element(By.ID, "easyphoto_sam_canvas")
    assert browser.execute_script("const c = arguments[0]; return [c.clientWidth, c.clientHeight]", canvas) == [200, 160]
    _click(browser, canvas, 60, 80)
    _wait(browser, "const e = window.EasyPhotoSam.editor; return !e.busy && e.clicks.length === 1 && e.current",
          CLICK_TIMEOUT, "the left click gave no mask")
    _click(browser, canvas, 150, 30, right=True)
    _wait(browser, "const e = window.EasyPhotoSam.editor; return !e.busy && e.clicks.length === 2", CLICK_TIMEOUT,
          "the right click was not decoded")
    clicks = browser.execute_script("return window.EasyPhotoSam.editor.clicks")
    assert [c[2] for c in clicks] == [True, False]
    assert abs(clicks[0][0] - 60) <= 1.5 and abs(clicks[0][1] - 80) <= 1.5  # where the mouse was, in photo pixels
    data_url = browser.execute_script("return window.EasyPhotoSam.editor.maskDataUrl()")
    in_page = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("L")) > 0
    on_server = _predict(server, base64.b64encode(photo.read_bytes()).decode(), clicks)
    assert in_page.shape == on_server.shape == (160, 200)
    assert 0 < on_server.sum() < on_server.size  # a real mask: not empty, not everything
    iou = np.logical_and(in_page, on_server).sum() / np.logical_or(in_page, on_server).sum()
    assert iou >= 0.99, iou
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server) for u in urls), urls  # offline: nothing but EasyPhoto's own routes
    assert any(u.endswith("/assets/onnxruntime-web/ort-wasm-simd-threaded.wasm") for u in urls), urls


def test_regions_merge_and_undo_restores(server, browser, photo_astronaut, tmp_path):
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "easyphoto_sam_clear").click()
    canvas = browser.find_element(By.ID, "easyphoto_sam_canvas")
    _click(browser, canvas, 60, 80)
    _wait(browser, "const e = window.EasyPhotoSam.editor; return !e.busy && e.current", CLICK_TIMEOUT,
          "the click gave no mask")
    first = browser.execute_script("return Array.from(window.EasyPhotoSam.editor.mask().data.slice(0))")
    browser.find_element(By.ID, "easyphoto_sam_region").click()
    _click(browser, canvas, 170, 140)
    _wait(browser, "const e = window.EasyPhotoSam.editor; return !e.busy && e.current && e.regions.length === 1",
          CLICK_TIMEOUT, "the second region gave no mask")
    merged = np.asarray(browser.execute_script(
        "return Array.from(window.EasyPhotoSam.editor.mask().data)")) > 0
    assert (merged | (np.asarray(first) > 0)).sum() == merged.sum() >= (np.asarray(first) > 0).sum()
    browser.find_element(By.ID, "easyphoto_sam_undo").click()
    _wait(browser, "const e = window.EasyPhotoSam.editor; return !e.busy && e.clicks.length === 0", CLICK_TIMEOUT,
          "undo did not take the click back")
    browser.find_element(By.ID, "easyphoto_sam_undo").click()  # and the region: back to the first region's clicks
    assert browser.execute_script("const e = window.EasyPhotoSam.editor; return [e.regions.length, e.clicks.length]") \
        == [0, 1]


def test_a_tabs_photo_opens_in_the_editor_and_its_mask_comes_back(server, browser, photo_astronaut):
    from selenium.webdriver.common.by import By

    from easyphoto.segment.editor_store import mask_file, store_photo

    url, ctx = server
    pixels = np.asarray(Image.open(photo_astronaut).convert("RGB").resize((160, 120)))
    key = store_photo(ctx.paths, pixels)  # what the Digital model section does with its photo
    browser.get(f"{url}/easyphoto/v1/segment/editor?photo={key}")
    _wait(browser, "const e = window.EasyPhotoSam?.editor; return e && e.ready && e.embedding.key", READY_TIMEOUT,
          "the editor did not open the handed-over photo")
    assert browser.execute_script("return window.EasyPhotoSam.editor.embedding.key") == key
    canvas = browser.find_element(By.ID, "easyphoto_sam_canvas")
    _click(browser, canvas, 50, 60)
    _wait(browser, "const e = window.EasyPhotoSam.editor; return !e.busy && e.current", CLICK_TIMEOUT,
          "the click gave no mask")
    browser.find_element(By.ID, "easyphoto_sam_send").click()
    _wait(browser, "return window.EasyPhotoSam.editor.sent === true", CLICK_TIMEOUT, "the mask was not sent")
    in_page = np.asarray(browser.execute_script("return Array.from(window.EasyPhotoSam.editor.mask().data)")) > 0
    stored = np.asarray(Image.open(mask_file(ctx.paths, key))) > 0
    assert stored.shape == (120, 160) and np.array_equal(stored.ravel(), in_page)


def test_a_joint_dragged_in_the_pose_editor_comes_back_moved(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from easyphoto.pose.gallery import gallery_pose
    from easyphoto.pose.skeleton import skeleton_from_json, skeleton_to_json
    from easyphoto.segment.editor_store import pose_file, store_photo, store_pose

    url, ctx = server
    key = store_photo(ctx.paths, np.full((240, 160, 3), 90, np.uint8))
    body = gallery_pose("standing", (160, 240))
    store_pose(ctx.paths, key, skeleton_to_json([body], (160, 240)))  # what Preview pose hands over
    browser.get(f"{url}/easyphoto/v1/segment/pose-editor?photo={key}")
    _wait(browser, "const e = window.EasyPhotoPose?.editor; return e && e.ready", CLICK_TIMEOUT,
          "the pose editor did not open the pose")
    wrist = browser.find_element(By.ID, "easyphoto_pose_joint_7")  # left_wrist
    ActionChains(browser).drag_and_drop_by_offset(wrist, 30, -20).perform()
    browser.find_element(By.ID, "easyphoto_pose_send").click()
    _wait(browser, "return window.EasyPhotoPose.editor.sent === true", CLICK_TIMEOUT, "the pose was not sent")
    bodies, size = skeleton_from_json(pose_file(ctx.paths, key).read_text())
    moved = bodies[0][7, :2] - body[7, :2]
    assert size == (160, 240) and np.allclose(moved, (30, -20), atol=1.5), moved  # the svg shows photo pixels 1:1
    others = [i for i in range(18) if i != 7]
    assert np.allclose(bodies[0][others, :2], body[others, :2], atol=0.01)
