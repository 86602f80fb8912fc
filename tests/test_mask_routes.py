"""Click-to-mask's server side (issue 14): the SAM embedding as .npy for the browser, the same decoder behind
/segment/predict, the decoder file and the page's scripts served by EasyPhoto itself (an allow-list, nothing else),
and the onnxruntime-web tarball checked and unpacked safely. On the kit's tiny SAM (real ONNX I/O) and the
scikit-image astronaut."""

import base64
import io
import tarfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from easyphoto import operations
from easyphoto.app import create_app
from easyphoto.context import standalone_context
from easyphoto.segment import Point
from easyphoto.segment.ort_web import SERVED, DamagedPackage, extracted, ort_web_folder
from tests.conftest import require_module

require_module("onnxruntime", reason="the SAM files run on onnxruntime")
API = "/easyphoto/v1"


@pytest.fixture
def ctx(tmp_path, tiny_segment):
    from tests.kit.tiny_segment import install_tiny_segment

    context = standalone_context(tmp_path / "data", tmp_path / "models", offline=True)
    install_tiny_segment(context.paths, tiny_segment, parser=False)
    yield context
    operations.shutdown_all()


@pytest.fixture
def client(ctx):
    return TestClient(create_app(ctx, with_ui=False), raise_server_exceptions=False)


@pytest.fixture
def photo(photo_astronaut) -> tuple[np.ndarray, str]:
    image = Image.open(photo_astronaut).convert("RGB").resize((200, 160))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return np.asarray(image), base64.b64encode(buffer.getvalue()).decode()


def test_the_embedding_is_the_segmenters_as_npy_with_its_sizes(client, ctx, photo):
    from easyphoto.segment import load_segmenter
    from easyphoto.segment.sam import pixel_key

    pixels, image = photo
    response = client.post(f"{API}/segment/embedding", json={"image": image})
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    array = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert array.dtype == np.float32 and np.array_equal(array, load_segmenter(ctx.paths).embed(pixels))
    assert response.headers["X-EasyPhoto-Image-Key"] == pixel_key(pixels)
    assert response.headers["X-EasyPhoto-Original-Size"] == "160,200"
    assert response.headers["X-EasyPhoto-Resized-Size"] == "819,1024"  # the longest side to 1024, rounded half up


def test_predict_is_the_segmenters_mask_and_refuses_another_images_embedding(client, ctx, photo):
    from easyphoto.segment import load_segmenter

    pixels, image = photo
    points = [[60.0, 80.0, True], [150.0, 30.0, False]]
    body = client.post(f"{API}/segment/predict", json={"image": image, "points": points}).json()
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask"].split(",", 1)[1]))))
    expected = load_segmenter(ctx.paths).segment(pixels, [Point(*p) for p in points])
    assert np.array_equal(mask, expected) and body["area"] == int(np.count_nonzero(expected))
    assert (body["width"], body["height"]) == (200, 160)
    key = client.post(f"{API}/segment/embedding", json={"image": image}).headers["X-EasyPhoto-Image-Key"]
    same = client.post(f"{API}/segment/predict", json={"image": image, "points": points, "embedding_key": key})
    assert same.status_code == 200 and same.json()["image_key"] == key
    other = client.post(f"{API}/segment/predict", json={"image": image, "points": points, "embedding_key": "0" * 64})
    assert other.status_code == 409 and "another image" in other.json()["message"]


@pytest.mark.parametrize("body, words", [
    ({"points": [[500, 10, True]]}, "outside the 200×160 image"),
    ({"points": [[10, 10, False]]}, "only negative points"),
    ({"points": []}, "no prompt"),
    ({"boxes": [[50, 50, 10, 10]]}, "empty or inverted"),
])
def test_bad_prompts_are_422_naming_the_cause(client, photo, body, words):
    response = client.post(f"{API}/segment/predict", json={"image": photo[1], **body})
    assert response.status_code == 422 and words in response.json()["message"], response.text


def test_no_image_and_no_segmenter_say_so(client, ctx, photo, tmp_path):
    assert "image" in client.post(f"{API}/segment/embedding", json={"image": "%%%"}).json()["message"]
    bare = TestClient(create_app(standalone_context(tmp_path / "bare", tmp_path / "bare-models", offline=True),
                                 with_ui=False), raise_server_exceptions=False)
    missing = bare.post(f"{API}/segment/embedding", json={"image": photo[1]})
    assert missing.status_code == 409 and missing.json()["error"] == "MissingWeights"
    assert bare.get(f"{API}/segment/decoder.onnx").json()["error"] == "MissingWeights"


def test_the_decoder_editor_and_scripts_are_served_and_nothing_else(client, ctx):
    from easyphoto import weights

    decoder = client.get(f"{API}/segment/decoder.onnx")
    assert decoder.status_code == 200
    assert decoder.content == weights.get("mobilesam-decoder").path(ctx.paths).read_bytes()
    page = client.get(f"{API}/segment/editor")
    assert page.status_code == 200 and "easyphoto_sam_canvas" in page.text and "https://" not in page.text
    script = client.get(f"{API}/assets/easyphoto_sam.js")
    assert script.status_code == 200 and "window.EasyPhotoSam" in script.text
    assert "javascript" in script.headers["content-type"]
    for name in ("ort.all.min.js", "..%2F..%2Fmodels.json", "package.json"):
        assert client.get(f"{API}/assets/onnxruntime-web/{name}").status_code == 404
    absent = client.get(f"{API}/assets/onnxruntime-web/ort.wasm.min.js")  # a served name, tarball not fetched
    assert absent.status_code == 409 and "onnxruntime-web" in absent.json()["message"]


