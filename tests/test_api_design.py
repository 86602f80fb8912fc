"""POST /design (issue 16) on the standalone app: a palette layout drawn by route 1 on the
kit's tiny SD 1.5 with a tiny seg ControlNet, and every bad layout refused before a job or an upload exists."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
from PIL import Image

from easyphoto.design import layout as L
from easyphoto.generation import CONTROLNET_MODELS
from tests.kit.api import API, wait_final
from tests.kit.tiny_sd import torch_threads
from tests.test_design import H, W, png, two_classes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_palette_layout_becomes_an_image_of_its_size_white_outside(api_client, api_ctx, tiny_sd_dir,
                                                                      tiny_controlnet_dirs):
    shutil.copytree(tiny_controlnet_dirs["seg"], api_ctx.paths.controlnet_dir / CONTROLNET_MODELS["seg"])
    labels = two_classes()
    with torch_threads(1):
        job = api_client.post(f"{API}/design", json={"layout": b64(png(L.visualise(labels))),
                                                     "base": str(tiny_sd_dir),
                                                     "config": {"steps": 2, "seed": 4, "category": "dress"}})
        assert job.status_code == 202, job.text
        done = wait_final(api_client, job.json())
    assert done["state"] == "succeeded", done["error"]
    body = api_client.get(f"{API}/jobs/{job.json()['id']}/result").json()
    [image] = body["images"]
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(image))).convert("RGB"))
    assert out.shape == (H, W, 3) and (out[labels == L.BACKGROUND] == 255).all()
    assert body["route"] == "diffusion" and body["seeds"] == [4]


def test_bad_layouts_and_inputs_are_refused_before_any_job(api_client, api_ctx):
    outside = two_classes()
    outside[1, 2] = 77
    cases = [
        ({"layout": b64(png(outside))}, 422, "outside 0–45"),
        ({"layout": b64(png(np.full((H, W), 255, np.uint8)))}, 422, "empty"),
        ({"layout": b64(b"no png")}, 422, "not a readable image"),
        ({"layout": b64(png(two_classes())), "garment_id": "nobody"}, 404, "nobody"),
        ({"layout": b64(png(two_classes())), "config": {"route": "diffusion", "steps": 0}}, 422, "steps"),
    ]
    for body, status, words in cases:
        answer = api_client.post(f"{API}/design", json=body)
        assert answer.status_code == status and words in answer.text, (body.keys(), answer.text)
    assert api_client.get(f"{API}/jobs").json() == []  # nothing was queued


def test_train_a_native_generator_then_draw_with_it(api_client, api_ctx, tmp_path):
    from easyphoto import weights
    from easyphoto.design.smis.cache import build_cache
    from easyphoto.design.smis.fgvc6 import scan_dataset
    from tests.test_design_smis import SIZE, TINY, VGG_ID, write_png_dataset, write_tiny_vgg

    write_tiny_vgg(weights.get(VGG_ID).path(api_ctx.paths))
    dataset = write_png_dataset(tmp_path / "set", count=3)
    with torch_threads(1):
        job = api_client.post(f"{API}/design/train", json={"model_name": "shapes", "dataset": str(dataset),
                                                           "config": {**TINY, "steps": 2}})
        assert job.status_code == 202, job.text
        done = wait_final(api_client, job.json())
        assert done["state"] == "succeeded", done["error"]
        [model] = api_client.get(f"{API}/design/models").json()
        assert model["name"] == "shapes"
        losses = api_client.get(f"{API}/design/models/shapes/losses").json()
        assert [row["step"] for row in losses] == [1, 2]
        labels = np.asarray(build_cache(tmp_path / "cache", scan_dataset(dataset), SIZE).labels[0])
        draw = api_client.post(f"{API}/design", json={"layout": b64(png(labels)),
                                                      "config": {"route": "smis", "smis_model": "shapes", "seed": 3}})
        assert draw.status_code == 202, draw.text
        finished = wait_final(api_client, draw.json())
    assert finished["state"] == "succeeded", finished["error"]
    [image] = api_client.get(f"{API}/jobs/{draw.json()['id']}/result").json()["images"]
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(image))).convert("RGB"))
    assert out.shape == (SIZE, SIZE, 3) and (out[labels == L.BACKGROUND] == 255).all()
    wrong = api_client.post(f"{API}/design", json={"layout": b64(png(two_classes())),
                                                   "config": {"route": "smis", "smis_model": "shapes"}})
    assert wrong.status_code == 422 and f"needs {SIZE}×{SIZE}" in wrong.text
    missing = api_client.post(f"{API}/design/train", json={"model_name": "other", "dataset": str(tmp_path / "no")})
    assert missing.status_code in (404, 422) and "no" in missing.text
