"""Every REST route through FastAPI's TestClient: happy paths on real photos, and the errors users will hit."""

import base64
import io
import json
import time
import zipfile

import pytest
from fastapi.testclient import TestClient

from easyphoto import operations
from easyphoto.app import create_app
from easyphoto.context import standalone_context
from tests.kit.api import API, wait_final


@pytest.fixture
def ctx(tmp_path):
    context = standalone_context(tmp_path)
    yield context
    operations.shutdown_all()


@pytest.fixture
def client(ctx):
    return TestClient(create_app(ctx, with_ui=False))


def b64(path):
    return base64.b64encode(path.read_bytes()).decode()


def test_identity_lifecycle_with_real_photos(client, photos_same_man, photo_other_person):
    photos = [b64(p) for p in photos_same_man] + ["data:image/jpeg;base64," + b64(photo_other_person)]
    created = client.post(f"{API}/identities", json={"id": "alice", "photos": photos})
    assert created.status_code == 201
    assert created.json() == {"id": "alice", "photos": 4, "checked": False, "kept": None, "reference": None,
                              "has_lora": False, "lora_file": created.json()["lora_file"]}
    assert client.get(f"{API}/identities/alice/report").status_code == 409  # not checked yet
    job = client.post(f"{API}/identities/alice/check", json={"config": {"min_face_px": 100}})
    assert job.status_code == 202 and job.json()["kind"] == "check_photos"
    done = wait_final(client, job.json())
    assert done["state"] == "succeeded" and done["result"]["kept"] == 3 and done["progress"]["fraction"] == 1.0
    report = client.get(f"{API}/identities/alice/report").json()
    assert report["kept"] == 3 and len(report["photos"]) == 4
    assert client.get(f"{API}/identities").json()[0]["kept"] == 3
    more = client.post(f"{API}/identities/alice/photos", json={"photos": [b64(photos_same_man[0])]})
    assert more.json()["photos"] == 4  # the same bytes again: not stored twice
    assert client.delete(f"{API}/identities/alice").status_code == 204
    assert client.get(f"{API}/identities/alice").status_code == 404


def test_dataset_job(client, photos_same_man):
    client.post(f"{API}/identities", json={"id": "bob", "photos": [b64(p) for p in photos_same_man]})
    done = wait_final(client, client.post(f"{API}/identities/bob/dataset").json())
    assert done["state"] == "succeeded" and done["result"] == {"identity_id": "bob", "images": 3}


def test_export_and_import_bundle(client, ctx, photos_same_man):
    client.post(f"{API}/identities", json={"id": "carol", "photos": [b64(p) for p in photos_same_man]})
    wait_final(client, client.post(f"{API}/identities/carol/check").json())
    lora = ctx.identities.get("carol").lora_file
    lora.parent.mkdir(parents=True, exist_ok=True)
    header = b'{"__metadata__":{"easyphoto_version":"0.1.0"}}'  # a LoRA EasyPhoto wrote (its metadata)
    lora.write_bytes(len(header).to_bytes(8, "little") + header)
    exported = client.get(f"{API}/identities/carol/export")
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert {"manifest.json", "report.json", "reference.jpg", "lora.safetensors"} <= set(names)
    bundle = {"bundle": ("carol.easyphoto.zip", exported.content, "application/zip")}
    again = client.post(f"{API}/identities/import", files=bundle)
    assert again.status_code == 422 and "already exists" in again.json()["message"]
    copy = client.post(f"{API}/identities/import", files=bundle, data={"id": "carol2"})
    assert copy.status_code == 201 and copy.json()["photos"] == 3 and copy.json()["checked"] is True
    assert copy.json()["has_lora"] is True


def hostile_bundle(name, data=b"x"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"format": "easyphoto-identity", "version": 1, "identity_id": "z"}))
        archive.writestr(name, data)
    return {"bundle": ("z.zip", buffer.getvalue(), "application/zip")}


@pytest.mark.parametrize("member", ["../evil.py", "/etc/passwd", "photos/../../x", "scripts/run.py"])
def test_import_refuses_hostile_bundles(client, ctx, member):
    response = client.post(f"{API}/identities/import", files=hostile_bundle(member))
    assert response.status_code == 422 and "refused" in response.json()["message"]
    assert ctx.identities.list() == []


def test_import_refuses_a_fake_lora_and_non_zip(client, ctx):
    response = client.post(f"{API}/identities/import", files=hostile_bundle("lora.safetensors", b"\x80pickle"))
    assert response.status_code == 422 and "safetensors" in response.json()["message"]
    not_zip = client.post(f"{API}/identities/import", files={"bundle": ("z.zip", b"hello")})
    assert not_zip.status_code == 422 and "not a zip" in not_zip.json()["message"]
    assert ctx.identities.list() == []


