"""Hostile photos and the identity store: damaged files are one photo's drop reason, photos can be removed one by
one, nothing is stored twice, names survive, cut faces are noted, the CLI answers in one line, and a dataset made
with other settings or photos is rebuilt. Everything runs on the kit's real photos and the dlib face stack."""

import base64
import io
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from easyphoto import cli, operations
from easyphoto.app import create_app
from easyphoto.config import TrainConfig
from easyphoto.context import standalone_context
from easyphoto.errors import EasyPhotoError, NotFound
from easyphoto.face import stacks
from easyphoto.face.types import Face
from easyphoto.imageops import UnreadableImage, image_suffix, load_photo
from easyphoto.store import Paths, photo_files, read_json, remove_photos, safe_photo_name
from easyphoto.train import dataset, pipeline, prepare
from easyphoto.train.photos import PhotoDecision, _frame_edge, list_photos, select_photos
from easyphoto.ui.train_tab import check_photos_flow, photo_names, remove_photo_flow, upload_items

API = "/easyphoto/v1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return stacks.load("dlib", Paths.standalone(tmp_path_factory.mktemp("models")))


@pytest.fixture
def ctx(tmp_path):
    context = standalone_context(tmp_path / "home")
    yield context
    operations.shutdown_all()


@pytest.fixture
def client(ctx):
    return TestClient(create_app(ctx, with_ui=False))


def truncated(photo, size=16356) -> bytes:
    """`head -c SIZE photo.jpg`: for the kit's photos, 16356 bytes end inside the JPEG header (its EXIF segment)."""
    return photo.read_bytes()[:size]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def names(ctx, identity_id):
    return [p.name for p in photo_files(ctx.identities.get(identity_id).photos)]


# ------------------------------------------------------------------------------------ 1. decoder failures


@pytest.mark.parametrize("size", [100, 600, 16356])
def test_a_jpeg_cut_inside_its_header_is_unreadable_with_a_reason(photos_same_man, size):
    with pytest.raises(UnreadableImage, match="truncated") as info:
        load_photo(truncated(photos_same_man[0], size))
    assert "this is a bug" not in str(info.value).lower()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_damaged_headers_of_every_format_are_unreadable_never_a_crash(photos_same_man, fmt):
    """Seeded byte flips in the first 200 bytes: PIL answers them with OSError, TypeError, ValueError, ... (BMP
    compression, TIFF tags, WebP decoder objects); each one must be UnreadableImage with a message."""
    import random

    buffer = io.BytesIO()
    Image.open(photos_same_man[1]).convert("RGB").resize((96, 96)).save(buffer, fmt)
    original, rnd = buffer.getvalue(), random.Random(1)
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(200)] = rnd.randrange(256)
        try:
            load_photo(bytes(data))
        except UnreadableImage as exc:
            assert exc.message and "bug" not in exc.message


def test_truncated_photo_is_dropped_and_the_others_still_checked(tmp_path, stack, photos_same_man):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for photo in photos_same_man:
        shutil.copy(photo, uploads / photo.name)
    (uploads / "bad.jpg").write_bytes(truncated(photos_same_man[0]))
    report = select_photos(list_photos(uploads), stack)
    decisions = {d.file: d for d in report.decisions}
    assert not decisions["bad.jpg"].kept and "truncated" in decisions["bad.jpg"].reason
    assert {f for f, d in decisions.items() if d.kept} == {p.name for p in photos_same_man}


def test_check_job_of_an_identity_with_a_truncated_photo_succeeds(ctx, client, photos_same_man):
    photos = [b64(p.read_bytes()) for p in photos_same_man] + [b64(truncated(photos_same_man[0]))]
    assert client.post(f"{API}/identities", json={"id": "ann", "photos": photos}).status_code == 201
    job = client.post(f"{API}/identities/ann/check").json()
    record = operations.job_queue(ctx).wait(job["id"], timeout=120)
    assert record.state.value == "succeeded", record.error
    report = client.get(f"{API}/identities/ann/report").json()
    assert report["kept"] == 3 and report["total"] == 4
    bad = next(p for p in report["photos"] if not p["kept"])
    assert bad["file"] == "upload_03.jpg" and "truncated" in bad["reason"]


