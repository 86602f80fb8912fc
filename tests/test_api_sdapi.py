"""The WebUI-compatible /sdapi/v1/txt2img and /img2img of the standalone server (issue 14), on the tiny diffusers
model: the WebUI's request and response shapes, seeds and batches, LoRAs named in the prompt, inpainting that keeps
the unmasked pixels, and the refusals of what this backend does not do (never silently ignored)."""

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from easyphoto.app import create_app
from tests.kit.api import png_b64

FAST = {"steps": 2, "width": 64, "height": 64, "seed": 7, "cfg_scale": 5.0}


@pytest.fixture
def base(tiny_sd_dir) -> dict:
    """The tiny SD 1.5 folder chosen the WebUI's way: override_settings.sd_model_checkpoint."""
    return {"override_settings": {"sd_model_checkpoint": str(tiny_sd_dir)}}


def decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def test_txt2img_answers_in_the_webui_shape_with_seeds_per_image(api_client, base):
    from tests.kit.tiny_sd import torch_threads

    with torch_threads(1):
        response = api_client.post("/sdapi/v1/txt2img", json={"prompt": "a red dress", **FAST, **base, "batch_size": 2,
                                                          "restore_faces": False, "send_images": True})
        again = api_client.post("/sdapi/v1/txt2img", json={"prompt": "a red dress", **FAST, **base, "batch_size": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    info = json.loads(body["info"])
    assert info["all_seeds"] == [7, 8] and info["seed"] == 7 and len(body["images"]) == 2
    assert all(decode(image).shape == (64, 64, 3) for image in body["images"])
    assert not np.array_equal(decode(body["images"][0]), decode(body["images"][1]))  # two seeds, two images
    assert np.array_equal(decode(body["images"][0]), decode(again.json()["images"][0]))  # same seed, same image
    assert body["parameters"]["prompt"] == "a red dress" and "Seed: 7" in info["infotexts"][0]
    quiet = api_client.post("/sdapi/v1/txt2img", json={"prompt": "x", **FAST, **base, "send_images": False}).json()
    assert quiet["images"] == [] and json.loads(quiet["info"])["all_seeds"] == [7]


def test_a_lora_named_in_the_prompt_is_applied(api_client, api_ctx, base, tiny_sd_dir):
    from tests.kit.tiny_sd import torch_threads
    from tests.test_tryon_pipeline import tiny_lora

    api_ctx.paths.lora_dir.mkdir(parents=True, exist_ok=True)
    tiny_lora(tiny_sd_dir, api_ctx.paths.lora_dir / "ada.safetensors")
    with torch_threads(1):
        plain = api_client.post("/sdapi/v1/txt2img", json={"prompt": "a portrait", **FAST, **base}).json()
        tagged = api_client.post("/sdapi/v1/txt2img", json={"prompt": "a portrait, <lora:ada:0.8>", **FAST, **base})
    assert tagged.status_code == 200, tagged.text
    assert not np.array_equal(decode(plain["images"][0]), decode(tagged.json()["images"][0]))
    assert json.loads(tagged.json()["info"])["infotexts"][0].startswith("a portrait <lora:ada:0.8>")
    missing = api_client.post("/sdapi/v1/txt2img", json={"prompt": "<lora:nobody:1>", **FAST, **base})
    assert missing.status_code == 404 and "nobody.safetensors" in missing.json()["message"]


def test_img2img_with_a_mask_repaints_only_the_mask(api_client, base, photo_astronaut):
    from tests.kit.tiny_sd import torch_threads

    init = Image.open(photo_astronaut).convert("RGB").resize((64, 64), Image.LANCZOS)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    with torch_threads(1):
        response = api_client.post("/sdapi/v1/img2img", json={
            "init_images": [png_b64(init)], "mask": png_b64(mask), "mask_blur": 0, "denoising_strength": 1.0,
            "inpainting_fill": 1, **FAST, **base})
    assert response.status_code == 200, response.text
    out, original = decode(response.json()["images"][0]), np.asarray(init)
    assert np.array_equal(out[:, 32:], original[:, 32:]) and not np.array_equal(out[:, :32], original[:, :32])
    assert json.loads(response.json()["info"])["notes"] == ["inpaint_full_res: the whole image was processed"]


@pytest.mark.parametrize("extra, status, words", [
    ({"enable_hr": True}, 422, "enable_hr = True is not supported"),
    ({"alwayson_scripts": {"controlnet": {}}}, 422, "alwayson_scripts"),
    ({"denoising_strength": 0.5}, 422, "hires fix"),
    ({"override_settings": {"CLIP_stop_at_last_layers": 2}}, 422, "CLIP_stop_at_last_layers"),
    ({"override_settings": {"sd_model_checkpoint": "nothere.safetensors"}}, 422, "nothere.safetensors"),
    ({"prompt": "<lora:../x:1>"}, 422, "not a LoRA name"),
    ({"steps": 0}, 422, "steps"),
    ({"sampler": "Euler"}, 422, "sampler"),
])
def test_txt2img_refusals_name_the_field(api_client, extra, status, words):
    response = api_client.post("/sdapi/v1/txt2img", json={**FAST, **extra})
    assert response.status_code == status and words in response.text, response.text
    assert api_client.get("/easyphoto/v1/jobs").json() == []  # refused before any job


def test_img2img_refusals(api_client, photo_astronaut):
    image = png_b64(Image.open(photo_astronaut).convert("RGB").resize((64, 64)))
    two = api_client.post("/sdapi/v1/img2img", json={"init_images": [image, image], **FAST})
    assert two.status_code == 422 and "exactly one" in two.json()["message"]
    assert api_client.post("/sdapi/v1/img2img", json={"init_images": ["%%%"], **FAST}).status_code == 422
    assert api_client.post("/sdapi/v1/img2img", json={**FAST}).status_code == 422  # no init_images
    fill = api_client.post("/sdapi/v1/img2img", json={"init_images": [image], "inpainting_fill": 7, **FAST})
    assert fill.status_code == 422 and "inpainting_fill" in fill.json()["message"]
    invert = api_client.post("/sdapi/v1/img2img", json={"init_images": [image], "inpainting_mask_invert": 1, **FAST})
    assert invert.status_code == 422 and "inpainting_mask_invert" in invert.json()["message"]
    assert api_client.get("/easyphoto/v1/jobs").json() == []


def test_a_server_open_beyond_loopback_without_a_token_refuses_it(api_ctx):
    open_server = TestClient(create_app(api_ctx, with_ui=False, host="0.0.0.0"), raise_server_exceptions=False)
    response = open_server.post("/sdapi/v1/txt2img", json={"prompt": "x"})
    assert response.status_code == 403 and "--token" in response.json()["hint"]


def test_without_a_base_model_it_says_which_file_before_any_job(api_client, photo_astronaut):
    missing = api_client.post("/sdapi/v1/txt2img", json={"prompt": "x", **FAST})
    assert missing.status_code == 409 and missing.json()["error"] == "MissingWeights", missing.text
    image = png_b64(Image.open(photo_astronaut).convert("RGB").resize((64, 64)))
    small = png_b64(Image.new("L", (32, 32), 255))
    misfit = api_client.post("/sdapi/v1/img2img", json={"init_images": [image], "mask": small, **FAST})
    assert misfit.status_code == 422 and "32×32" in misfit.json()["message"]
    assert api_client.get("/easyphoto/v1/jobs").json() == []