def test_payload_errors_name_the_field(client):
    bad = client.post(f"{API}/identities", json={"id": "dave", "photos": ["%%%not base64%%%"]})
    assert bad.status_code == 422 and bad.json()["message"] == "photos[0]: not valid base64."
    huge = "A" * (26 * 1024 * 1024 * 4 // 3)
    too_big = client.post(f"{API}/identities", json={"id": "dave", "photos": [huge]})
    assert too_big.status_code == 422 and "over the 25 MB limit" in too_big.json()["message"]
    many = client.post(f"{API}/identities", json={"id": "dave", "photos": ["aGk="] * 51})
    assert many.status_code == 422 and "at most 50" in many.json()["message"]
    hostile = client.post(f"{API}/identities", json={"id": "../dave", "photos": []})
    assert hostile.status_code == 422 and "'.', '/'" in hostile.json()["message"]
    assert client.get(f"{API}/identities").json() == []


def test_invalid_config_is_422_naming_the_field(client, photos_same_man):
    client.post(f"{API}/identities", json={"id": "erin", "photos": [b64(photos_same_man[0])]})
    response = client.post(f"{API}/identities/erin/check", json={"config": {"rank": 0}})
    assert response.status_code == 422 and "rank" in json.dumps(response.json())
    typo = client.post(f"{API}/train", json={"identity_id": "erin", "config": {"rnak": 4}})
    assert typo.status_code == 422 and "rnak" in json.dumps(typo.json())


def test_unknown_things_are_404(client):
    assert client.get(f"{API}/identities/nobody").status_code == 404
    assert client.post(f"{API}/identities/nobody/check").status_code == 404
    assert client.get(f"{API}/jobs/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.get(f"{API}/jobs/..%2F..%2Fetc").status_code == 404
    assert client.post(f"{API}/models/fetch", json={"ids": ["no-such-model"]}).status_code == 404
    everything = client.post(f"{API}/models/fetch", json={})
    assert everything.status_code == 422 and "Name the model files" in everything.json()["message"]
    assert client.post(f"{API}/models/fetch", json={"group": "nope"}).status_code == 422


def test_train_needs_a_base_model_standalone_and_portraits_need_a_trained_identity(client, photos_same_man):
    client.post(f"{API}/identities", json={"id": "fay", "photos": [b64(photos_same_man[0])]})
    # every one of these is answered before a job exists (issue 11: inputs are validated before any job step)
    train = client.post(f"{API}/train", json={"identity_id": "fay"})
    assert 400 <= train.status_code < 500 and "v1-5-pruned-emaonly.safetensors" in train.text, train.text
    missing = client.post(f"{API}/train", json={"identity_id": "fay", "base": "/no/such.safetensors"})
    assert missing.status_code == 422 and "/no/such.safetensors" in missing.json()["message"]
    portrait = client.post(f"{API}/portraits", json={"identity_ids": ["fay"], "templates": [b64(photos_same_man[1])]})
    assert portrait.status_code == 409 and "'fay' has no trained LoRA yet" in portrait.json()["message"]
    assert "Train" in portrait.json()["hint"] and client.get(f"{API}/jobs").json() == []
    assert client.post(f"{API}/portraits", json={"identity_ids": ["fay"]}).status_code == 422


def test_template_gallery_upload_list_fetch_delete(client, photos_same_man):
    assert client.get(f"{API}/templates").json() == []
    added = client.post(f"{API}/templates", json={"image": b64(photos_same_man[1]), "filename": "../../studio shot.jpg"})
    assert added.status_code == 201 and added.json() == {"name": "user/studio_shot.png", "source": "user",
                                                         "file": "studio_shot.png"}
    assert [t["name"] for t in client.get(f"{API}/templates").json()] == ["user/studio_shot.png"]
    image = client.get(f"{API}/templates/user/studio_shot.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    bad = client.post(f"{API}/templates", json={"image": base64.b64encode(b"not an image at all").decode()})
    assert bad.status_code == 422 and "not" in bad.json()["message"].lower()
    assert client.get(f"{API}/templates/user/..%2F..%2Fsettings.json").status_code == 404
    assert client.delete(f"{API}/templates/user/studio_shot.png").status_code == 204
    assert client.get(f"{API}/templates").json() == []


def test_cancel_finished_job_is_409_and_jobs_are_listed(client, photos_same_man):
    client.post(f"{API}/identities", json={"id": "gus", "photos": [b64(photos_same_man[0])]})
    job = wait_final(client, client.post(f"{API}/identities/gus/check").json())
    assert client.post(f"{API}/jobs/{job['id']}/cancel").status_code == 409
    listed = client.get(f"{API}/jobs", params={"state": "succeeded"}).json()
    assert [j["id"] for j in listed] == [job["id"]]
    assert client.get(f"{API}/jobs", params={"state": "sleeping"}).status_code == 422
    result = client.get(f"{API}/jobs/{job['id']}/result").json()
    assert result["identity_id"] == "gus"


def test_running_job_progress_is_monotonic_and_cancel_is_prompt(client, photos_same_man):
    photos = [b64(p) for p in photos_same_man] * 4  # 12 photos: long enough to watch and to cancel midway
    client.post(f"{API}/identities", json={"id": "hal", "photos": photos})
    job = client.post(f"{API}/identities/hal/check").json()
    fractions, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        record = client.get(f"{API}/jobs/{job['id']}").json()
        fractions.append(record["progress"]["fraction"])
        if record["state"] == "running" and record["progress"]["fraction"] > 0:
            break
        time.sleep(0.05)
    assert record["state"] == "running"
    assert client.post(f"{API}/jobs/{job['id']}/cancel").status_code == 200
    final = wait_final(client, job, timeout=60)  # a failure guard only
    # Prompt = between two photos: the check stopped midway, it did not run to its end first.
    assert final["state"] == "cancelled" and final["progress"]["phase"] != "done"
    assert final["progress"]["step"] < final["progress"]["total"]
    assert fractions == sorted(fractions)
    assert client.get(f"{API}/jobs/{job['id']}/result").status_code == 409
