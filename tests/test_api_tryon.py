"""REST /garments and /tryon (issue 13) through FastAPI's TestClient, on real photos (the skimage astronaut as the
garment photo, her suit as the garment; the kit's photo of Biden as the person): garments CRUD, masks and clicks,
the dataset job and its captions, the refusals of train and try-on before any job or upload exists, and one try-on
job that really runs on the tiny diffusers model."""

import base64
import io
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from easyphoto import operations
from easyphoto.app import create_app
from easyphoto.context import standalone_context
from easyphoto.portrait import templates as gallery

API = "/easyphoto/v1"
SIDE = 128  # the garment photo, downscaled: small images keep the CPU work small
SUIT = (22, 60, 106, 128)  # the astronaut's suit in the 128 px photo: a box around her torso (x0, y0, x1, y1)


@pytest.fixture
def ctx(tmp_path):
    context = standalone_context(tmp_path, offline=True)
    yield context
    operations.shutdown_all()


@pytest.fixture
def client(ctx):
    return TestClient(create_app(ctx, with_ui=False), raise_server_exceptions=False)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def suit_photo(photo_astronaut) -> bytes:
    """The astronaut at 128×128, PNG."""
    return png_bytes(Image.open(photo_astronaut).convert("RGB").resize((SIDE, SIDE), Image.LANCZOS))


def suit_mask(size=(SIDE, SIDE), box=SUIT) -> bytes:
    """White ellipse over the suit on black: the garment mask a user paints."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse([round(v * size[0] / SIDE) for v in box], fill=255)
    return png_bytes(mask)


def wait_final(client, job, timeout=300):
    deadline = time.monotonic() + timeout  # a failure guard only: nothing asserts on the time taken
    while time.monotonic() < deadline:
        record = client.get(f"{API}/jobs/{job['id']}").json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job['id']} did not finish in {timeout} s")


def error_of(response, status: int) -> dict:
    """The error body {error, phase, message, hint} of a response that must have `status`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert {"error", "phase", "message", "hint"} <= set(body), body
    return body


def garment_with_photo(client, ctx, suit_photo, garment_id="suit") -> str:
    created = client.post(f"{API}/garments", json={"id": garment_id, "photos": [b64(suit_photo)]})
    assert created.status_code == 201, created.text
    [photo] = [p.name for p in ctx.garments.get(garment_id).photos.iterdir()]
    return photo


# ---------------------------------------------------------------------------------------------- garments CRUD


def test_garment_lifecycle_with_a_real_photo(client, ctx, suit_photo, photo_other_person):
    assert client.get(f"{API}/garments").json() == []
    created = client.post(f"{API}/garments", json={"id": "suit", "photos": ["data:image/png;base64," + b64(suit_photo)]})
    assert created.status_code == 201
    lora_file = str(ctx.paths.lora_dir / "suit.safetensors")
    assert created.json() == {"id": "suit", "photos": 1, "masks": 0, "dataset_images": 0, "kept": None,
                              "category": None, "has_lora": False, "lora_file": lora_file}
    [stored] = ctx.garments.get("suit").photos.iterdir()
    assert stored.read_bytes() == suit_photo and stored.suffix == ".png"  # byte for byte, named by its format
    more = client.post(f"{API}/garments/suit/photos", json={"photos": [b64(suit_photo), b64(photo_other_person.read_bytes())]})
    assert more.status_code == 200 and more.json()["photos"] == 2  # the same bytes again: not stored twice
    assert [g["id"] for g in client.get(f"{API}/garments").json()] == ["suit"]
    assert client.get(f"{API}/garments/suit").json()["photos"] == 2
    again = error_of(client.post(f"{API}/garments", json={"id": "suit"}), 422)
    assert "already exists" in again["message"] and client.get(f"{API}/garments/suit").json()["photos"] == 2
    root = ctx.garments.get("suit").root
    assert client.delete(f"{API}/garments/suit").status_code == 204
    assert not root.exists() and client.get(f"{API}/garments").json() == []
    assert error_of(client.get(f"{API}/garments/suit"), 404)["error"] == "GarmentNotFound"
    assert client.delete(f"{API}/garments/suit").status_code == 404