def test_template_upload_of_a_truncated_image_is_a_4xx_with_a_message(client, photos_same_man):
    response = client.post(f"{API}/templates", json={"image": b64(truncated(photos_same_man[1])), "filename": "t.jpg"})
    assert 400 <= response.status_code < 500
    assert "truncated" in response.json()["message"]
    assert client.get(f"{API}/templates").json() == []


def test_cli_check_reports_a_truncated_photo_instead_of_a_traceback(tmp_path, photos_same_man, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos_same_man[0], folder / "good.jpg")
    (folder / "bad.jpg").write_bytes(truncated(photos_same_man[0]))
    code = cli.main(["--data-dir", str(tmp_path / "home"), "photos", "check", str(folder), "--face-stack", "dlib"])
    out = capsys.readouterr().out
    assert code == 0
    assert "bad.jpg" in out and "truncated" in out and "1 of 2 kept" in out


# ------------------------------------------------------------------------------------ 2. removing photos


def test_store_removes_photos_by_name_only(ctx, photos_same_man):
    prepare.add_photos(ctx, "bob", photos_same_man)
    layout = ctx.identities.get("bob")
    outside = layout.root / "identity.json"
    outside.write_text("{}")
    for hostile in ("../identity.json", "..", "", "photos/obama.jpg", "OBAMA.JPG", "obama"):
        with pytest.raises(NotFound, match="has no photo named"):
            remove_photos(layout, [hostile])
    with pytest.raises(NotFound):  # one unknown name: nothing at all is deleted
        remove_photos(layout, ["obama.jpg", "nope.jpg"])
    assert outside.is_file() and names(ctx, "bob") == ["obama.jpg", "obama2.jpg", "obama3.jpg"]
    assert remove_photos(layout, ["obama2.jpg"]) == ["obama2.jpg"]
    assert names(ctx, "bob") == ["obama.jpg", "obama3.jpg"]


def test_removing_a_photo_updates_the_saved_report(ctx, photos_same_man, photo_other_person):
    prepare.add_photos(ctx, "cat", [*photos_same_man, photo_other_person])
    report = prepare.check_photos(ctx, "cat")
    prepare.remove_photos(ctx, "cat", ["biden.jpg", report.reference])
    layout = ctx.identities.get("cat")
    saved = read_json(layout.report)
    assert [p["file"] for p in saved["photos"]] == sorted({"obama.jpg", "obama2.jpg", "obama3.jpg"} - {report.reference})
    assert saved["total"] == 2 and saved["reference"] is None and "check the photos again" in saved["stale"]
    assert not (layout.root / "reference.jpg").exists()
    with pytest.raises(EasyPhotoError, match="Name the photos"):
        prepare.remove_photos(ctx, "cat", [])


def test_api_deletes_one_photo(ctx, client, photos_same_man):
    photos = [b64(p.read_bytes()) for p in photos_same_man] + [b64(truncated(photos_same_man[0]))]
    client.post(f"{API}/identities", json={"id": "dan", "photos": photos})
    assert client.delete(f"{API}/identities/dan/photos/upload_03.jpg").status_code == 204
    assert client.get(f"{API}/identities/dan").json()["photos"] == 3
    missing = client.delete(f"{API}/identities/dan/photos/upload_03.jpg")
    assert missing.status_code == 404 and "upload_00.jpg" in missing.json()["hint"]
    for hostile in ("..%2Fidentity.json", "%2E%2E", "upload_00.jpg%00"):
        assert client.delete(f"{API}/identities/dan/photos/{hostile}").status_code in (404, 422)
    assert client.get(f"{API}/identities/dan").json()["photos"] == 3
    assert client.delete(f"{API}/identities/nobody/photos/x.jpg").status_code == 404


def test_cli_removes_photos(tmp_path, photos_same_man, capsys):
    home = tmp_path / "home"
    ctx = standalone_context(home)
    prepare.add_photos(ctx, "eve", photos_same_man)
    assert cli.main(["--data-dir", str(home), "photos", "remove", "--id", "eve", "obama.jpg", "obama3.jpg"]) == 0
    assert "removed obama.jpg, obama3.jpg; 1 photo left" in capsys.readouterr().out
    assert cli.main(["--data-dir", str(home), "photos", "remove", "--id", "eve", "../../x"]) == 2
    err = capsys.readouterr().err
    assert "has no photo named '../../x'" in err and "obama2.jpg" in err and "Traceback" not in err


