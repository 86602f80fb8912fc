"""REST /digital-model, /digital-model/pose and /poses (issue 14) through FastAPI's TestClient, on real photos (the
skimage astronaut: a half-body shot; the kit's photo of Biden): the pose gallery, the completed pose of a photo as
editable OpenPose JSON, the refusals before any job or upload exists, and one digital model job that really runs
on the tiny diffusers model."""

import base64
import io
import json

import numpy as np
from PIL import Image, ImageDraw

from easyphoto.portrait import templates as gallery
from tests.conftest import require_module
from tests.kit.api import png_b64, wait_final

require_module("mediapipe", reason="poses are found with mediapipe")
API = "/easyphoto/v1"


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def uploads_of(api_ctx) -> list:
    folder = gallery.new_upload_folder(api_ctx.paths).parent  # where the job's uploads would be written
    return sorted(p for p in folder.rglob("*") if p.is_file())


def keypoints(skeleton: dict) -> np.ndarray:
    return np.asarray(skeleton["people"][0]["pose_keypoints_2d"], np.float32).reshape(18, 3)


def test_the_pose_gallery_lists_complete_skeletons(api_client):
    poses = api_client.get(f"{API}/poses").json()
    assert len(poses) >= 4 and len({p["name"] for p in poses}) == len(poses)
    for pose in poses:
        skeleton = pose["skeleton"]
        assert (skeleton["canvas_width"], skeleton["canvas_height"]) == (512, 768)
        points = keypoints(skeleton)
        assert points[:, 2].all() and (points[:, 0] >= 0).all() and (points[:, 1] < 768).all()


def test_the_pose_of_a_half_body_photo_is_completed_and_editable(api_client, photo_astronaut):
    person = png_b64(Image.open(photo_astronaut).convert("RGB"))
    body = api_client.post(f"{API}/digital-model/pose", json={"person": person}).json()
    assert {"right_ankle", "left_ankle"} <= set(body["completed_joints"]) and body["padding"][3] > 0
    assert body["image"].startswith("data:image/png;base64,")
    drawn = Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1])))
    assert drawn.size == (512 + body["padding"][0] + body["padding"][2], 512 + body["padding"][1] + body["padding"][3])
    skeleton = body["skeleton"]
    assert (skeleton["canvas_width"], skeleton["canvas_height"]) == (512, 512) and keypoints(skeleton)[:, 2].all()
    edited = json.loads(json.dumps(skeleton))
    edited["people"][0]["pose_keypoints_2d"][3 * 7:3 * 7 + 2] = [40.0, 420.0]  # move the left wrist
    again = api_client.post(f"{API}/digital-model/pose", json={"person": person, "skeleton": edited}).json()
    assert keypoints(again["skeleton"])[7].tolist() == [40.0, 420.0, 1.0] and again["completed_joints"] == []


def test_pose_refusals_are_specific(api_client, photo_astronaut):
    person = png_b64(Image.open(photo_astronaut).convert("RGB"))
    assert "person" in error_of(api_client.post(f"{API}/digital-model/pose", json={"person": "%%%"}), 422)["message"]
    bad = error_of(api_client.post(f"{API}/digital-model/pose", json={"person": person, "skeleton": "{nope"}), 422)
    assert "JSON" in bad["message"]
    short = {"canvas_width": 512, "canvas_height": 512, "people": [{"pose_keypoints_2d": [1, 2, 1]}]}
    assert "3" in error_of(api_client.post(f"{API}/digital-model/pose", json={"person": person, "skeleton": short}),
                           422)["message"]
    blank = png_b64(Image.new("RGB", (256, 256), (90, 90, 90)))
    assert "No person" in error_of(api_client.post(f"{API}/digital-model/pose", json={"person": blank}), 422)["message"]


def test_digital_model_refusals_come_before_any_job_or_upload(api_client, api_ctx, photo_astronaut):
    person = png_b64(Image.open(photo_astronaut).convert("RGB"))
    before = uploads_of(api_ctx)
    post = lambda body: api_client.post(f"{API}/digital-model", json=body)  # noqa: E731
    assert error_of(post({"person": person, "garment_id": "nobody"}), 404)["error"] == "GarmentNotFound"
    assert "needs garment_id" in error_of(post({"config": {"mode": "pose", "pose_name": "x"}}), 422)["message"]
    assert "needs the photo" in error_of(post({"config": {"mode": "scene"}}), 422)["message"]
    assert "no mask was sent" in error_of(post({"person": person, "config": {"mask_source": "mask"}}), 422)["message"]
    assert "JSON" in error_of(post({"person": person, "skeleton": "[1, 2"}), 422)["message"]
    assert post({"person": person, "config": {"steps": 0}}).status_code == 422
    assert post({"person": person, "colour": "red"}).status_code == 422  # an unknown field
    assert api_client.get(f"{API}/jobs").json() == [] and uploads_of(api_ctx) == before


def test_a_digital_model_job_runs_on_the_tiny_model(api_client, api_ctx, tiny_sd_dir, tiny_controlnet_dirs,
                                                    photo_other_person):
    from easyphoto.generation import CONTROLNET_MODELS
    from tests.kit.tiny_sd import torch_threads

    api_ctx.paths.controlnet_dir.mkdir(parents=True, exist_ok=True)
    for kind, stem in CONTROLNET_MODELS.items():
        if kind in tiny_controlnet_dirs:
            (api_ctx.paths.controlnet_dir / stem).symlink_to(tiny_controlnet_dirs[kind], target_is_directory=True)
    image = Image.open(photo_other_person).convert("RGB")
    person = image.resize((image.width // 4, image.height // 4), Image.LANCZOS)
    mask = Image.new("L", person.size, 0)
    width, height = person.size
    ImageDraw.Draw(mask).rectangle([width * 0.25, height * 0.3, width * 0.75, height * 0.6], fill=255)
    config = {"steps": 3, "short_side": 256, "seed": 42, "mask_source": "mask"}
    with torch_threads(1):
        job = api_client.post(f"{API}/digital-model", json={"person": png_b64(person), "mask": png_b64(mask),
                                                        "config": config, "base": str(tiny_sd_dir)})
        assert job.status_code == 202 and job.json()["kind"] == "digital_model", job.text
        done = wait_final(api_client, job.json())
    assert done["state"] == "succeeded", done["error"]
    body = api_client.get(f"{API}/jobs/{job.json()['id']}/result").json()
    [made] = body["results"]
    assert made["garment_kept"]["score"] > 0.99 and made["mode"] == "model" and body["backend"] == "diffusers"
    assert any("no clothes parser installed" in note for note in made["notes"])
    left, top, _, _ = made["padding"]
    output = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).convert("RGB"))
    kept = np.asarray(mask) > 0
    assert np.array_equal(output[top:top + height, left:left + width][kept], np.asarray(person)[kept])