def test_a_non_image_upload_stores_nothing_and_creates_no_garment(client, ctx, suit_photo):
    not_image = b64(b"just some text, not a photo")
    bad = error_of(client.post(f"{API}/garments", json={"id": "coat", "photos": [b64(suit_photo), not_image]}), 422)
    assert "upload_01" in bad["message"] and "not stored" in bad["message"]
    assert client.get(f"{API}/garments").json() == [] and not ctx.garments.exists("coat")
    garment_with_photo(client, ctx, suit_photo, "coat")
    worse = error_of(client.post(f"{API}/garments/coat/photos", json={"photos": [not_image]}), 422)
    assert "not stored" in worse["message"] and client.get(f"{API}/garments/coat").json()["photos"] == 1
    broken = error_of(client.post(f"{API}/garments/coat/photos", json={"photos": ["%%%"]}), 422)
    assert broken["message"] == "photos[0]: not valid base64."


def test_garment_and_identity_ids_exclude_each_other(client, ctx, suit_photo):
    assert client.post(f"{API}/identities", json={"id": "anna"}).status_code == 201
    taken = error_of(client.post(f"{API}/garments", json={"id": "anna"}), 409)
    assert "anna" in taken["message"] and not ctx.garments.exists("anna")
    with_photos = error_of(client.post(f"{API}/garments", json={"id": "anna", "photos": [b64(suit_photo)]}), 409)
    assert with_photos["message"] == taken["message"] and not ctx.garments.exists("anna")
    assert client.post(f"{API}/garments", json={"id": "scarf"}).status_code == 201
    other = error_of(client.post(f"{API}/identities", json={"id": "scarf"}), 409)
    assert "scarf" in other["message"] and not ctx.identities.exists("scarf")


@pytest.mark.parametrize("path", ["/garments/..%2Fetc", "/garments/Suit!", "/garments/" + "x" * 200])
def test_hostile_garment_ids_are_refused(client, ctx, path):
    assert client.get(API + path).status_code in (404, 422)
    assert client.delete(API + path).status_code in (404, 422)
    assert client.post(f"{API}/garments", json={"id": path.rpartition("/")[2].replace("%2F", "/")}).status_code == 422
    assert client.get(f"{API}/garments").json() == []
    assert not ctx.paths.garments_dir.exists() or not any(ctx.paths.garments_dir.iterdir())


@pytest.mark.parametrize("name", ["..%2Fgarment.json", "%2E%2E", "%2Fetc%2Fpasswd", "masks"])
def test_photo_names_cannot_reach_other_files(client, ctx, suit_photo, name):
    """(A literal '..' never reaches the server: the HTTP client folds it into the path, as browsers do.)"""
    photo = garment_with_photo(client, ctx, suit_photo)
    layout = ctx.garments.get("suit")
    make_trained(ctx, "suit", lora_bytes=b"x")
    for response in (client.delete(f"{API}/garments/suit/photos/{name}"),
                     client.put(f"{API}/garments/suit/masks/{name}", json={"mask": b64(suit_mask())}),
                     client.put(f"{API}/garments/suit/points/{name}", json={"points": [[1, 1, True]]})):
        assert response.status_code in (404, 422), response.text
    assert (layout.root / "garment.json").is_file() and layout.masks.is_dir() and not layout.points.exists()
    assert [p.name for p in layout.photos.iterdir()] == [photo]


def test_unknown_fields_are_422_naming_them(client, ctx, suit_photo):
    photo = garment_with_photo(client, ctx, suit_photo)
    cases = [("post", "/garments", {"id": "x", "colour": "red"}, "colour"),
             ("post", "/garments/suit/photos", {"photos": [], "extra": 1}, "extra"),
             ("put", f"/garments/suit/masks/{photo}", {"mask": b64(suit_mask()), "invert": True}, "invert"),
             ("put", f"/garments/suit/points/{photo}", {"points": [], "labels": [1]}, "labels"),
             ("put", "/garments/suit/captions", {"file_name": "train/0.png", "text": "x", "tags": []}, "tags"),
             ("post", "/garments/suit/dataset", {"dataset": {"mask_sorce": "mask"}}, "mask_sorce"),
             ("post", "/garments/suit/train", {"config": {"rnak": 4}}, "rnak"),
             ("post", "/tryon", {"garment_id": "suit", "person": "aGk=", "config": {"sede": 1}}, "sede"),
             ("post", "/tryon", {"garment_id": "suit", "person": "aGk=", "prompt": "x"}, "prompt")]
    for method, path, body, field in cases:
        response = getattr(client, method)(API + path, json=body)
        assert response.status_code == 422 and field in response.json()["message"], (path, response.text)
    assert client.get(f"{API}/jobs").json() == [] and client.get(f"{API}/garments").json()[0]["masks"] == 0


