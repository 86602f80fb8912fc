"""A hostile corpus through the REST API of the standalone app: broken images, hostile ids, malformed bodies and
queries, path tricks, concurrency with cancels, and kill -9 with a restart.

Every case asserts a specific 4xx answer (never 5xx), a message that names what is wrong, and a store that is
byte-for-byte what it was before the request. The store is one identity with real photos, built once per module.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from easyphoto import operations
from easyphoto.app import create_app
from easyphoto.context import standalone_context
from tests.test_api_routes import wait_final

API = "/easyphoto/v1"
ROOT = Path(__file__).resolve().parent.parent


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_bytes(size=(64, 64), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """Every file under the data root with its content hash: what "the store is unchanged" means."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory, photos_same_man):
    root = tmp_path_factory.mktemp("hostile")
    ctx = standalone_context(root)
    client = TestClient(create_app(ctx, with_ui=False))
    photos = [b64(p.read_bytes()) for p in photos_same_man]
    assert client.post(f"{API}/identities", json={"id": "alice", "photos": photos}).status_code == 201
    yield root, client
    operations.shutdown_all()


@pytest.fixture(scope="module")
def truncated_jpeg(photos_same_man) -> bytes:
    """A real photo cut inside its JPEG header, as `head -c` leaves a failed download."""
    return photos_same_man[0].read_bytes()[:600]