def test_train_tab_removes_a_photo(ctx, photos_same_man):
    prepare.add_photos(ctx, "fay", photos_same_man)
    prepare.check_photos(ctx, "fay")
    assert photo_names(ctx, "fay") == ["obama.jpg", "obama2.jpg", "obama3.jpg"]
    assert photo_names(ctx, "Not An Id") == [] and photo_names(ctx, "nobody") == []
    gallery, summary, left = remove_photo_flow(ctx, "fay", "obama2.jpg")
    assert left == ["obama.jpg", "obama3.jpg"] and len(gallery) == 2 and "Removed `obama2.jpg`" in summary
    gallery, summary, left = remove_photo_flow(ctx, "fay", "obama2.jpg")
    assert gallery is None and "Cannot remove the photo" in summary and "obama.jpg" in summary
    _, summary, _ = remove_photo_flow(ctx, "fay", None)
    assert "Pick the photo" in summary


# ------------------------------------------------------------------------------------ 3. de-duplication


def test_adding_the_same_photos_twice_stores_them_once(ctx, photos_same_man):
    first = prepare.add_photos(ctx, "gus", photos_same_man)
    again = prepare.add_photos(ctx, "gus", [*photos_same_man, photos_same_man[0]])
    assert len(first.added) == 3 and again.added == []
    assert again.duplicates == [(p.name, p.name) for p in [*photos_same_man, photos_same_man[0]]]
    assert "0 photos added; 4 already there" in again.summary()
    assert len(names(ctx, "gus")) == 3


def test_api_add_photos_twice_stores_them_once(client, photos_same_man):
    photos = [b64(p.read_bytes()) for p in photos_same_man]
    client.post(f"{API}/identities", json={"id": "hal", "photos": photos})
    response = client.post(f"{API}/identities/hal/photos", json={"photos": [*photos, photos[0]]})
    assert response.status_code == 200 and response.json()["photos"] == 3


def test_check_photos_pressed_twice_stores_uploads_once(ctx, photos_same_man):
    files = [str(p) for p in photos_same_man]
    for _ in range(2):
        *_, (gallery, summary, _) = check_photos_flow(ctx, "ivy", files)
    assert len(gallery) == 3 and "0 photos added; 3 already there" in summary
    assert len(names(ctx, "ivy")) == 3


def test_cli_train_twice_stores_photos_once(tmp_path, photos_same_man, monkeypatch, capsys):
    home = tmp_path / "home"
    base = home / "base.safetensors"
    base.parent.mkdir(parents=True)
    base.write_bytes(b"stand-in")  # path resolution only: the jobs below are recorded, not run
    monkeypatch.setattr(cli, "run_job", lambda ctx, kind, params: {"images": 3})
    argv = ["--data-dir", str(home), "train", "--id", "jay", "--base", str(base), *map(str, photos_same_man)]
    assert cli.main(argv) == 0 and cli.main(argv) == 0
    assert "0 photos added; 3 already there" in capsys.readouterr().err
    assert len(names(standalone_context(home), "jay")) == 3


# ------------------------------------------------------------------------------------ 4. names


def test_original_names_are_kept_sanitised_with_the_real_format(ctx, tmp_path, photos_same_man):
    png = tmp_path / "Zoë at the beach (2).JPG"  # a PNG with a lying extension and an unsafe name
    Image.open(photos_same_man[0]).save(png, "PNG")
    cut = tmp_path / "cut.bin"
    cut.write_bytes(truncated(photos_same_man[1]))
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    same_name = tmp_path / "other" / "obama.jpg"
    same_name.parent.mkdir()
    same_name.write_bytes(photos_same_man[2].read_bytes())
    added = prepare.add_photos(ctx, "kim", [photos_same_man[0], png, cut, text, same_name])
    assert [p.name for p in added.added] == ["obama.jpg", "Zoe_at_the_beach_2.png", "cut.jpg", "notes.bin",
                                             "obama-2.jpg"]
    assert added.added[1].read_bytes() == png.read_bytes()  # byte for byte
    report = prepare.check_photos(ctx, "kim").to_dict()
    assert {p["file"] for p in report["photos"]} == {p.name for p in added.added}