# ---------------------------------------------------------------------------------------------- photos, masks, clicks


def test_photo_delete_takes_its_mask_and_clicks(client, ctx, suit_photo):
    photo = garment_with_photo(client, ctx, suit_photo)
    layout = ctx.garments.get("suit")
    assert client.put(f"{API}/garments/suit/masks/{photo}", json={"mask": b64(suit_mask())}).status_code == 204
    assert client.put(f"{API}/garments/suit/points/{photo}", json={"points": [[64, 90, True]]}).status_code == 204
    assert client.get(f"{API}/garments/suit").json()["masks"] == 1
    assert json.loads(layout.points.read_text())[photo]["points"] == [[64.0, 90.0, True]]
    assert client.delete(f"{API}/garments/suit/photos/nope.png").status_code == 404
    assert client.delete(f"{API}/garments/suit/photos/{photo}").status_code == 204
    assert client.get(f"{API}/garments/suit").json() | {"lora_file": ""} == {
        "id": "suit", "photos": 0, "masks": 0, "dataset_images": 0, "kept": None, "category": None,
        "has_lora": False, "lora_file": ""}
    assert not (layout.masks / f"{photo}.png").exists() and photo not in json.loads(layout.points.read_text())


def test_mask_upload_is_stored_binary_and_removable(client, ctx, suit_photo):
    photo = garment_with_photo(client, ctx, suit_photo)
    half = suit_mask(size=(SIDE // 2, SIDE // 2))  # drawn on a half-size preview: scaled to the photo
    assert client.put(f"{API}/garments/suit/masks/{photo}", json={"mask": "data:image/png;base64," + b64(half)}
                      ).status_code == 204
    stored = np.asarray(Image.open(ctx.garments.get("suit").masks / f"{photo}.png"))
    assert stored.shape == (SIDE, SIDE) and set(np.unique(stored)) == {0, 255}
    assert stored[SIDE // 2 + 30, SIDE // 2] == 255 and stored[2, 2] == 0
    assert client.delete(f"{API}/garments/suit/masks/{photo}").status_code == 204
    assert client.get(f"{API}/garments/suit").json()["masks"] == 0
    assert client.put(f"{API}/garments/suit/masks/other.png", json={"mask": b64(half)}).status_code == 404
    assert client.put(f"{API}/garments/nobody/masks/{photo}", json={"mask": b64(half)}).status_code == 404


def test_bad_masks_are_specific_4xx_and_keep_the_stored_one(client, ctx, suit_photo):
    photo = garment_with_photo(client, ctx, suit_photo)
    good = suit_mask()
    assert client.put(f"{API}/garments/suit/masks/{photo}", json={"mask": b64(good)}).status_code == 204
    target = ctx.garments.get("suit").masks / f"{photo}.png"
    before = target.read_bytes()
    cases = [("%%% not base64 %%%", "not valid base64"),
             ("", "empty"),
             (b64(b"plain text, no image"), "not an image"),
             (b64(png_bytes(Image.new("L", (SIDE, SIDE // 2), 255))), "another shape"),
             (b64(png_bytes(Image.new("L", (SIDE, SIDE), 0))), "empty: no pixel is painted"),
             ("data:text/plain;base64," + b64(good), "expected image/"),
             (b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "could not be decoded")]
    for value, words in cases:
        body = error_of(client.put(f"{API}/garments/suit/masks/{photo}", json={"mask": value}), 422)
        assert words in body["message"], (words, body)
    assert target.read_bytes() == before and client.get(f"{API}/garments/suit").json()["masks"] == 1


def test_clicks_are_checked_against_the_photo(client, ctx, suit_photo):
    photo = garment_with_photo(client, ctx, suit_photo)
    points = ctx.garments.get("suit").points
    url = f"{API}/garments/suit/points/{photo}"
    assert client.put(url, json={"points": [[60, 90, True], [5, 5, False]], "boxes": [list(SUIT)]}).status_code == 204
    kept = points.read_text()
    outside = error_of(client.put(url, json={"points": [[SIDE + 10, 5, True]]}), 422)
    assert f"outside {photo} ({SIDE}×{SIDE})" in outside["message"] and outside["phase"] == "garment"
    box = error_of(client.put(url, json={"boxes": [[50, 50, 10, 10]]}), 422)
    assert "not inside" in box["message"]
    negative = error_of(client.put(url, json={"points": [[60, 90, False]]}), 422)
    assert "all negative" in negative["message"]
    assert client.put(url, json={"points": [[60, 90]]}).status_code == 422  # not [x, y, positive]
    assert client.put(url, json={"points": [["NaN", 2, True]]}).status_code == 422
    assert points.read_text() == kept  # every refusal left the stored clicks alone
    assert client.put(url, json={}).status_code == 204 and json.loads(points.read_text()) == {}  # no clicks: forgotten


# ---------------------------------------------------------------------------------------------- dataset and train


def build_dataset(client, ctx, suit_photo, garment_id="suit") -> dict:
    """A garment whose one photo has an uploaded mask, and its dataset built by the job (mask source 'mask')."""
    photo = garment_with_photo(client, ctx, suit_photo, garment_id)
    assert client.put(f"{API}/garments/{garment_id}/masks/{photo}", json={"mask": b64(suit_mask())}).status_code == 204
    dataset = {"mask_source": "mask", "tagger": False, "resolution": 256, "category": "upper"}
    job = client.post(f"{API}/garments/{garment_id}/dataset", json={"dataset": dataset})
    assert job.status_code == 202 and job.json()["kind"] == "garment_dataset"
    return wait_final(client, job.json())


def test_dataset_job_report_and_captions(client, ctx, suit_photo):
    assert error_of(client.get(f"{API}/garments/nobody/report"), 404)["error"] == "GarmentNotFound"
    client.post(f"{API}/garments", json={"id": "early"})
    assert "has not been built" in error_of(client.get(f"{API}/garments/early/report"), 409)["message"]
    assert "not been built yet" in error_of(client.get(f"{API}/garments/early/captions"), 409)["message"]
    done = build_dataset(client, ctx, suit_photo)
    assert done["state"] == "succeeded", done
    report = client.get(f"{API}/garments/suit/report").json()
    assert report["kept"] == 1 and report["photos"][0]["mask_source"] == "uploaded"
    assert client.get(f"{API}/garments/suit").json() | {"lora_file": ""} == {
        "id": "suit", "photos": 1, "masks": 1, "dataset_images": 1, "kept": 1, "category": "upper",
        "has_lora": False, "lora_file": ""}
    [entry] = client.get(f"{API}/garments/suit/captions").json()
    assert entry["text"].startswith("suit_garment") and (ctx.garments.get("suit").dataset / entry["file_name"]).is_file()
    changed = client.put(f"{API}/garments/suit/captions", json={"file_name": entry["file_name"],
                                                                "text": "  suit_garment,   white   suit "})
    assert changed.status_code == 200 and changed.json()["text"] == "suit_garment, white suit"
    for text, words in (("   ", "is empty"), ("x" * 5000, "characters; at most")):
        refused = error_of(client.put(f"{API}/garments/suit/captions", json={"file_name": entry["file_name"],
                                                                            "text": text}), 422)
        assert words in refused["message"]
    assert client.put(f"{API}/garments/suit/captions", json={"file_name": "train/99.png", "text": "x"}
                      ).status_code == 404
    assert client.get(f"{API}/garments/suit/captions").json() == [{"file_name": entry["file_name"],
                                                                   "text": "suit_garment, white suit"}]


def test_dataset_refusals_come_before_any_job(client, ctx, suit_photo):
    client.post(f"{API}/garments", json={"id": "bare"})
    empty = error_of(client.post(f"{API}/garments/bare/dataset"), 400)
    assert "has no photos yet" in empty["message"] and empty["phase"] == "dataset"
    garment_with_photo(client, ctx, suit_photo)
    unmasked = error_of(client.post(f"{API}/garments/suit/dataset", json={"dataset": {"mask_source": "mask"}}), 400)
    assert "has an uploaded mask, and the mask source is 'mask'" in unmasked["message"] and "masks" in unmasked["hint"]
    unclicked = error_of(client.post(f"{API}/garments/suit/dataset", json={"dataset": {"mask_source": "points"}}), 400)
    assert "has clicks or a mask" in unclicked["message"]
    assert client.post(f"{API}/garments/nobody/dataset").status_code == 404
    assert client.post(f"{API}/garments/suit/dataset", json={"dataset": {"resolution": 300}}).status_code == 422
    assert client.get(f"{API}/jobs").json() == []


def test_train_refusals_come_before_any_job(client, ctx, suit_photo):
    assert error_of(client.post(f"{API}/garments/nobody/train"), 404)["error"] == "GarmentNotFound"
    garment_with_photo(client, ctx, suit_photo)
    no_base = client.post(f"{API}/garments/suit/train", json={})
    assert 400 <= no_base.status_code < 500 and "v1-5-pruned-emaonly.safetensors" in no_base.text, no_base.text
    missing = error_of(client.post(f"{API}/garments/suit/train", json={"base": "/no/such.safetensors"}), 422)
    assert "/no/such.safetensors" in missing["message"]
    assert client.post(f"{API}/garments/suit/train", json={"config": {"rank": 0}}).status_code == 422
    assert client.get(f"{API}/jobs").json() == []


# ---------------------------------------------------------------------------------------------- try-on refusals


def uploads_of(ctx) -> list:
    folder = gallery.new_upload_folder(ctx.paths).parent  # where try-on uploads would be written
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_tryon_refusals_come_before_any_upload_is_written(client, ctx, suit_photo, photo_other_person):
    person = b64(photo_other_person.read_bytes())
    before = uploads_of(ctx)
    missing = error_of(client.post(f"{API}/tryon", json={"garment_id": "nobody", "person": person}), 404)
    assert missing["error"] == "GarmentNotFound"
    garment_with_photo(client, ctx, suit_photo)
    untrained = error_of(client.post(f"{API}/tryon", json={"garment_id": "suit", "person": person}), 409)
    assert "no trained LoRA" in untrained["message"] and "Train" in untrained["hint"]
    make_trained(ctx, "suit", lora_bytes=b"not checked here")
    no_mask = error_of(client.post(f"{API}/tryon", json={"garment_id": "suit", "person": person,
                                                         "config": {"mask_source": "mask"}}), 422)
    assert "no mask was sent" in no_mask["message"]
    bad = error_of(client.post(f"{API}/tryon", json={"garment_id": "suit", "person": "%%%"}), 422)
    assert "not valid base64" in bad["message"]
    bad_mask = error_of(client.post(f"{API}/tryon", json={"garment_id": "suit", "person": person, "mask": "%%%",
                                                          "config": {"mask_source": "mask"}}), 422)
    assert "not valid base64" in bad_mask["message"]
    assert client.post(f"{API}/tryon", json={"garment_id": "suit", "person": person,
                                             "config": {"first_steps": 0}}).status_code == 422
    assert client.post(f"{API}/tryon", json={"garment_id": "suit"}).status_code == 422
    assert client.get(f"{API}/jobs").json() == [] and uploads_of(ctx) == before


@pytest.mark.parametrize("extra, words", [
    ({"mask": "aGk="}, "mask was sent but mask_source is 'parsing'"),
    ({"points": [[10, 10, True]]}, "mask_source is 'parsing', so they would be ignored"),
    ({"config": {"mask_source": "points"}}, "no click or box was sent"),
    ({"points": [[10, 10, True]], "config": {"mask_source": "mask"}}, "no mask was sent"),
    ({"points": [[96, 10, True]], "config": {"mask_source": "points"}}, "[96.0, 10.0, True] is not inside"),
    ({"boxes": [[0, 0, 50, 129]], "config": {"mask_source": "points"}}, "is not inside the person photo (96×128)"),
    ({"boxes": [[50, 0, 10, 20]], "config": {"mask_source": "points"}}, "[50.0, 0.0, 10.0, 20.0] is not inside"),
])
def test_tryon_refuses_region_inputs_that_do_not_fit(client, ctx, suit_photo, photo_other_person, extra, words):
    garment_with_photo(client, ctx, suit_photo)
    make_trained(ctx, "suit", lora_bytes=b"not checked here")
    before = uploads_of(ctx)
    person = b64(png_bytes(Image.open(photo_other_person).convert("RGB").resize((96, 128))))
    refused = error_of(client.post(f"{API}/tryon", json={"garment_id": "suit", "person": person, **extra}), 422)
    assert words in refused["message"] and refused["phase"] == "tryon" and refused["hint"]
    assert client.get(f"{API}/jobs").json() == [] and uploads_of(ctx) == before


def test_tryon_refuses_non_finite_clicks(client, ctx, suit_photo, photo_other_person):
    garment_with_photo(client, ctx, suit_photo)
    make_trained(ctx, "suit", lora_bytes=b"not checked here")
    person = b64(png_bytes(Image.open(photo_other_person).convert("RGB").resize((96, 128))))
    raw = ('{"garment_id": "suit", "person": "PERSON", "points": [[NaN, 3, true]], '
           '"config": {"mask_source": "points"}}').replace("PERSON", person)
    response = client.post(f"{API}/tryon", content=raw, headers={"content-type": "application/json"})
    assert "[nan, 3.0, True] is not inside" in error_of(response, 422)["message"]
    assert client.get(f"{API}/jobs").json() == []


def test_tryon_refuses_a_person_or_mask_that_is_no_usable_image(client, ctx, suit_photo, photo_other_person):
    garment_with_photo(client, ctx, suit_photo)
    make_trained(ctx, "suit", lora_bytes=b"not checked here")
    before = uploads_of(ctx)
    text = b64(b"hello, not a photo")
    person = error_of(client.post(f"{API}/tryon", json={"garment_id": "suit", "person": text}), 422)
    assert "person" in person["message"]
    small = Image.open(photo_other_person).convert("RGB").resize((96, 128))
    wrong_size = error_of(client.post(f"{API}/tryon", json={
        "garment_id": "suit", "person": b64(png_bytes(small)), "mask": b64(suit_mask()),
        "config": {"mask_source": "mask"}}), 422)
    assert "96×128" in wrong_size["message"] and "128×128" in wrong_size["message"]
    empty = error_of(client.post(f"{API}/tryon", json={
        "garment_id": "suit", "person": b64(png_bytes(small)), "mask": b64(png_bytes(Image.new("L", (96, 128)))),
        "config": {"mask_source": "mask"}}), 422)
    assert "empty" in empty["message"]
    assert client.get(f"{API}/jobs").json() == [] and uploads_of(ctx) == before


def make_trained(ctx, garment_id: str, *, lora_bytes: bytes | None = None, lora_tensors: dict | None = None) -> None:
    """garment.json and the LoRA file, as a finished garment training leaves them."""
    from easyphoto.store import atomic_write_json

    layout = ctx.garments.get(garment_id)
    layout.lora_file.parent.mkdir(parents=True, exist_ok=True)
    if lora_tensors is not None:
        from easyphoto.sd import lora as L

        L.save_lora(layout.lora_file, lora_tensors)
    else:
        layout.lora_file.write_bytes(lora_bytes or b"")
    atomic_write_json(layout.root / "garment.json", {"garment_id": garment_id, "category": "upper",
                                                     "lora_file": str(layout.lora_file)})


# ---------------------------------------------------------------------------------------------- OpenAPI


def test_openapi_lists_the_garment_and_tryon_paths(client):
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path, methods in {"/garments": {"get", "post"}, "/garments/{garment_id}": {"get", "delete"},
                          "/garments/{garment_id}/photos": {"post"},
                          "/garments/{garment_id}/photos/{name}": {"delete"},
                          "/garments/{garment_id}/masks/{photo}": {"put", "delete"},
                          "/garments/{garment_id}/points/{photo}": {"put"},
                          "/garments/{garment_id}/dataset": {"post"}, "/garments/{garment_id}/report": {"get"},
                          "/garments/{garment_id}/captions": {"get", "put"},
                          "/garments/{garment_id}/train": {"post"}, "/tryon": {"post"}}.items():
        assert methods <= set(paths[API + path]), path
    body = paths[API + "/tryon"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("TryOnRequest")


# ---------------------------------------------------------------------------------------------- a real try-on job

FAST = {"first_steps": 3, "second_steps": 2, "short_side": 256, "seed": 42, "mask_dilation": 4,
        "mask_source": "mask", "batch_size": 1}


@pytest.fixture
def studio(ctx, client, suit_photo, tiny_sd_dir, tiny_controlnet_dirs, kit_root):
    """The suit trained as a garment: its dataset built by the API from an uploaded mask, a random LoRA over the
    tiny UNet (kohya key names, as the trainer exports) and garment.json; the kit's tiny ControlNets and tiny DPT
    placed where the manifest puts them, as a user's models folder holds the real ones."""
    from diffusers import UNet2DConditionModel

    from easyphoto.generation import CONTROLNET_MODELS
    from easyphoto.sd import lora as L
    from easyphoto.tryon.depth import depth_dir
    from tests.kit.lora import random_lora
    from tests.kit.tiny_depth import tiny_depth_controlnet_dir, tiny_dpt_dir

    assert build_dataset(client, ctx, suit_photo)["state"] == "succeeded"
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    make_trained(ctx, "suit", lora_tensors=random_lora([("unet", unet, L.UNET_TARGETS)], rank=4, scale=0.2, seed=5))
    sources = {**tiny_controlnet_dirs, "depth": tiny_depth_controlnet_dir(kit_root)}
    ctx.paths.controlnet_dir.mkdir(parents=True, exist_ok=True)
    for kind, stem in CONTROLNET_MODELS.items():
        if kind in sources:
            (ctx.paths.controlnet_dir / stem).symlink_to(sources[kind], target_is_directory=True)
    depth_dir(ctx.paths).parent.mkdir(parents=True, exist_ok=True)
    depth_dir(ctx.paths).symlink_to(tiny_dpt_dir(kit_root), target_is_directory=True)
    return ctx


def person_and_mask(photo_other_person) -> tuple[Image.Image, bytes]:
    """Biden at a quarter size (242×551) and a drawn mask over his jacket (a box below the shoulders)."""
    image = Image.open(photo_other_person).convert("RGB")
    person = image.resize((image.width // 4, image.height // 4), Image.LANCZOS)
    mask = Image.new("L", person.size, 0)
    width, height = person.size
    ImageDraw.Draw(mask).rectangle([width * 0.25, height * 0.3, width * 0.75, height * 0.6], fill=255)
    return person, png_bytes(mask)


def test_a_tryon_job_runs_on_the_tiny_model_and_returns_its_images(client, studio, tiny_sd_dir, photo_other_person):
    from tests.kit.tiny_sd import torch_threads

    person, mask = person_and_mask(photo_other_person)
    before = uploads_of(studio)
    with torch_threads(1):
        job = client.post(f"{API}/tryon", json={"garment_id": "suit", "person": b64(png_bytes(person)),
                                                "mask": b64(mask), "config": FAST, "base": str(tiny_sd_dir)})
        assert job.status_code == 202 and job.json()["kind"] == "tryon", job.text
        photo = next(ctx_photo.name for ctx_photo in studio.garments.get("suit").photos.iterdir())
        busy = [client.delete(f"{API}/garments/suit"), client.put(f"{API}/garments/suit/masks/{photo}",
                                                                  json={"mask": b64(suit_mask())})]
        still_running = client.get(f"{API}/jobs/{job.json()['id']}").json()["state"] in ("queued", "running")
        done = wait_final(client, job.json(), timeout=600)
    if still_running:  # the job used the garment through both requests: both were refused
        assert [r.status_code for r in busy] == [409, 409] and "is used by job" in busy[0].json()["message"]
    assert studio.garments.exists("suit")
    assert done["state"] == "succeeded", done["error"]
    result = client.get(f"{API}/jobs/{job.json()['id']}/result")
    assert result.status_code == 200
    body = result.json()
    [tryon] = body["tryons"]
    assert tryon["seed"] == 42 and 0 <= tryon["fidelity"]["score"] <= 1 and body["backend"] == "diffusers"
    assert tryon["controls"] == {"pass 1": ["openpose", "canny", "depth"], "pass 2": ["canny", "depth"]}
    assert body["evaluations"] == {"unet": 3, "controlnet": 8}  # (3 + 2 steps) × 0.7 denoise; 3 then 2 controls
    assert any("no clothes parser installed" in note for note in tryon["notes"])
    [image] = body["images"]
    decoded = Image.open(io.BytesIO(base64.b64decode(image)))
    assert decoded.size == person.size
    # pixels far from the mask are the person's own; inside it the garment was repainted
    pixels, original = np.asarray(decoded.convert("RGB")).astype(int), np.asarray(person).astype(int)
    drawn = np.asarray(Image.open(io.BytesIO(mask))) > 0
    assert np.abs(pixels - original)[:20].max() <= 2 and np.abs(pixels - original)[drawn].mean() > 5
    saved = Image.open(tryon["file"]).info
    info = json.loads(saved["easyphoto"])
    assert info["garment_id"] == "suit" and info["config"]["first_steps"] == 3
    assert "suit_garment" in saved["parameters"] and "<lora:suit:0.8>" in saved["parameters"]  # trigger and LoRA
    deadline = time.monotonic() + 30  # the upload folder goes when the job has ended (a thread waits on it)
    while uploads_of(studio) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert uploads_of(studio) == before