def make_tarball(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def package_members() -> dict[str, bytes]:
    return {f"package/dist/{name}": f"/* {name} */".encode() for name in SERVED} | {
        "package/dist/ort.all.min.js": b"not served", "package/package.json": b"{}"}


def test_the_tarball_is_checked_then_only_the_served_files_are_extracted(tmp_path):
    import hashlib

    tarball = make_tarball(tmp_path / "onnxruntime-web-9.9.9.tgz", package_members())
    sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    with pytest.raises(DamagedPackage, match="sha256 differs"):
        extracted(tarball, "0" * 64)
    assert not (tmp_path / "onnxruntime-web-9.9.9").exists()
    folder = extracted(tarball, sha)
    assert sorted(p.name for p in folder.iterdir()) == sorted(SERVED)
    assert (folder / "ort.wasm.min.js").read_bytes() == b"/* ort.wasm.min.js */"
    assert extracted(tarball, sha) == folder  # once extracted, reused
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ort-web-")] == []  # no staging left


@pytest.mark.parametrize("members, words", [
    ({"/etc/evil": b"x"}, "unsafe member"),
    ({"package/../../evil": b"x"}, "unsafe member"),
    ({"package/dist/ort.wasm.min.js": b"x"}, "lacks package/dist/ort-wasm-simd-threaded.mjs"),
])
def test_unsafe_or_incomplete_tarballs_are_refused(tmp_path, members, words):
    tarball = make_tarball(tmp_path / "bad.tgz", members)
    with pytest.raises(DamagedPackage, match=words):
        extracted(tarball, None)
    assert not (tmp_path / "bad").exists()


def test_a_tarball_that_is_not_the_published_one_is_refused(ctx):
    from easyphoto import weights

    target = weights.get("onnxruntime-web").path(ctx.paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    make_tarball(target, package_members())
    with pytest.raises(DamagedPackage, match="not the published onnxruntime-web package"):
        ort_web_folder(ctx.paths)


def test_the_editor_hand_over_stores_the_photo_and_the_mask_under_its_key(client, ctx, photo):
    from easyphoto.segment import editor_store
    from easyphoto.segment.sam import pixel_key

    pixels, _ = photo
    key = editor_store.store_photo(ctx.paths, pixels)
    assert key == pixel_key(pixels)
    served = client.get(f"{API}/segment/photos/{key}")
    assert served.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(served.content))), pixels)
    assert client.get(f"{API}/segment/photos/{'1' * 64}").status_code == 404
    assert client.get(f"{API}/segment/photos/not-a-key").status_code == 422
    mask = np.zeros((160, 200), np.uint8)
    mask[40:90, 30:80] = 200
    buffer = io.BytesIO()
    Image.fromarray(mask, "L").save(buffer, "PNG")
    sent = client.put(f"{API}/segment/masks/{key}", json={"mask": base64.b64encode(buffer.getvalue()).decode()})
    assert sent.status_code == 204
    stored = np.asarray(Image.open(editor_store.mask_file(ctx.paths, key)))
    assert set(np.unique(stored)) == {0, 255} and np.array_equal(stored > 0, mask > 127)
    empty = io.BytesIO()
    Image.new("L", (200, 160), 0).save(empty, "PNG")
    refused = client.put(f"{API}/segment/masks/{key}", json={"mask": base64.b64encode(empty.getvalue()).decode()})
    assert refused.status_code == 422 and "empty" in refused.json()["message"]
    assert client.put(f"{API}/segment/masks/{key}", json={"mask": "aGVsbG8="}).status_code == 422  # not an image
    assert editor_store.mask_file(ctx.paths, "2" * 64) is None


def test_the_pose_editor_hand_over_checks_the_skeleton(client, ctx, photo):
    from easyphoto.pose.gallery import gallery_pose
    from easyphoto.pose.skeleton import skeleton_to_json
    from easyphoto.segment import editor_store

    key = editor_store.store_photo(ctx.paths, photo[0])
    assert client.get(f"{API}/segment/poses/{key}").status_code == 404
    skeleton = skeleton_to_json([gallery_pose("walking", (200, 160))], (200, 160))
    assert client.put(f"{API}/segment/poses/{key}", json={"skeleton": skeleton}).status_code == 204
    assert client.get(f"{API}/segment/poses/{key}").json() == skeleton
    short = {"canvas_width": 200, "canvas_height": 160, "people": [{"pose_keypoints_2d": [1, 2, 1]}]}
    refused = client.put(f"{API}/segment/poses/{key}", json={"skeleton": short})
    assert refused.status_code == 422 and "has 3 numbers" in refused.json()["message"]
    page = client.get(f"{API}/segment/pose-editor")
    assert page.status_code == 200 and "easyphoto_pose_svg" in page.text and "https://" not in page.text
    assert "window.EasyPhotoPose" in client.get(f"{API}/assets/easyphoto_pose.js").text
    assert client.get(f"{API}/assets/other.js").status_code == 404
