"""The standalone app as a newcomer gets it, driven in a real browser.

`bash run-standalone.sh` (the README's main command) starts the app from the test command's Forge venv (the pin set
the standalone install uses), and Debian's headless Chromium, driven by selenium through chromedriver, opens the UI,
uploads real photos, presses **Check photos** and reads the kept and dropped photos with their reasons. This is the
path a hung gradio queue, a 500 on `/` or a missing face stack breaks; screenshots of each step are saved under
$EASYPHOTO_ARTIFACTS (default .artifacts/) for CI to keep.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("EASYPHOTO_ARTIFACTS", ROOT / ".artifacts")) / "browser"
IN_CI = os.environ.get("CI") == "true"
START_TIMEOUT = 900  # a first run of run-standalone.sh may still have to install the pin set
CHECK_TIMEOUT = 300
UPLOAD_TIMEOUT = 120  # five small photos to loopback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(START_TIMEOUT + UPLOAD_TIMEOUT + 2 * CHECK_TIMEOUT)]

if os.environ.get("EASYPHOTO_PINSET") != "forge":
    # run-standalone.sh installs the standalone pin set into the venv it is given: only the Forge venv has it
    pytest.skip("runs in the forge pin set (run-tests.sh forge): the standalone app's pins", allow_module_level=True)


def _missing(what: str) -> None:
    """CI must run this test: a missing browser there is a failure, not a skip."""
    message = f"{what} (run-tests.sh installs Debian's chromium + chromium-driver and selenium)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from tests.kit.browser import chromium_driver

    driver = chromium_driver(tmp_path_factory.mktemp("chromium-profile"))
    if driver is None:
        _missing("no chromium / chromedriver on PATH, or selenium is not installed")
    yield driver
    driver.quit()


class StandaloneApp:
    """`bash run-standalone.sh --port 0 --data-dir DIR` in the background; `url` once it says where it serves."""

    def __init__(self, data_dir: Path):
        # gradio keeps uploads in GRADIO_TEMP_DIR (default /tmp/gradio, shared with anything else on the machine)
        env = {**os.environ, "EASYPHOTO_VENV": sys.prefix, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               "GRADIO_TEMP_DIR": str(data_dir / "gradio-uploads")}
        self.process = subprocess.Popen(
            ["bash", "run-standalone.sh", "--port", "0", "--data-dir", str(data_dir)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")  # end of output: the script exited

    def wait_for_url(self) -> str:
        while True:
            try:
                line = self.lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                raise AssertionError("run-standalone.sh printed nothing for a long time:\n" + "".join(self.log)) from None
            self.log.append(line)
            if not line:
                raise AssertionError("run-standalone.sh exited before serving:\n" + "".join(self.log))
            found = re.search(r"serving on (http://\S+?) ", line)
            if found:
                return found.group(1)

    def output(self) -> str:
        """Everything it printed so far (for a failure message)."""
        while True:
            try:
                self.log.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = StandaloneApp(tmp_path_factory.mktemp("standalone-data"))
    try:
        app.url = app.wait_for_url()
        yield app
    finally:
        app.stop()


def _shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _upload_set(photos_same_man, photo_other_person, tmp_path) -> tuple[list[Path], Path]:
    """Three photos of one man, one of another man, and a picture without a face (named so the report shows it)."""
    landscape = tmp_path / "landscape.png"
    Image.new("RGB", (640, 480), (70, 130, 180)).save(landscape)
    return [*photos_same_man, photo_other_person, landscape], landscape


def test_a_newcomer_checks_photos_in_the_browser(app, browser, photos_same_man, photo_other_person, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app.url)
    try:
        identity = WebDriverWait(browser, CHECK_TIMEOUT).until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "#easyphoto_train_identity textarea, #easyphoto_train_identity input")))
    except TimeoutException:
        _fail(browser, app, "01-not-opened", f"the UI did not show the identity field within {CHECK_TIMEOUT} s")
    _shot(browser, "01-opened")
    assert "Internal Server Error" not in browser.page_source

    uploads, landscape = _upload_set(photos_same_man, photo_other_person, tmp_path)
    identity.send_keys("newcomer")
    browser.find_element(By.CSS_SELECTOR, "#easyphoto_train_uploads input[type=file]").send_keys(
        "\n".join(str(p) for p in uploads))
    _wait_uploaded(browser, app, uploads)
    _shot(browser, "02-uploaded")

    browser.find_element(By.ID, "easyphoto_train_check").click()
    summary = _check_result(browser, app)
    _shot(browser, "03-checked")

    kept, total = map(int, re.search(r"(\d+) of (\d+) photos kept", summary).groups())
    assert total == len(uploads) and kept == len(photos_same_man), summary
    gallery = browser.find_element(By.ID, "easyphoto_train_gallery")
    captions = [c.get_attribute("textContent") for c in gallery.find_elements(By.CSS_SELECTOR, ".caption-label")]
    assert len(captions) == len(uploads), gallery.get_attribute("textContent")
    by_photo = {path.stem: next(c for c in captions if path.stem + path.suffix in c) for path in uploads}
    assert all("✓ kept" in by_photo[path.stem] for path in photos_same_man), captions
    assert "✗ dropped" in by_photo[photo_other_person.stem] and "different person" in by_photo[photo_other_person.stem]
    assert "✗ dropped" in by_photo[landscape.stem] and "no face" in by_photo[landscape.stem], captions
    # the captions are cut to one line on screen: the reasons are readable in full in the summary below them
    assert "different person" in summary and "no face found" in summary, summary


# What the summary says once the check has ended, however it ended (train_tab.check_photos_flow)
FINAL_SUMMARIES = ("photos kept", "Cannot check photos", "Invalid settings", "Photo check")


def _check_result(driver, app: StandaloneApp) -> str:
    """The summary once the check ended; on a timeout, or an end other than a report, a failure that shows what the
    page and the app said (the summary, any error toast, the app's output)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def summary(d) -> str:
        return d.find_element(By.ID, "easyphoto_train_summary").text

    def ended(d) -> str | bool:
        text, toasts = summary(d), d.find_elements(By.CSS_SELECTOR, ".toast-body")
        return text if any(s in text for s in FINAL_SUMMARIES) or toasts else False

    try:
        text = WebDriverWait(driver, CHECK_TIMEOUT).until(ended)
    except TimeoutException:
        text = f"(no end after {CHECK_TIMEOUT} s) {summary(driver)}"
    if "photos kept" in text:
        return text
    _fail(driver, app, "03-check-failed", f"the photo check did not report.\nsummary: {text}")


def _wait_uploaded(driver, app: StandaloneApp, uploads: list[Path]) -> None:
    """Until gradio has uploaded the files to the server and its file list names each one (stem, then extension);
    an error toast or a timeout fails at once, showing what the list, the page's console and the app said."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def listed(d) -> str:
        return d.find_element(By.ID, "easyphoto_train_uploads").get_attribute("textContent") or ""

    def ended(d) -> bool:
        return all(p.stem in listed(d) for p in uploads) or bool(d.find_elements(By.CSS_SELECTOR, ".toast-body"))

    try:
        WebDriverWait(driver, UPLOAD_TIMEOUT).until(ended)
    except TimeoutException:
        pass
    if not all(p.stem in listed(driver) for p in uploads):
        _fail(driver, app, "02-upload-failed", f"the upload did not list every photo within {UPLOAD_TIMEOUT} s.\n"
              f"file list: {' '.join(listed(driver).split())[:600]!r}")


def _fail(driver, app: StandaloneApp, shot: str, what: str) -> None:
    """Fail with what the page showed (error toasts, console) and what the app printed, without a traceback: CI
    keeps the end of the log, and this message is what explains the failure."""
    from selenium.webdriver.common.by import By

    _shot(driver, shot)
    from tests.kit.browser import console

    toasts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".toast-body")]
    pytest.fail(f"{what}\ntoasts: {toasts}\nbrowser console:\n" + "\n".join(console(driver))
                + f"\napp output (end):\n{app.output()[-3000:]}", pytrace=False)