def _bomb_png() -> bytes:
    """A valid PNG header announcing 60000 × 60000 pixels: a decompression bomb for naive decoders."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


# (case id, method, path, request kwargs, accepted statuses, words the answer must contain)
BODY_CASES = [
    ("body-not-json", "post", "/identities", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     {422, 400}, ["json"]),
    ("body-array", "post", "/identities", {"json": [1, 2]}, {422}, ["body"]),
    ("body-missing-id", "post", "/identities", {"json": {"photos": []}}, {422}, ["id"]),
    ("body-photos-not-list", "post", "/identities", {"json": {"id": "bob", "photos": "x"}}, {422}, ["photos"]),
    ("body-photos-ints", "post", "/identities", {"json": {"id": "bob", "photos": [1, 2]}}, {422}, ["photos"]),
    ("body-unknown-field", "post", "/identities", {"json": {"id": "bob", "photos": [], "colour": "red"}}, {422},
     ["colour"]),
    ("train-unknown-field", "post", "/train", {"json": {"identity_id": "alice", "bogus": 1}}, {422}, ["bogus"]),
    ("train-nan", "post", "/train", {"content": b'{"identity_id": "alice", "config": {"learning_rate": NaN}}',
                                     "headers": {"content-type": "application/json"}}, {422}, ["learning_rate"]),
    ("train-inf", "post", "/train", {"content": b'{"identity_id": "alice", "config": {"learning_rate": Infinity}}',
                                     "headers": {"content-type": "application/json"}}, {422}, ["learning_rate"]),
    ("train-neg-inf", "post", "/train", {"content": b'{"identity_id": "alice", "config": {"learning_rate": -Infinity}}',
                                         "headers": {"content-type": "application/json"}}, {422}, ["learning_rate"]),
    ("portrait-nan", "post", "/portraits",
     {"content": b'{"identity_ids": ["alice"], "template_names": ["user/x.png"], "config": {"cfg_scale": NaN}}',
      "headers": {"content-type": "application/json"}}, {422}, ["cfg_scale"]),
    ("train-config-unknown", "post", "/train", {"json": {"identity_id": "alice", "config": {"learning_rat": 1e-4}}},
     {422}, ["learning_rat"]),
    ("train-config-type", "post", "/train", {"json": {"identity_id": "alice", "config": {"rank": "big"}}}, {422},
     ["rank"]),
    ("train-config-range", "post", "/train", {"json": {"identity_id": "alice", "config": {"rank": -4}}}, {422},
     ["rank"]),
    ("train-config-huge-int", "post", "/train", {"json": {"identity_id": "alice", "config": {"rank": 10 ** 30}}},
     {422}, ["rank"]),
    ("portrait-one-step", "post", "/portraits",
     {"json": {"identity_ids": ["alice"], "template_names": ["user/x.png"],
               "config": {"first_steps": 2, "first_denoising_strength": 0.3}}}, {422}, ["first_steps"]),
    ("portrait-no-identities", "post", "/portraits", {"json": {"identity_ids": [], "template_names": ["user/x.png"]}},
     {422, 400}, ["identit"]),
    ("check-config-unknown", "post", "/identities/alice/check", {"json": {"config": {"nope": 1}}}, {422}, ["nope"]),
    ("models-fetch-empty", "post", "/models/fetch", {"json": {}}, {422, 400}, ["ids"]),
    ("models-fetch-unknown-id", "post", "/models/fetch", {"json": {"ids": ["no-such-model"]}}, {404, 422, 400},
     ["no-such-model"]),
    ("import-empty", "post", "/identities/import", {"json": {}}, {422, 400, 415}, ["bundle"]),
]

QUERY_CASES = [
    ("jobs-limit-negative", "get", "/jobs?limit=-5", {}, {422}, ["limit"]),
    ("jobs-limit-text", "get", "/jobs?limit=abc", {}, {422}, ["limit"]),
    ("jobs-state-bogus", "get", "/jobs?state=bogus", {}, {422, 400}, ["state"]),
    ("jobs-kind-bogus", "get", "/jobs?kind=bogus", {}, {422, 400}, ["kind"]),
    ("result-images-bogus", "get", "/jobs/0123456789abcdef0123456789abcdef/result?images=bogus", {}, {422, 404},
     ["images"]),
    ("models-group-bogus", "get", "/models?group=bogus", {}, {422, 400, 404}, ["group"]),
    ("export-bad-flag", "get", "/identities/alice/export?include_dataset=maybe", {}, {422}, ["include_dataset"]),
]

ID_CASES = [
    ("id-dotdot", "get", "/identities/..%2F..%2Fetc", {}, {404}, ["no api route"]),
    ("id-upper", "get", "/identities/ALICE", {}, {404, 422, 400}, ["identit"]),
    ("id-space", "get", "/identities/al%20ice", {}, {404, 422, 400}, ["identit"]),
    ("id-nul", "get", "/identities/al%00ice", {}, {404, 422, 400}, ["identit"]),
    ("id-long", "get", "/identities/" + "a" * 300, {}, {404, 422, 400}, ["identit"]),
    ("id-dot", "get", "/identities/.hidden", {}, {404, 422, 400}, ["identit"]),
    ("id-unknown", "get", "/identities/nobody", {}, {404}, ["nobody"]),
    ("delete-unknown", "delete", "/identities/nobody", {}, {404}, ["nobody"]),
    ("report-unchecked", "get", "/identities/alice/report", {}, {409}, ["check"]),
    ("create-id-slash", "post", "/identities", {"json": {"id": "a/b", "photos": []}}, {422, 400}, ["id"]),
    ("create-id-dotdot", "post", "/identities", {"json": {"id": "..", "photos": []}}, {422, 400}, ["id"]),
    ("create-id-empty", "post", "/identities", {"json": {"id": "", "photos": []}}, {422, 400}, ["id"]),
    ("create-id-emoji", "post", "/identities", {"json": {"id": "😀", "photos": []}}, {422, 400}, ["id"]),
    ("create-existing", "post", "/identities", {"json": {"id": "alice", "photos": []}}, {409, 422, 400}, ["alice"]),
    ("train-unknown-identity", "post", "/train", {"json": {"identity_id": "nobody"}}, {404}, ["nobody"]),
    ("portrait-untrained", "post", "/portraits", {"json": {"identity_ids": ["alice"], "templates": [b64(png_bytes())]}},
     {409}, ["alice", "no trained lora"]),
    ("photo-delete-unknown", "delete", "/identities/alice/photos/nope.jpg", {}, {404, 405}, []),
    ("photo-delete-traversal", "delete", "/identities/alice/photos/..%2F..%2Fidentity.json", {}, {404, 422, 400, 405},
     []),
]

PATH_CASES = [
    ("job-unknown", "get", "/jobs/0123456789abcdef0123456789abcdef", {}, {404}, ["job"]),
    ("job-bad-id", "get", "/jobs/..%2F..%2Fsettings", {}, {404}, ["no api route"]),
    ("route-unknown", "post", "/identitiez", {"json": {}}, {404}, ["no api route", "/docs"]),
    ("route-wrong-method", "put", "/jobs", {}, {404, 405}, ["put"]),
    ("cancel-unknown", "post", "/jobs/0123456789abcdef0123456789abcdef/cancel", {}, {404}, ["job"]),
    ("job-file-traversal", "get", "/jobs/0123456789abcdef0123456789abcdef/files/..%2Fspec.json", {}, {404, 400, 422},
     []),
    ("template-unknown", "get", "/templates/user/nothing.png", {}, {404}, ["nothing.png"]),
    ("template-bad-source", "get", "/templates/evil/x.png", {}, {404, 422, 400}, ["evil"]),
    ("template-traversal", "get", "/templates/user/..%2F..%2Fsettings.json", {}, {404, 422, 400}, []),
    ("template-delete-unknown", "delete", "/templates/user/nothing.png", {}, {404}, ["nothing.png"]),
]


def _image_cases(truncated_jpeg):
    text_url = "data:text/plain;base64," + b64(b"hello world")
    big = "A" * (26 * 1024 * 1024 * 4 // 3 + 8)
    return [
        ("photo-empty-string", {"photos": [""]}, ["empty"]),
        ("photo-not-base64", {"photos": ["not base64 !!!"]}, ["base64"]),
        ("photo-text-mime", {"photos": [text_url]}, ["text/plain"]),
        ("photo-too-big", {"photos": [big]}, ["25 mb"]),
        ("photo-too-many", {"photos": [b64(png_bytes())] * 51}, ["50"]),
        ("photo-not-list", {"photos": {"a": 1}}, ["photos"]),
        ("photo-unknown-field", {"photos": [], "extra": True}, ["extra"]),
    ]


ALL_REQUEST_CASES = BODY_CASES + QUERY_CASES + ID_CASES + PATH_CASES


@pytest.mark.parametrize(("method", "path", "kwargs", "statuses", "words"),
                         [pytest.param(*case[1:], id=case[0]) for case in ALL_REQUEST_CASES])
def test_hostile_request_gets_a_specific_answer_and_changes_nothing(store, method, path, kwargs, statuses, words):
    root, client = store
    before = snapshot(root)
    response = getattr(client, method)(API + path, **kwargs)
    assert response.status_code in statuses, (response.status_code, response.text)
    text = response.text.lower()
    for word in words:
        assert word.lower() in text, response.text
    assert "traceback" not in text and "this is a bug" not in text
    assert snapshot(root) == before


@pytest.mark.parametrize("case", range(7), ids=[c[0] for c in _image_cases(b"")])
def test_hostile_photo_upload_is_refused_by_name(store, truncated_jpeg, case):
    name, body, words = _image_cases(truncated_jpeg)[case]
    root, client = store
    before = snapshot(root)
    response = client.post(f"{API}/identities/alice/photos", json=body)
    assert response.status_code in (400, 413, 415, 422), (response.status_code, response.text[:300])
    for word in words:
        assert word.lower() in response.text.lower(), response.text[:500]
    assert snapshot(root) == before


@pytest.mark.parametrize("kind", ["truncated", "bomb", "zero-bytes", "text"])
def test_broken_template_upload_is_a_4xx_and_stores_nothing(store, truncated_jpeg, kind):
    data = {"truncated": truncated_jpeg, "bomb": _bomb_png(), "zero-bytes": b"", "text": b"just text"}[kind]
    root, client = store
    before = snapshot(root)
    response = client.post(f"{API}/templates", json={"image": b64(data) if data else "", "filename": "t.png"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "traceback" not in response.text.lower()
    assert snapshot(root) == before


def test_a_broken_photo_is_dropped_with_its_reason_and_the_others_are_checked(tmp_path, photos_same_man,
                                                                              truncated_jpeg):
    client = TestClient(create_app(standalone_context(tmp_path), with_ui=False))
    try:
        photos = [b64(p.read_bytes()) for p in photos_same_man] + [b64(truncated_jpeg), b64(_bomb_png())]
        assert client.post(f"{API}/identities", json={"id": "bob", "photos": photos}).status_code == 201
        job = client.post(f"{API}/identities/bob/check").json()
        record = wait_final(client, job)
        assert record["state"] == "succeeded", record
        report = client.get(f"{API}/identities/bob/report").json()
        dropped = [p for p in report["photos"] if not p["kept"]]
        assert report["kept"] == len(photos_same_man) and len(dropped) == 2
        assert all(p["reason"] and "bug" not in p["reason"].lower() for p in dropped), dropped
    finally:
        operations.shutdown_all()


def test_same_photos_twice_are_stored_once(tmp_path, photos_same_man):
    client = TestClient(create_app(standalone_context(tmp_path), with_ui=False))
    photos = [b64(p.read_bytes()) for p in photos_same_man]
    assert client.post(f"{API}/identities", json={"id": "carol", "photos": photos}).json()["photos"] == 3
    again = client.post(f"{API}/identities/carol/photos", json={"photos": photos})
    assert again.status_code == 200 and again.json()["photos"] == 3
    assert (again.json()["added"], again.json()["already_stored"]) == (0, 3)


def test_concurrent_uploads_and_cancels_leave_a_consistent_store(tmp_path, photos_same_man):
    """Eight threads add the same photos and submit and cancel checks at once: no 5xx, no photo twice, every job
    ends in a final state."""
    ctx = standalone_context(tmp_path)
    client = TestClient(create_app(ctx, with_ui=False))
    photos = [b64(p.read_bytes()) for p in photos_same_man]
    assert client.post(f"{API}/identities", json={"id": "dave", "photos": photos[:1]}).status_code == 201
    statuses, jobs = [], []
    start = threading.Barrier(8)

    def worker(n):
        start.wait()
        statuses.append(client.post(f"{API}/identities/dave/photos", json={"photos": photos}).status_code)
        job = client.post(f"{API}/identities/dave/check")
        statuses.append(job.status_code)
        if job.status_code == 202:
            jobs.append(job.json()["id"])
            statuses.append(client.post(f"{API}/jobs/{job.json()['id']}/cancel").status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    try:
        assert statuses and all(s < 500 for s in statuses), statuses
        assert client.get(f"{API}/identities/dave").json()["photos"] == len(photos_same_man)
        finals = [wait_final(client, {"id": job})["state"] for job in jobs]
        assert set(finals) <= {"succeeded", "cancelled"}, finals  # a cancel never turns into a failure
    finally:
        operations.shutdown_all()


def test_kill_9_mid_job_and_restart_keeps_the_store_and_ends_the_job(tmp_path, photos_same_man):
    """The server is killed while a photo check may still run; after a restart the job is final (never stuck
    "running") and the identity still has its photos."""
    server = _start_server(tmp_path)
    try:
        url = server.url
        import httpx

        photos = [b64(p.read_bytes()) for p in photos_same_man]
        assert httpx.post(f"{url}{API}/identities", json={"id": "erin", "photos": photos}, timeout=60).status_code == 201
        job = httpx.post(f"{url}{API}/identities/erin/check", timeout=60).json()
    finally:
        server.kill()
    server = _start_server(tmp_path)
    try:
        import httpx

        record = httpx.get(f"{server.url}{API}/jobs/{job['id']}", timeout=30).json()
        assert record["state"] in ("succeeded", "failed"), record
        if record["state"] == "failed":
            assert "interrupted" in record["error"]["message"].lower()
        assert httpx.get(f"{server.url}{API}/identities/erin", timeout=30).json()["photos"] == len(photos_same_man)
    finally:
        server.kill()


class _Server:
    def __init__(self, process, url):
        self.process, self.url = process, url

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _start_server(data_dir: Path) -> _Server:
    command = [sys.executable, "-m", "easyphoto", "serve", "--no-ui", "--port", "0", "--data-dir", str(data_dir)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stdout:
        if "serving on " in line:
            url = line.split("serving on ", 1)[1].split(" ", 1)[0]
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return _Server(process, url)
    raise AssertionError(f"the server did not start (exit {process.wait()})")


def test_deleting_an_identity_through_the_api_says_when_a_namesake_lora_was_left(tmp_path):
    """A community LoRA named like the identity is never deleted, and the answer says so (not only the log)."""
    ctx = standalone_context(tmp_path)
    client = TestClient(create_app(ctx, with_ui=False))
    assert client.post(f"{API}/identities", json={"id": "zoe", "photos": []}).status_code == 201
    community = ctx.paths.lora_dir / "zoe.safetensors"
    community.parent.mkdir(parents=True, exist_ok=True)
    header = b'{"__metadata__":{"ss_network_module":"networks.lora"}}'  # kohya's keys, not EasyPhoto's
    community.write_bytes(len(header).to_bytes(8, "little") + header)
    assert client.get(f"{API}/identities/zoe").json()["has_lora"] is False  # a namesake is not its LoRA
    answer = client.delete(f"{API}/identities/zoe")
    assert answer.status_code == 200 and "left in place" in answer.json()["notes"][0]
    assert community.is_file() and client.get(f"{API}/identities/zoe").status_code == 404
    assert client.post(f"{API}/identities", json={"id": "amy", "photos": []}).status_code == 201
    assert client.delete(f"{API}/identities/amy").status_code == 204