def test_safe_photo_names():
    assert safe_photo_name("../../etc/passwd", "jpg") == "passwd.jpg"
    assert safe_photo_name("C:\\Users\\me\\con.png", "png") == "photo_con.png"
    assert safe_photo_name(".hidden", "png") == "hidden.png"
    assert safe_photo_name("日本", "webp") == "photo.webp"
    assert safe_photo_name("x" * 300, "jpg") == "x" * 60 + ".jpg"


def test_format_comes_from_the_bytes(photos_same_man):
    assert image_suffix(truncated(photos_same_man[0], 100)) == "jpg"
    assert image_suffix(b"GIF89a....") == "gif" and image_suffix(b"hello") is None


def test_api_uploads_without_names_are_named_by_their_format(ctx, client, photos_same_man):
    buffer = io.BytesIO()
    Image.open(photos_same_man[0]).save(buffer, "WEBP")
    client.post(f"{API}/identities", json={"id": "lee", "photos": [b64(photos_same_man[1].read_bytes()),
                                                                   b64(buffer.getvalue())]})
    assert names(ctx, "lee") == ["upload_00.jpg", "upload_01.webp"]


def test_gradio3_uploads_keep_their_original_name(tmp_path, photos_same_man):
    class Wrapper:  # what gradio 3.41's File component hands over: a temp path plus the client's name
        def __init__(self, name, orig_name):
            self.name, self.orig_name = name, orig_name

    temp = tmp_path / "tmpa1b2c3"
    shutil.copy(photos_same_man[0], temp)
    items = upload_items([Wrapper(str(temp), "Holiday 1.jpg"), str(photos_same_man[1])])
    assert items[0] == ("Holiday 1.jpg", photos_same_man[0].read_bytes()) and items[1] == photos_same_man[1]


# ------------------------------------------------------------------------------------ 5. faces cut by the frame


def test_a_face_cut_by_the_frame_edge_is_kept_with_a_note(tmp_path, stack, photos_same_man):
    image = Image.open(photos_same_man[0]).convert("RGB")  # its face box is about x 372..637
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    image.crop((412, 0, image.width, image.height)).save(uploads / "cut.jpg", quality=95)
    for photo in photos_same_man[1:]:
        shutil.copy(photo, uploads / photo.name)
    cut = next(d for d in select_photos(list_photos(uploads), stack, TrainConfig()).decisions if d.file == "cut.jpg")
    assert cut.face.box[0] < 0
    assert any(n.startswith("face cut by the frame edge (") and "outside the photo): kept" in n for n in cut.notes)
    others = select_photos(list_photos(uploads), stack).decisions
    assert all(not any("frame edge" in n for n in d.notes) for d in others if d.file != "cut.jpg")


def test_a_face_mostly_outside_the_photo_is_dropped():
    face = Face((-150.0, 10.0, 50.0, 210.0), np.zeros((5, 2), np.float32), 1.0)  # 75 % of the box is outside
    decision = PhotoDecision("x.jpg", face=face)
    assert _frame_edge(decision, (400, 400, 3)) == "face cut by the frame edge (75% of the face outside the photo; " \
                                                  "at most 50%)"
    inside = PhotoDecision("y.jpg", face=Face((10.0, 10.0, 50.0, 50.0), np.zeros((5, 2), np.float32), 1.0))
    assert _frame_edge(inside, (400, 400, 3)) is None and inside.notes == []


# ------------------------------------------------------------------------------------ 6. CLI answers


