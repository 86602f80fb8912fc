"""Helpers of the REST tests: images as the API takes them, and waiting for a job through the API."""

from __future__ import annotations

import base64
import io
import time

from PIL import Image

API = "/easyphoto/v1"


def png_b64(image: Image.Image) -> str:
    """The image as a base64 PNG, as a client sends it."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def wait_final(client, job: dict, timeout: float = 600) -> dict:
    """The job's record once it has ended (GET /jobs/{id}); the timeout is a failure guard, nothing asserts on it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"{API}/jobs/{job['id']}").json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job['id']} did not finish in {timeout} s")
