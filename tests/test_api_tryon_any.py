"""REST zero-shot try-on (issue 15) through FastAPI's TestClient: POST /tryon with backend leffa / catvton / ootd
and GET /tryon/backends, on real photos (the kit's photo of Biden as the person, the skimage astronaut as the garment)
and the kit's tiny Leffa and CatVTON files in their published layouts. A Leffa job runs end to end with the rigged
tiny clothes parser (mask source 'parsing'); CatVTON is refused without the non-commercial opt-in and runs with it;
every bad input is a specific 4xx before any upload is written or a job exists."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from easyphoto.config import Settings
from easyphoto.context import save_settings_file
from easyphoto.portrait import templates as gallery
from tests.conftest import require_module
from tests.kit.api import API, png_b64, wait_final

require_module("cv2")

FAST = {"work_size": 64, "steps": 2, "seed": 7}  # the tiny backends at 64 px, two steps: seconds on a CPU


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert {"error", "phase", "message", "hint"} <= set(body), body
    return body


def install_backends(ctx, tiny_tryon_models, *names: str) -> None:
    """Copy the tiny backends' folders where the manifest puts the real ones (copies: Leffa converts its pickle to
    safetensors next to it on first use)."""
    for name in names:
        shutil.copytree(tiny_tryon_models / "tryon" / name, ctx.paths.models_root / "tryon" / name)


def allow_noncommercial(ctx) -> None:
    save_settings_file(ctx.paths, Settings(allow_noncommercial_tryon=True))


def uploads_of(ctx) -> list:
    folder = gallery.new_upload_folder(ctx.paths).parent
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def person(photo_other_person) -> Image.Image:
    """Biden at a quarter size (242×551): small enough for the CPU."""
    image = Image.open(photo_other_person).convert("RGB")
    return image.resize((image.width // 4, image.height // 4), Image.LANCZOS)


@pytest.fixture
def garment(photo_astronaut) -> Image.Image:
    return Image.open(photo_astronaut).convert("RGB").resize((128, 128), Image.LANCZOS)


def torso_mask(person: Image.Image) -> Image.Image:
    mask = Image.new("L", person.size, 0)
    width, height = person.size
    ImageDraw.Draw(mask).rectangle([width * 0.25, height * 0.3, width * 0.75, height * 0.6], fill=255)
    return mask


def body_of(person, garment=None, **extra) -> dict:
    body = {"backend": "leffa", "person": png_b64(person), "config": dict(FAST)}
    if garment is not None:
        body["garment_image"] = png_b64(garment)
    return {**body, **extra}


# ---------------------------------------------------------------------------------------------- GET /tryon/backends


def test_backends_list_licences_defaults_files_and_the_opt_in(api_client, api_ctx, tiny_tryon_models):
    listed = api_client.get(f"{API}/tryon/backends")
    assert listed.status_code == 200, listed.text
    by_name = {b["name"]: b for b in listed.json()}
    assert list(by_name) == ["leffa", "catvton", "ootd"]
    leffa, catvton, ootd = by_name["leffa"], by_name["catvton"], by_name["ootd"]
    assert leffa["licence_line"] == "Leffa: MIT (code and weights, franciszzj/Leffa) (commercial use allowed)"
    assert (leffa["commercial_use"], leffa["allowed"], leffa["steps"], leffa["guidance"]) == (True, True, 30, 2.5)
    assert leffa["variants"] == ["viton_hd", "dress_code"] and leffa["default_variant"] == "viton_hd"
    assert (catvton["steps"], ootd["steps"], ootd["guidance"]) == (50, 20, 2.0)
    assert catvton["categories"]["vitonhd"] == ["upper"]
    for noncommercial in (catvton, ootd):
        assert "NON-COMMERCIAL use only" in noncommercial["licence_line"] and "CC BY-NC-SA 4.0" in noncommercial["licence"]
        assert not noncommercial["commercial_use"] and not noncommercial["allowed"]
        assert noncommercial["setting"] == "allow_noncommercial_tryon"
    assert not any(b["files_present"] for b in by_name.values())
    assert "leffa-viton-hd" in leffa["missing_files"] and "leffa-dress-code" not in leffa["missing_files"]

    install_backends(api_ctx, tiny_tryon_models, "leffa")
    allow_noncommercial(api_ctx)
    after = {b["name"]: b for b in api_client.get(f"{API}/tryon/backends").json()}
    assert after["leffa"]["files_present"] and after["leffa"]["missing_files"] == []
    assert not after["catvton"]["files_present"] and after["catvton"]["allowed"] and after["ootd"]["allowed"]
    assert api_client.get(f"{API}/jobs").json() == []  # listing runs and downloads nothing


# ---------------------------------------------------------------------------------------------- a real Leffa job


def test_a_leffa_job_runs_end_to_end_and_its_png_names_the_backend_and_licence(
        api_client, api_ctx, tiny_tryon_models, tiny_segment, person, garment):
    from easyphoto.imageops import dilate
    from tests.kit.tiny_sd import torch_threads
    from tests.kit.tiny_segment import RIGGED_LABEL, colour_rule, install_tiny_segment

    install_backends(api_ctx, tiny_tryon_models, "leffa")
    install_tiny_segment(api_ctx.paths, tiny_segment, rigged=True, segmenter=False)  # mask source 'parsing'
    before = uploads_of(api_ctx)
    with torch_threads(1):
        job = api_client.post(f"{API}/tryon", json=body_of(person, garment))
        assert job.status_code == 202, job.text
        assert job.json()["kind"] == "tryon_any" and job.json()["params"]["config"]["backend"] == "leffa"
        done = wait_final(api_client, job.json())
    assert done["state"] == "succeeded", done["error"]
    body = api_client.get(f"{API}/jobs/{job.json()['id']}/result").json()
    assert (body["backend"], body["variant"]) == ("leffa", "viton_hd")
    assert body["licence"]["licence"].startswith("MIT") and body["licence"]["commercial_use"] is True
    [tryon] = body["tryons"]
    assert tryon["seed"] == 7 and 0.0 <= tryon["fidelity"]["score"] <= 1.0
    [image] = body["images"]
    png = Image.open(io.BytesIO(base64.b64decode(image)))
    assert png.format == "PNG" and png.size == person.size
    meta = json.loads(png.info["easyphoto"])
    assert meta["kind"] == "tryon_any" and meta["licence"]["backend"] == "leffa"
    assert meta["licence"]["licence"] == "MIT (code and weights, franciszzj/Leffa)"
    assert meta["config"]["mask_source"] == "parsing" and meta["steps"] == 2
    assert "EasyPhoto try-on backend: leffa viton_hd" in png.info["parameters"]
    assert "EasyPhoto commercial use: allowed" in png.info["parameters"]
    # the rigged parser's upper clothes are the red-dominant pixels: far from them the photo is kept exactly
    pixels, original = np.asarray(png.convert("RGB")), np.asarray(person)
    upper = np.where(colour_rule(original) == RIGGED_LABEL, 255, 0).astype(np.uint8)
    far = dilate(upper, meta["config"]["mask_dilation"] + 8) == 0
    assert far.any() and (pixels[far] == original[far]).all() and not np.array_equal(pixels, original)
    assert wait_for_uploads_gone(api_ctx, before)


def wait_for_uploads_gone(ctx, before, timeout: float = 30) -> bool:
    """The upload folder goes when the job has ended (a thread waits on it); the timeout is a failure guard."""
    import time

    deadline = time.monotonic() + timeout
    while uploads_of(ctx) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    return uploads_of(ctx) == before


# ---------------------------------------------------------------------------------------------- CatVTON: the opt-in


def test_catvton_is_refused_without_the_opt_in_and_runs_with_it(api_client, api_ctx, tiny_tryon_models, person,
                                                                 garment):
    from tests.kit.tiny_sd import torch_threads

    install_backends(api_ctx, tiny_tryon_models, "catvton")
    before = uploads_of(api_ctx)
    mask = png_b64(torso_mask(person))
    request = body_of(person, garment, backend="catvton", mask=mask,
                      config={**FAST, "mask_source": "mask", "variant": "vitonhd"})
    refused = error_of(api_client.post(f"{API}/tryon", json=request), 403)
    assert refused["error"] == "NonCommercialNotAllowed" and "CatVTON: CC BY-NC-SA 4.0" in refused["message"]
    assert "allow_noncommercial_tryon" in refused["hint"] and "Leffa (MIT)" in refused["hint"]
    assert api_client.get(f"{API}/jobs").json() == [] and uploads_of(api_ctx) == before

    allow_noncommercial(api_ctx)
    with torch_threads(1):
        job = api_client.post(f"{API}/tryon", json=request)
        assert job.status_code == 202, job.text
        done = wait_final(api_client, job.json())
    assert done["state"] == "succeeded", done["error"]
    body = api_client.get(f"{API}/jobs/{job.json()['id']}/result").json()
    assert (body["backend"], body["variant"]) == ("catvton", "vitonhd")
    assert body["licence"]["commercial_use"] is False and "CC BY-NC-SA 4.0" in body["licence"]["licence"]
    png = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert "EasyPhoto commercial use: not allowed" in png.info["parameters"]
    # a drawn mask: everything outside it is the photo's own pixels
    outside = np.asarray(torso_mask(person)) == 0
    pixels, original = np.asarray(png.convert("RGB")), np.asarray(person)
    assert (pixels[outside] == original[outside]).all() and not (pixels[~outside] == original[~outside]).all()


# ---------------------------------------------------------------------------------------------- refusals


def test_bad_zero_shot_requests_are_specific_and_write_nothing(api_client, api_ctx, person, garment):
    before = uploads_of(api_ctx)
    no_garment = error_of(api_client.post(f"{API}/tryon", json=body_of(person)), 422)
    assert "needs the garment" in no_garment["message"] and no_garment["hint"]
    unknown = api_client.post(f"{API}/tryon", json=body_of(person, garment, backend="idm-vton"))
    assert unknown.status_code == 422 and "backend" in unknown.json()["message"]
    cases = [
        (body_of(person, garment, config={"sede": 1}), 422, "config (AnyGarmentConfig for backend 'leffa'): sede"),
        (body_of(person, garment, config={"first_steps": 3}), 422, "first_steps: unknown field"),  # TryOnConfig's
        (body_of(person, garment, config={"backend": "ootd"}), 422, "config.backend is 'ootd' but backend is 'leffa'"),
        (body_of(person, garment, config={"variant": "hd"}), 422, "Leffa has no variant 'hd'"),
        (body_of(person, garment, base="/x/sd15.safetensors"), 422, "base is used by backend 'lora' only"),
        (body_of(person, garment_id="nobody"), 404, "No garment named 'nobody'"),
        (body_of(person, garment_id="Bad Id!"), 422, "Bad Id!"),
        (body_of(person, garment_image="%%%"), 422, "garment_image: not valid base64"),
        (body_of(person, garment_image=base64.b64encode(b"no photo here").decode()), 422, "garment_image:"),
        (body_of(person, garment, config={**FAST, "mask_source": "mask"}), 422, "no mask was sent"),
        (body_of(person, garment, points=[[5, 5, True]]), 422, "mask_source is 'parsing', so they would be ignored"),
        (body_of(person, garment, points=[[5000, 5, True]], config={"mask_source": "points"}), 422,
         "is not inside the person photo (242×551)"),
        ({**body_of(person, garment), "person": "%%%"}, 422, "person: not valid base64"),
    ]
    for request, status, words in cases:
        answer = error_of(api_client.post(f"{API}/tryon", json=request), status)
        assert words in answer["message"], (words, answer)
    assert api_client.get(f"{API}/jobs").json() == [] and uploads_of(api_ctx) == before


def test_the_lora_backend_keeps_its_own_fields(api_client, api_ctx, person, garment):
    """backend 'lora' (the default) is today's try-on: a garment_id, TryOnConfig, no garment photo."""
    lora = {"person": png_b64(person)}
    missing = error_of(api_client.post(f"{API}/tryon", json=lora), 422)
    assert "backend 'lora' needs garment_id" in missing["message"] and "leffa" in missing["hint"]
    photo = error_of(api_client.post(f"{API}/tryon", json={**lora, "garment_id": "suit",
                                                          "garment_image": png_b64(garment)}), 422)
    assert "garment_image is used by the zero-shot backends" in photo["message"]
    zero_shot_field = error_of(api_client.post(f"{API}/tryon", json={**lora, "garment_id": "suit",
                                                                    "config": {"work_size": 64}}), 422)
    assert "config (TryOnConfig for backend 'lora'): work_size: unknown field" in zero_shot_field["message"]
    assert error_of(api_client.post(f"{API}/tryon", json={**lora, "garment_id": "nobody"}), 404)[
        "error"] == "GarmentNotFound"
    assert api_client.get(f"{API}/jobs").json() == []


