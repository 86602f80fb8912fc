"""Debian's headless Chromium driven by selenium, as the browser tests start it."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path


def chromium_driver(profile: Path):
    """A headless Chromium (no sandbox: CI runs as root), none of its own network traffic (a closed network refuses
    or drops it: updates, sync, field trials), a fresh profile, the page's console kept for failure messages.
    None when chromium, chromedriver or selenium is missing (the caller says so)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if not (chromium and driver_path):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2400",
                     "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def console(driver, last: int = 15) -> list[str]:
    """The page's last console lines (for failure messages)."""
    try:
        return [f"{e.get('level')} {e.get('message')}"[:300] for e in driver.get_log("browser")][-last:]
    except Exception as error:  # noqa: BLE001 - a driver without logs must not hide the failure itself
        return [f"(no console log: {error})"]


@contextmanager
def live_app(ctx):
    """The standalone API (no UI) of `ctx` served on a free loopback port for the length of the block: yields its
    base URL; the job queues are shut down afterwards."""
    import socket
    import threading

    import uvicorn

    from easyphoto import operations
    from easyphoto.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ctx, with_ui=False), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        operations.shutdown_all()