def test_cli_max_photos_zero_is_one_line_naming_the_option(tmp_path, photos_same_man, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos_same_man[0], folder)
    assert cli.main(["--data-dir", str(tmp_path), "photos", "check", str(folder), "--max-photos", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: [photos] --max-photos 0:") and "1" in err
    assert "\n" not in err and "Traceback" not in err and "pydantic" not in err


@pytest.mark.parametrize("content", [{}, {"notes.txt": b"hello", "data.csv": b"a,b"}])
def test_cli_check_of_a_folder_without_images_says_so(tmp_path, capsys, content):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in content.items():
        (folder / name).write_bytes(data)
    assert cli.main(["--data-dir", str(tmp_path), "photos", "check", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"no image files in {folder}" in err and ".jpg" in err and "0 of 0" not in err


# ------------------------------------------------------------------------------------ 7. dataset settings


def child_spec(ctx, identity_id, config, *, resume=False):
    layout = ctx.identities.get(identity_id)
    return {"identity_id": identity_id, "identity_dir": str(layout.root), "dataset_dir": str(layout.dataset),
            "lora_file": str(layout.lora_file), "config": config.to_dict(), "steps": 1, "resume": resume,
            "paths": ctx.paths.to_dict(), "face_stack": "dlib"}


def train_image_size(ctx, identity_id):
    return Image.open(ctx.identities.get(identity_id).dataset / "train" / "0.jpg").size


def test_dataset_records_its_settings_and_is_rebuilt_when_they_change(ctx, photos_same_man):
    prepare.add_photos(ctx, "max", photos_same_man)
    made = TrainConfig(resolution=256, upscale_small=False)
    prepare.prepare_identity_dataset(ctx, "max", made)
    layout = ctx.identities.get("max")
    record = read_json(layout.dataset / "dataset.json")
    assert record["settings"]["resolution"] == 256 and set(record["photos"]) == {p.name for p in photos_same_man}
    assert dataset.dataset_changes(layout.dataset, made) == []
    wanted = made.updated(resolution=320, caption="a photo of sks man", matting=False)
    assert dataset.settings_changes(layout.dataset, wanted) == [
        "resolution 256 → 320", "matting True → False", f"caption {made.caption!r} → 'a photo of sks man'"]
    events = []
    assert pipeline.current_dataset(child_spec(ctx, "max", wanted), wanted, events.append) == 3
    assert train_image_size(ctx, "max") == (320, 320)
    assert (layout.dataset / "train" / "0.txt").read_text() == "a photo of sks man"
    assert "dataset out of date (resolution 256 → 320" in events[0]["message"]
    assert pipeline.current_dataset(child_spec(ctx, "max", wanted), wanted, events.append) is None  # now current


def test_resumed_training_refuses_changed_dataset_settings(ctx, photos_same_man):
    prepare.add_photos(ctx, "ned", photos_same_man)
    made = TrainConfig(resolution=256, upscale_small=False)
    prepare.prepare_identity_dataset(ctx, "ned", made)
    wanted = made.updated(crop_ratio=2.5)
    with pytest.raises(EasyPhotoError, match="crop_ratio 3.0 → 2.5.*resumed training") as info:
        pipeline.current_dataset(child_spec(ctx, "ned", wanted, resume=True), wanted, lambda event: None)
    assert "without resume" in info.value.hint
    prepare.remove_photos(ctx, "ned", ["obama3.jpg"])  # photos changed: a resume keeps the dataset it started with
    assert pipeline.current_dataset(child_spec(ctx, "ned", made, resume=True), made, lambda event: None) is None


def test_dataset_is_rebuilt_when_photos_change(ctx, photos_same_man):
    prepare.add_photos(ctx, "oli", photos_same_man)
    config = TrainConfig(resolution=256, upscale_small=False)
    prepare.prepare_identity_dataset(ctx, "oli", config)
    assert prepare.ensure_dataset(ctx, "oli", config) == []
    prepare.remove_photos(ctx, "oli", ["obama2.jpg"])
    assert prepare.ensure_dataset(ctx, "oli", config) == [
        "photos changed since it was made (0 added, 1 removed, 0 replaced)"]
    layout = ctx.identities.get("oli")
    assert [item["source"] for item in read_json(layout.dataset / "dataset.json")["items"]] == ["obama.jpg",
                                                                                               "obama3.jpg"]
    assert pipeline.current_dataset(child_spec(ctx, "oli", config), config, lambda event: None) is None


def test_datasets_of_older_versions_are_compared_by_their_recorded_config(ctx, photos_same_man):
    prepare.add_photos(ctx, "pia", photos_same_man)
    config = TrainConfig(resolution=256, upscale_small=False)
    prepare.prepare_identity_dataset(ctx, "pia", config)
    summary = ctx.identities.get("pia").dataset / "dataset.json"
    old = read_json(summary)
    del old["settings"], old["photos"]  # what 0.1.0 wrote: the whole config only
    summary.write_text(json.dumps(old))
    assert dataset.settings_changes(summary.parent, config) == []
    assert dataset.settings_changes(summary.parent, config.updated(resolution=384)) == ["resolution 256 → 384"]