def test_a_stored_garment_is_the_garment_when_no_photo_is_sent(api_client, api_ctx, tiny_tryon_models, person,
                                                               garment):
    """garment_id names any stored garment (trained or not): its photo, cut out by its uploaded mask."""
    from tests.kit.tiny_sd import torch_threads

    install_backends(api_ctx, tiny_tryon_models, "leffa")
    assert api_client.post(f"{API}/garments", json={"id": "suit", "photos": [png_b64(garment)]}).status_code == 201
    [photo] = [p.name for p in api_ctx.garments.get("suit").photos.iterdir()]
    suit = Image.new("L", garment.size, 0)
    ImageDraw.Draw(suit).rectangle([20, 60, 108, 128], fill=255)
    assert api_client.put(f"{API}/garments/suit/masks/{photo}", json={"mask": png_b64(suit)}).status_code == 204
    request = body_of(person, garment_id="suit", mask=png_b64(torso_mask(person)),
                      config={**FAST, "mask_source": "mask"})
    with torch_threads(1):
        job = api_client.post(f"{API}/tryon", json=request)
        assert job.status_code == 202, job.text
        done = wait_final(api_client, job.json())
    assert done["state"] == "succeeded", done["error"]
    assert done["params"]["garment_id"] == "suit" and done["params"]["garment_image"] is None
    [tryon] = api_client.get(f"{API}/jobs/{job.json()['id']}/result").json()["tryons"]
    with Image.open(tryon["file"]) as png:
        assert json.loads(png.info["easyphoto"])["garment"] == "suit"


def test_openapi_lists_the_backends_route(api_client):
    paths = api_client.get("/openapi.json").json()["paths"]
    assert "get" in paths[f"{API}/tryon/backends"] and "post" in paths[f"{API}/tryon"]
    schema = api_client.get("/openapi.json").json()["components"]["schemas"]["TryOnRequest"]["properties"]
    assert {"backend", "garment_image", "garment_id", "config"} <= set(schema)


def test_the_config_schema_of_each_backend_is_served(api_client):
    lora = api_client.get("/easyphoto/v1/tryon/config-schema").json()
    assert "first_steps" in lora["properties"] and "backend" not in lora["properties"]
    leffa = api_client.get("/easyphoto/v1/tryon/config-schema", params={"backend": "leffa"}).json()
    assert {"backend", "work_size", "reuse_reference"} <= set(leffa["properties"])
    unknown = api_client.get("/easyphoto/v1/tryon/config-schema", params={"backend": "viton"})
    assert unknown.status_code == 422 and "leffa" in unknown.json()["hint"]
