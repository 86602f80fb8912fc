"""Model downloads against a real HTTP server on 127.0.0.1: hub client, plain URLs, ModelScope, zip members, resume,
checksum quarantine, source fallback, "never twice", offline without sockets, host destinations, and the CLI.

The server speaks just enough HTTP for urllib and for huggingface_hub's `hf_hub_download` (HEAD with X-Repo-Commit,
ETag and Content-Length on `/{repo}/resolve/{revision}/{file}`, GET with Range). Tests use their own tiny manifests
(the `manifest=` argument, or a swapped `weights.MANIFEST` for the CLI); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from easyphoto import cli, downloads, weights
from easyphoto.downloads import ChecksumMismatch, DownloadBusy, Endpoints
from easyphoto.errors import MissingWeights
from easyphoto.store import Paths
from easyphoto.weights import Source, WeightFile
from tests.conftest import require_module

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "a" * 40


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating test bytes (a repeated pattern would hide an offset bug on resume)."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- local server


class FileServer:
    """Files by request path (query included). Per file: extra headers, a status, a one-shot "drop the connection
    after N body bytes", and "ignore Range". Every request is logged as (method, path, Range header)."""

    def __init__(self):
        self.files: dict[str, dict] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                server._answer(self, body=False)

            def do_GET(self):
                server._answer(self, body=True)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def add(self, path: str, data: bytes, *, status: int = 200, headers: dict | None = None,
            drop_after: int | None = None, ignore_range: bool = False) -> str:
        self.files[path] = {"data": data, "status": status, "headers": headers or {}, "drop_after": drop_after,
                            "ignore_range": ignore_range}
        return self.base + path

    def add_hf(self, repo: str, filename: str, data: bytes, *, etag: str | None = None, revision: str = "main"):
        """A file as the Hub serves it: LFS files announce their sha256 as ETag."""
        return self.add(f"/{repo}/resolve/{revision}/{filename}", data,
                        headers={"X-Repo-Commit": COMMIT, "ETag": f'"{etag or sha(data)}"'})

    def requests(self, method: str | None = None, path: str | None = None) -> list[tuple[str, str, str | None]]:
        with self._lock:
            return [r for r in self.log if (method is None or r[0] == method) and (path is None or r[1] == path)]

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        with self._lock:
            self.log.append((h.command, h.path, h.headers.get("Range")))
        spec = self.files.get(h.path)
        if spec is None or spec["status"] != 200:
            h.send_response(spec["status"] if spec else 404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data, start = spec["data"], 0
        rng = h.headers.get("Range")
        if rng and not spec["ignore_range"] and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        for key, value in spec["headers"].items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        if not body:
            return
        payload = data[start:]
        if spec["drop_after"] is not None:
            payload, spec["drop_after"] = payload[: spec["drop_after"]], None  # one-shot: the retry gets it all
            h.close_connection = True
        h.wfile.write(payload)
        h.wfile.flush()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def paths(tmp_path):
    return Paths.standalone(tmp_path / "home")


def entry(id_: str, *sources: Source, data: bytes | None = None, destination="easyphoto", subdir="test",
          filename: str | None = None, with_sha=True, size: int | None = None, group="test") -> WeightFile:
    return WeightFile(
        id=id_, filename=filename or f"{id_}.bin", group=group, purpose=f"test file {id_}", licence="test",
        destination=destination, subdir=subdir if destination == "easyphoto" else "", sources=sources,
        sha256=sha(data) if (data is not None and with_sha) else None,
        size=size if size is not None else (len(data) if data is not None and with_sha else None),
    )


def fetch_one(e: WeightFile, paths: Paths, server: FileServer, **kw) -> weights.FetchResult:
    kw.setdefault("endpoints", Endpoints(huggingface=server.base, modelscope=server.base))
    [result] = weights.fetch([e.id], paths, manifest=[e], **kw)
    return result


# ---------------------------------------------------------------------------------------------- sources


def test_hf_source_lands_in_the_controlnet_folder_and_ours_under_models_root(server, paths):
    hub = require_module("huggingface_hub")
    assert hub.__version__
    cn_data, own_data = blob(300_000, 1), blob(5_000, 2)
    server.add_hf("acme/controlnets", "models/cn_test.safetensors", cn_data)
    server.add_hf("acme/faces", "det.onnx", own_data, revision=COMMIT)
    cn = entry("cn", Source("huggingface", "acme/controlnets", "models/cn_test.safetensors"), data=cn_data,
               destination="controlnet", filename="cn_test.safetensors")
    own = entry("own", Source("huggingface", "acme/faces", "det.onnx", COMMIT), data=own_data, subdir="faces/pack")
    results = weights.fetch(None, paths, manifest=[cn, own], endpoints=Endpoints(huggingface=server.base))
    assert [r.state for r in results] == ["downloaded", "downloaded"], [r.error for r in results]
    assert results[0].path == paths.controlnet_dir / "cn_test.safetensors"
    assert results[1].path == paths.models_root / "faces" / "pack" / "own.bin"
    assert results[0].path.read_bytes() == cn_data and results[1].path.read_bytes() == own_data
    assert results[0].source == "https://huggingface.co/acme/controlnets/resolve/main/models/cn_test.safetensors"
    assert server.requests("HEAD", "/acme/controlnets/resolve/main/models/cn_test.safetensors")
    assert server.requests("GET", f"/acme/faces/resolve/{COMMIT}/det.onnx")
    leftovers = [p.name for p in paths.controlnet_dir.iterdir()]
    assert leftovers == ["cn_test.safetensors"]  # no staging folder, lock or .part left behind


def test_hf_endpoint_comes_from_the_environment(server, paths, monkeypatch):
    require_module("huggingface_hub")
    data = blob(1000, 3)
    server.add_hf("acme/x", "f.bin", data)
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    e = entry("f", Source("huggingface", "acme/x", "f.bin"), data=data)
    [result] = weights.fetch(["f"], paths, manifest=[e])
    assert result.state == "downloaded" and server.requests("GET", "/acme/x/resolve/main/f.bin")


def test_hf_lfs_etag_checks_files_the_manifest_has_no_hash_for(server, paths):
    require_module("huggingface_hub")
    data = blob(2000, 4)
    server.add_hf("acme/x", "f.bin", data, etag=sha(b"the published file"))
    e = entry("f", Source("huggingface", "acme/x", "f.bin"), data=data, with_sha=False)
    result = fetch_one(e, paths, server)
    assert result.state == "failed" and isinstance(result.error, ChecksumMismatch)
    assert result.error.expected_sha256 == sha(b"the published file") and result.error.actual_sha256 == sha(data)


def test_a_pickled_file_nothing_can_check_is_refused(server, paths):
    """No recorded sha256 and a source that announces none: a .pth (unpickling can run code) is not installed;
    nothing is even requested from a plain URL."""
    data = blob(2000, 9)
    url = server.add("/files/unpinned.pth", data)
    e = entry("unpinned", Source("url", url), data=data, with_sha=False, filename="unpinned.pth")
    result = fetch_one(e, paths, server)
    assert result.state == "failed" and isinstance(result.error, MissingWeights)
    assert "Refused to install unpinned.pth: it is a pickled file" in result.error.message
    assert not server.requests("GET", "/files/unpinned.pth") and not e.path(paths).exists()
    # the same file with a recorded hash, or an explicit reviewed exception, is fetched
    pinned = dataclasses.replace(e, sha256=sha(data))
    assert fetch_one(pinned, paths, server).state == "downloaded"
    e.path(paths).unlink()
    excepted = dataclasses.replace(e, unpinned_reason="test: no public hash exists")
    assert fetch_one(excepted, paths, server).state == "downloaded"
    # other formats keep the old rule: checked only when a hash or size is known
    plain = entry("plain", Source("url", server.add("/files/plain.onnx", data)), data=data, with_sha=False,
                  filename="plain.onnx")
    assert fetch_one(plain, paths, server).state == "downloaded"


def test_a_pickled_file_from_the_hub_is_checked_against_its_lfs_hash(server, paths):
    require_module("huggingface_hub")
    data = blob(2000, 10)
    server.add_hf("acme/x", "lfs.pth", data)  # LFS: the ETag is the sha256, so the file can be checked
    lfs = entry("lfs", Source("huggingface", "acme/x", "lfs.pth"), data=data, with_sha=False, filename="lfs.pth")
    assert fetch_one(lfs, paths, server).state == "downloaded"
    server.add("/acme/x/resolve/main/git.pth", data, headers={"X-Repo-Commit": COMMIT, "ETag": f'"{"a" * 40}"'})
    git = entry("git", Source("huggingface", "acme/x", "git.pth"), data=data, with_sha=False, filename="git.pth")
    result = fetch_one(git, paths, server)
    assert result.state == "failed" and "Refused to install git.pth" in result.error.message
    assert not git.path(paths).exists() and not any(p.name.startswith(".git.pth") for p in git.path(paths).parent.iterdir())


def test_url_source_reports_progress(server, paths):
    data = blob(3 * downloads.CHUNK + 123, 5)
    url = server.add("/files/model.pth", data)
    seen = []
    e = entry("plain", Source("url", url), data=data, subdir="upscalers")
    result = fetch_one(e, paths, server, progress=lambda i, done, total: seen.append((i, done, total)))
    assert result.state == "downloaded" and result.path == paths.models_root / "upscalers" / "plain.bin"
    assert result.path.read_bytes() == data
    assert seen[-1] == ("plain", len(data), len(data)) and [s[1] for s in seen] == sorted(s[1] for s in seen)


def test_modelscope_source_uses_its_file_api_at_the_configured_endpoint(server, paths, monkeypatch):
    data = blob(4000, 6)
    server.add("/api/v1/models/acme/faces/repo?Revision=master&FilePath=weights%2Fparse.pth", data)
    monkeypatch.setenv("EASYPHOTO_MODELSCOPE_ENDPOINT", server.base)
    e = entry("ms", Source("modelscope", "acme/faces", "weights/parse.pth"), data=data)
    [result] = weights.fetch(["ms"], paths, manifest=[e])
    assert result.state == "downloaded", result.error
    assert result.path.read_bytes() == data
    assert e.sources[0].describe() == "https://www.modelscope.cn/models/acme/faces/resolve/master/weights/parse.pth"


def test_zip_members_share_one_archive_download(server, paths):
    det, rec = blob(7000, 7), blob(9000, 8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pack/det.onnx", det)  # nested folder, as antelopev2.zip does
        zf.writestr("pack/rec.onnx", rec)
    url = server.add("/release/pack.zip", buf.getvalue())
    a = entry("det", Source("zip", url, "det.onnx"), data=det, filename="det.onnx", subdir="insightface/pack")
    b = entry("rec", Source("zip", url, "pack/rec.onnx"), data=rec, filename="rec.onnx", subdir="insightface/pack")
    results = weights.fetch(None, paths, manifest=[a, b])
    assert [r.state for r in results] == ["downloaded", "downloaded"], [r.error for r in results]
    assert (paths.models_root / "insightface/pack/det.onnx").read_bytes() == det
    assert (paths.models_root / "insightface/pack/rec.onnx").read_bytes() == rec
    assert len(server.requests("GET", "/release/pack.zip")) == 1
    assert not list((paths.models_root / ".downloads").iterdir())  # the archive is removed afterwards


# ---------------------------------------------------------------------------------------------- resume


def test_resume_after_an_interrupted_transfer(server, paths):
    data = blob(2 * downloads.CHUNK + 5000, 9)
    url = server.add("/big.bin", data, drop_after=700_000)
    e = entry("big", Source("url", url), data=data)
    result = fetch_one(e, paths, server)
    assert result.state == "downloaded", result.error
    gets = server.requests("GET", "/big.bin")
    assert [g[2] for g in gets] == [None, "bytes=700000-"]
    assert result.path.read_bytes() == data and not result.path.with_name("big.bin.part").exists()


def test_resume_from_a_partial_file_left_by_a_killed_process(server, paths):
    data = blob(500_000, 10)
    e = entry("big", Source("url", server.add("/big.bin", data)), data=data)
    part = e.path(paths).with_name("big.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:123_456])
    assert fetch_one(e, paths, server).state == "downloaded"
    assert [g[2] for g in server.requests("GET")] == ["bytes=123456-"]
    assert e.path(paths).read_bytes() == data


def test_a_server_ignoring_range_restarts_the_file_cleanly(server, paths):
    data = blob(200_000, 11)
    e = entry("big", Source("url", server.add("/big.bin", data, ignore_range=True)), data=data)
    part = e.path(paths).with_name("big.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    assert fetch_one(e, paths, server).state == "downloaded"
    assert e.path(paths).read_bytes() == data


def test_cancel_keeps_the_partial_file_and_the_next_run_resumes(server, paths):
    data = blob(3 * downloads.CHUNK, 12)
    e = entry("big", Source("url", server.add("/big.bin", data)), data=data)
    calls = []
    result = fetch_one(e, paths, server, progress=lambda *a: calls.append(a), cancel=lambda: bool(calls))
    assert result.state == "cancelled" and not result.ok
    part = e.path(paths).with_name("big.bin.part")
    assert part.stat().st_size == downloads.CHUNK and not e.path(paths).exists()
    with pytest.raises(downloads.DownloadCancelled, match="resume"):
        weights.raise_for_failures([result])
    assert fetch_one(e, paths, server).state == "downloaded"
    assert server.requests("GET")[-1][2] == f"bytes={downloads.CHUNK}-"
    assert e.path(paths).read_bytes() == data


# ---------------------------------------------------------------------------------------------- verification


def test_sha256_mismatch_quarantines_the_file_with_a_specific_error(server, paths):
    published, served = blob(50_000, 13), blob(50_000, 14)
    url = server.add("/m.bin", served)
    e = entry("m", Source("url", url), data=published)
    result = fetch_one(e, paths, server)
    assert result.state == "failed" and isinstance(result.error, ChecksumMismatch)
    err = result.error
    assert err.expected_sha256 == sha(published) and err.actual_sha256 == sha(served) and err.source == url
    assert err.quarantined.parent == paths.models_root / ".quarantine" and err.quarantined.name.startswith("m.bin.")
    assert err.quarantined.read_bytes() == served
    assert not e.path(paths).exists() and not e.path(paths).with_name("m.bin.part").exists()
    with pytest.raises(ChecksumMismatch) as info:
        weights.ensure(["m"], paths, manifest=[e])
    text = str(info.value)
    assert sha(published) in text and sha(served) in text and str(e.path(paths)) in text
    assert isinstance(info.value, MissingWeights)  # callers that handle "missing weights" handle this too


def test_a_failing_source_falls_back_to_the_next(server, paths):
    data = blob(10_000, 15)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/gone.bin"
    good = server.add("/good.bin", data)
    e = entry("m", Source("url", server.base + "/missing.bin"), Source("url", dead), Source("url", good), data=data)
    result = fetch_one(e, paths, server)
    assert result.state == "downloaded" and result.source == good
    assert result.path.read_bytes() == data


def test_all_sources_failing_names_each_source_and_the_manual_destination(server, paths):
    e = entry("m", Source("url", server.base + "/a.bin"), Source("modelscope", "acme/x", "m.bin"), data=b"x")
    with pytest.raises(MissingWeights) as info:
        weights.ensure(["m"], paths, manifest=[e], endpoints=Endpoints(modelscope=server.base))
    text = str(info.value)
    assert "tried 2 source(s)" in text and "HTTP 404" in text
    assert server.base + "/a.bin" in text and "modelscope.cn/models/acme/x/resolve/master/m.bin" in text
    assert f"put it at {e.path(paths)}" in text
    assert [t["source"] for t in info.value.missing[0]["tried"]] == [s.describe() for s in e.sources]


def test_a_present_file_costs_no_request_and_is_hashed_once(server, paths, monkeypatch):
    data = blob(20_000, 16)
    e = entry("m", Source("url", server.base + "/m.bin"), data=data)
    target = e.path(paths)
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    hashed = []
    real = downloads.sha256_file
    monkeypatch.setattr(downloads, "sha256_file", lambda p, c=None: hashed.append(p) or real(p, c))
    for _ in range(3):
        assert fetch_one(e, paths, server).state == "present"
    assert server.requests() == [] and len(hashed) == 1  # later calls trust the stamp (same size and mtime)
    assert weights.ensure(["m"], paths, manifest=[e]) == [target]


def test_a_damaged_file_in_place_is_quarantined_and_fetched_again(server, paths):
    data = blob(20_000, 17)
    e = entry("m", Source("url", server.add("/m.bin", data)), data=data)
    target = e.path(paths)
    target.parent.mkdir(parents=True)
    target.write_bytes(blob(20_000, 18))  # right size, wrong bytes
    result = fetch_one(e, paths, server)
    assert result.state == "downloaded" and target.read_bytes() == data
    assert "moved to" in result.notes[0] and len(list((paths.models_root / ".quarantine").iterdir())) == 1


def test_verify_reports_ok_corrupt_missing_and_unverified(server, paths):
    good, bad = blob(100, 19), blob(100, 20)
    entries = [entry("ok", data=good), entry("bad", data=good), entry("gone", data=good),
               entry("sized", data=good, with_sha=False, size=100), entry("bare", data=good, with_sha=False)]
    for e, content in zip(entries, (good, bad, None, good, good), strict=True):
        if content is not None:
            e.path(paths).parent.mkdir(parents=True, exist_ok=True)
            e.path(paths).write_bytes(content)
    states = {r.entry.id: (r.state, r.detail) for r in weights.verify(None, paths, manifest=entries)}
    assert states["ok"][0] == "ok" and states["bad"][0] == "corrupt" and states["gone"][0] == "missing"
    assert states["sized"] == ("unverified", "no checksum recorded (size only): size matches")
    assert states["bare"][0] == "unverified" and server.requests() == []


# ---------------------------------------------------------------------------------------------- offline, hosts


def test_offline_mode_never_opens_a_socket(server, paths, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("offline mode opened a socket")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    e = entry("m", Source("huggingface", "acme/x", "m.bin"), Source("url", server.base + "/m.bin"),
              Source("zip", server.base + "/p.zip", "m.bin"), Source("modelscope", "acme/x", "m.bin"), data=b"abc",
              destination="controlnet")
    [result] = weights.fetch(["m"], paths, offline=True, manifest=[e])
    assert result.state == "offline" and result.path == paths.controlnet_dir / "m.bin"
    with pytest.raises(MissingWeights) as info:
        weights.ensure(["m"], paths, offline=True, manifest=[e])
    text = str(info.value)
    assert f"put it at {paths.controlnet_dir / 'm.bin'}" in text and "offline mode never downloads" in text
    for source in e.sources:
        assert source.describe() in text
    pkg = WeightFile(id="pkg", filename="nopkg", group="test", purpose="a package", licence="test",
                     destination="package", package="easyphoto_no_such_package", sources=(Source("pip", "nopkg"),))
    results = weights.fetch(None, paths, offline=True, manifest=[e, pkg])
    assert [r.state for r in results] == ["offline", "manual"]
    for ids, table in ((["m"], [e]), (["m", "pkg"], [e, pkg])):
        with pytest.raises(MissingWeights) as ours:
            weights.raise_for_failures(weights.fetch(ids, paths, offline=True, manifest=table))
        with pytest.raises(MissingWeights) as required:
            weights.require(ids, paths, table)
        assert str(ours.value) == str(required.value)  # offline fetch says exactly what require says
    assert server.requests() == []


def test_destinations_follow_the_host(server, paths, tmp_path):
    data = blob(1000, 21)
    url = server.add("/f.bin", data)
    cn = entry("cn", Source("url", url), data=data, destination="controlnet")
    own = entry("own", Source("url", url), data=data, subdir="insightface/buffalo_l")
    webui = tmp_path / "webui"
    host = Paths(data_root=webui / "outputs/easyphoto", models_root=webui / "models/easyphoto",
                 lora_dir=webui / "models/Lora", controlnet_dir=webui / "extensions/sd-webui-controlnet/models",
                 checkpoints_dir=webui / "models/Stable-diffusion")
    for p, cn_dir, own_dir in ((paths, tmp_path / "home/models/ControlNet", tmp_path / "home/models/easyphoto"),
                               (host, webui / "extensions/sd-webui-controlnet/models", webui / "models/easyphoto")):
        results = weights.fetch(None, p, manifest=[cn, own])
        assert [r.path for r in results] == [cn_dir / "cn.bin", own_dir / "insightface/buffalo_l/own.bin"]
        assert all(r.path.read_bytes() == data for r in results)


def test_a_held_destination_lock_is_reported_and_a_stale_one_taken_over(server, paths):
    data = blob(1000, 22)
    e = entry("m", Source("url", server.add("/m.bin", data)), data=data)
    lock = e.path(paths).with_name(".m.bin.lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getpid()))  # a live process holds it
    result = fetch_one(e, paths, server)
    assert result.state == "failed" and isinstance(result.error, DownloadBusy) and str(lock) in str(result.error)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(dead.stdout.strip())  # a process that has exited
    assert fetch_one(e, paths, server).state == "downloaded" and not lock.exists()


# ---------------------------------------------------------------------------------------------- manifest, import


def test_manifest_entries_are_fetchable_and_their_checksums_well_formed():
    ids = [e.id for e in weights.MANIFEST]
    assert len(ids) == len(set(ids))
    assert {e.group for e in weights.MANIFEST} <= set(weights.GROUPS)
    for e in weights.MANIFEST:
        assert e.licence and e.purpose and e.sources, e.id
        assert e.sha256 is None or (len(e.sha256) == 64 and e.sha256 == e.sha256.lower()), e.id
        assert e.size is None or e.size > 0, e.id
        kinds = {s.kind for s in e.sources}
        assert (kinds == {"pip"}) == (e.destination == "package"), e.id
        for s in e.sources:
            assert s.location and (s.path or s.kind in ("url", "pip")), (e.id, s)
            assert s.kind != "url" or s.location.startswith("https://"), (e.id, s)
    by_id = {e.id: e for e in weights.MANIFEST}
    assert by_id["sd15-base"].path(Paths.standalone("/x")) == Path(
        "/x/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors")
    assert by_id["controlnet-canny"].path(Paths.standalone("/x")) == Path("/x/models/ControlNet/control_v11p_sd15_canny.pth")
    assert weights.select(None, "base") == [by_id["sd15-base"]]
    assert weights.select(["realesrgan-x2plus"])[0].group == "upscaler"
    with pytest.raises(KeyError, match="groups"):
        weights.select(None, "nope")


def test_importing_the_manifest_and_transport_opens_and_loads_nothing():
    code = ("import json, sys; import easyphoto.weights, easyphoto.downloads; "
            "print(json.dumps([m for m in ('huggingface_hub', 'requests', 'httpx', 'urllib.request', 'http.client')"
            " if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == []


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_fetch_and_verify_against_the_local_server(server, tmp_path, monkeypatch, capsys):
    require_module("huggingface_hub")
    a, b = blob(3 * downloads.CHUNK, 23), blob(2000, 24)
    server.add_hf("acme/cn", "cn.safetensors", a)
    url = server.add("/b.bin", b)
    test_manifest = (
        entry("cli-cn", Source("huggingface", "acme/cn", "cn.safetensors"), data=a, destination="controlnet",
              filename="cn.safetensors", group="cli"),
        entry("cli-own", Source("url", url), data=b, group="cli"),
        entry("other", Source("url", server.base + "/never.bin"), data=b"never", group="else"),
    )
    monkeypatch.setattr(weights, "MANIFEST", test_manifest)  # the CLI reads the table at call time
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    home = str(tmp_path / "cli")

    assert cli.main(["--data-dir", home, "--offline", "models", "fetch", "--group", "cli"]) == 2
    err = capsys.readouterr().err
    assert "error: [models]" in err and str(Path(home) / "models/ControlNet/cn.safetensors") in err
    assert server.requests() == []

    assert cli.main(["--data-dir", home, "models", "fetch", "--group", "cli"]) == 0
    out = capsys.readouterr()
    assert "cli-cn" in out.out and "downloaded" in out.out and "cli-cn" in out.err  # progress on stderr
    assert not server.requests(path="/never.bin")

    assert cli.main(["--data-dir", home, "models", "fetch", "cli-own"]) == 0
    assert "present" in capsys.readouterr().out

    assert cli.main(["--data-dir", home, "models", "verify", "--json", "--group", "cli"]) == 0
    assert {r["id"]: r["state"] for r in json.loads(capsys.readouterr().out)} == {"cli-cn": "ok", "cli-own": "ok"}
    (Path(home) / "models/easyphoto/test/cli-own.bin").write_bytes(b"\0" * len(b))
    assert cli.main(["--data-dir", home, "models", "verify", "cli-own"]) == 1
    assert "corrupt" in capsys.readouterr().out

    assert cli.main(["--data-dir", home, "models", "fetch", "nope"]) == 2
    assert "Unknown weight id 'nope'" in capsys.readouterr().err


def test_console_progress_without_tqdm_prints_plain_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm → ImportError, as in a WebUI without it
    stream = io.StringIO()
    bar = downloads.ConsoleProgress(stream, every_s=0)
    bar("m", 2**20, 2**21)
    bar("m", 2**21, 2**21)
    bar.close()
    assert stream.getvalue().splitlines() == ["m: 1.0 / 2.0 MiB (50%)", "m: 2.0 / 2.0 MiB (100%)"]


# ---------------------------------------------------------------------------------------------- as a job


def test_fetch_job_through_the_api_and_the_models_tab(server, tmp_path, monkeypatch):
    """POST /models/fetch runs the download as a job; the Models tab's flow streams its progress."""
    from fastapi.testclient import TestClient

    from easyphoto import operations
    from easyphoto.app import create_app
    from easyphoto.context import standalone_context
    from easyphoto.ui.models_tab import download_flow

    good, bad = blob(300_000, 1), blob(1000, 2)
    server.add("/files/good.bin", good)
    ok = entry("good", Source("url", f"{server.base}/files/good.bin"), data=good, group="test")
    missing = entry("gone", Source("url", f"{server.base}/files/gone.bin"), data=bad, group="other")
    monkeypatch.setattr(weights, "MANIFEST", (ok, missing))
    monkeypatch.setattr(weights, "GROUPS", ("test", "other"))
    ctx = standalone_context(tmp_path)
    try:
        client = TestClient(create_app(ctx, with_ui=False))
        job = client.post("/easyphoto/v1/models/fetch", json={"group": "test"}).json()
        record = operations.job_queue(ctx).wait(job["id"], timeout=60)
        assert record.state.value == "succeeded" and record.result["files"][0]["state"] == "downloaded"
        assert ok.path(ctx.paths).read_bytes() == good
        failed = client.post("/easyphoto/v1/models/fetch", json={"ids": ["gone"]}).json()
        record = operations.job_queue(ctx).wait(failed["id"], timeout=60)
        assert record.state.value == "failed" and "gone.bin" in record.error["message"]
        updates = list(download_flow(ctx, "other"))
        assert updates[-1][0].startswith("**Download failed:**") and updates[-1][2] == ""
        offline = list(download_flow(standalone_context(tmp_path, offline=True), "all"))
        assert offline[-1][0].startswith("Offline mode: nothing is downloaded")
    finally:
        operations.shutdown_all()
