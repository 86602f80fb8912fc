"""The licence gate of model downloads: non-commercial weights (CatVTON's, OOTDiffusion's) are downloaded only with
the user's opt-in (Settings.allow_noncommercial_tryon), and every front end names the licences of what it is about
to download before the first byte. Against the real HTTP server of test_downloads.py on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import pytest

from easyphoto import cli, weights
from easyphoto.config import Settings
from easyphoto.context import save_settings_file, standalone_context
from easyphoto.downloads import Endpoints
from easyphoto.store import Paths
from easyphoto.weights import LicenceNotAccepted, Source, WeightFile
from tests import test_downloads
from tests.conftest import require_module
from tests.test_downloads import FileServer, blob, sha

server = test_downloads.server  # the local HTTP file server fixture, and a standalone Paths in tmp_path
paths = test_downloads.paths

NC = "CC BY-NC-SA 4.0 (test): non-commercial use only"


def served(server: FileServer, id_: str, data: bytes, *, licence="MIT", noncommercial=False, group="test",
           size: int | None = None) -> WeightFile:
    """A manifest entry whose one source is a plain URL on the local server."""
    url = server.add(f"/files/{id_}.safetensors", data)
    return WeightFile(id=id_, filename=f"{id_}.safetensors", group=group, purpose=f"test file {id_}", licence=licence,
                      destination="easyphoto", subdir="test", sources=(Source("url", url),), sha256=sha(data),
                      sha256_source="test", size=len(data) if size is None else size, noncommercial=noncommercial)


# ---------------------------------------------------------------------------------------------- weights.fetch


def test_a_real_noncommercial_entry_is_refused_without_opt_in_and_fetched_with_it(server, paths):
    """The manifest's CatVTON attention weights, served as the Hub serves them: no request at all without the opt-in
    (the error names the licence and the setting), the LFS-checked download with it, present afterwards either way."""
    require_module("huggingface_hub")
    entry = weights.get("catvton-attention-vitonhd")
    data = blob(5000, 1)
    server.add_hf("zhengchong/CatVTON", "vitonhd-16k-512/attention/model.safetensors", data)
    endpoints = Endpoints(huggingface=server.base)

    [refused] = weights.fetch([entry.id], paths, endpoints=endpoints)
    assert refused.state == "failed" and not refused.ok and refused.path == entry.path(paths)
    error = refused.error
    assert isinstance(error, LicenceNotAccepted) and error.http_status == 403 and error.phase == "models"
    assert "CC BY-NC-SA 4.0" in error.message and "model.safetensors" in error.message
    assert "Allow non-commercial try-on models" in error.hint and '"allow_noncommercial_tryon": true' in error.hint
    assert server.requests() == [] and not entry.path(paths).exists()
    with pytest.raises(LicenceNotAccepted):
        weights.ensure([entry.id], paths, endpoints=endpoints)
    assert server.requests() == []

    assert weights.ensure([entry.id], paths, endpoints=endpoints, allow_noncommercial=True) == [entry.path(paths)]
    assert entry.path(paths).read_bytes() == data and server.requests("GET")

    [again] = weights.fetch([entry.id], paths, endpoints=endpoints)  # no opt-in: on disk is still on disk
    assert again.state == "present" and again.error is None


def test_commercial_files_are_not_gated(server, paths):
    free = served(server, "free", blob(300, 2), licence="MIT")
    [result] = weights.fetch(["free"], paths, manifest=[free])
    assert result.state == "downloaded" and free.path(paths).read_bytes() == blob(300, 2)


def test_a_whole_manifest_fetch_leaves_refused_files_out_with_a_note(server, paths):
    free = served(server, "free", blob(400, 3))
    nc = served(server, "nc", blob(500, 4), licence=NC, noncommercial=True)
    results = weights.fetch(None, paths, manifest=[free, nc])
    assert [r.state for r in results] == ["downloaded", "skipped"]
    skipped = results[1]
    assert not skipped.ok and not skipped.failed and isinstance(skipped.error, LicenceNotAccepted)
    assert skipped.notes and NC in skipped.notes[0] and "allow_noncommercial_tryon" in skipped.notes[0]
    assert skipped.to_dict()["state"] == "skipped"
    weights.raise_for_failures(results)  # a skip is not a failure
    assert not server.requests(path="/files/nc.safetensors") and not nc.path(paths).exists()

    results = weights.fetch(None, paths, manifest=[free, nc], allow_noncommercial=True)
    assert [r.state for r in results] == ["present", "downloaded"]
    assert nc.path(paths).read_bytes() == blob(500, 4)


def test_named_refusals_raise_one_error_listing_each_licence(server, paths):
    one = served(server, "nc-one", blob(100, 5), licence=NC, noncommercial=True)
    two = served(server, "nc-two", blob(100, 6), licence="Research only (other)", noncommercial=True)
    results = weights.fetch(["nc-one", "nc-two"], paths, manifest=[one, two])
    assert [r.state for r in results] == ["failed", "failed"]
    with pytest.raises(LicenceNotAccepted) as info:
        weights.raise_for_failures(results)
    assert f"Licence: {NC} — nc-one" in info.value.message
    assert "Licence: Research only (other) — nc-two" in info.value.message
    assert "allow_noncommercial_tryon" in info.value.hint and server.requests() == []


def test_a_damaged_refused_file_is_left_in_place(server, paths):
    """Nothing could replace it (no opt-in), so it is neither quarantined nor downloaded: reported as refused."""
    nc = served(server, "nc", blob(64, 7), licence=NC, noncommercial=True, size=64)
    target = nc.path(paths)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"short")
    [result] = weights.fetch(["nc"], paths, manifest=[nc])
    assert result.state == "failed" and isinstance(result.error, LicenceNotAccepted)
    assert target.read_bytes() == b"short" and "left in place" in result.notes[0]
    assert server.requests() == []


def test_offline_a_refused_file_gets_the_manual_instructions(server, paths):
    """Offline nothing is downloaded anyway: the answer is where to put the file by hand, as for any file."""
    nc = served(server, "nc", blob(64, 8), licence=NC, noncommercial=True)
    [result] = weights.fetch(["nc"], paths, manifest=[nc], offline=True)
    assert result.state == "offline" and str(nc.path(paths)) in result.error.message


def test_to_download_and_licence_lines(server, paths):
    free = served(server, "free", blob(10, 9), licence="MIT")
    other = served(server, "other", blob(10, 10), licence="Apache-2.0")
    more = served(server, "more", blob(10, 11), licence="MIT")
    nc = served(server, "nc", blob(10, 12), licence=NC, noncommercial=True)
    package = WeightFile(id="pkg", filename="pkg", group="test", purpose="p", licence="BSD", destination="package",
                         package="json", sources=(Source("pip", "json"),))
    table = [free, other, more, nc, package]
    present = more.path(paths)
    present.parent.mkdir(parents=True)
    present.write_bytes(blob(10, 11))
    assert [e.id for e in weights.to_download(None, paths, manifest=table)] == ["free", "other"]
    assert [e.id for e in weights.to_download(None, paths, manifest=table, allow_noncommercial=True)] == [
        "free", "other", "nc"]
    assert [e.id for e in weights.to_download(["nc", "free"], paths, manifest=table)] == ["free"]
    assert weights.licence_lines([free, other, dataclasses.replace(more, id="again"), nc]) == [
        "Licence: MIT — free, again", "Licence: Apache-2.0 — other", f"Licence: {NC} — nc"]
    assert weights.to_download(None, paths, manifest=table) == weights.to_download(None, paths, manifest=table)
    assert server.requests() == []  # looking is on disk only


# ---------------------------------------------------------------------------------------------- CLI


class _Recorder(io.StringIO):
    """stdout that notes, for every write, how many requests the server had received by then."""

    def __init__(self, server: FileServer):
        super().__init__()
        self.server, self.writes = server, []

    def write(self, text: str) -> int:
        self.writes.append((text, len(self.server.requests())))
        return super().write(text)

    def requests_when_written(self, fragment: str) -> int:
        return next(n for text, n in self.writes if fragment in text)


def test_cli_fetch_prints_each_licence_before_downloading(server, tmp_path, monkeypatch, capsys):
    free = served(server, "free", blob(3000, 13), licence="MIT")
    nc = served(server, "nc", blob(2000, 14), licence=NC, noncommercial=True)
    monkeypatch.setattr(weights, "MANIFEST", (free, nc))  # the CLI reads the table at call time
    home = tmp_path / "cli"

    out = _Recorder(server)
    with contextlib.redirect_stdout(out):
        assert cli.main(["--data-dir", str(home), "models", "fetch"]) == 0  # everything: the refused one left out
    assert out.requests_when_written("Licence: MIT — free") == 0 and server.requests(path="/files/free.safetensors")
    assert "Licence: CC BY-NC" not in out.getvalue()  # not about to be downloaded
    assert "skipped" in out.getvalue() and out.getvalue().count("note: left out: CC BY-NC-SA 4.0") == 1
    assert not server.requests(path="/files/nc.safetensors")

    assert cli.main(["--data-dir", str(home), "models", "fetch", "nc"]) == 2  # named: refused, saying how to opt in
    err = capsys.readouterr().err
    assert "error: [models]" in err and NC in err and '"allow_noncommercial_tryon": true' in err
    assert not server.requests(path="/files/nc.safetensors")

    save_settings_file(Paths.standalone(home), Settings(allow_noncommercial_tryon=True))
    out = _Recorder(server)
    before = len(server.requests())
    with contextlib.redirect_stdout(out):
        assert cli.main(["--data-dir", str(home), "models", "fetch", "nc", "free"]) == 0
    assert out.requests_when_written(f"Licence: {NC} — nc") == before  # free is present: no line for it
    assert "Licence: MIT" not in out.getvalue() and nc.path(Paths.standalone(home)).read_bytes() == blob(2000, 14)
    assert server.requests(path="/files/nc.safetensors")


def test_cli_fetch_json_keeps_stdout_json_and_the_licences_on_stderr(server, tmp_path, monkeypatch, capsys):
    import json

    free = served(server, "free", blob(100, 15), licence="MIT")
    monkeypatch.setattr(weights, "MANIFEST", (free,))
    assert cli.main(["--data-dir", str(tmp_path / "j"), "models", "fetch", "--json", "free"]) == 0
    captured = capsys.readouterr()
    assert [r["state"] for r in json.loads(captured.out)] == ["downloaded"]
    assert "Licence: MIT — free" in captured.err


# ---------------------------------------------------------------------------------------------- job and Models tab


def test_the_fetch_job_and_the_models_tab_name_the_licences_and_the_skipped_files(server, tmp_path, monkeypatch):
    from easyphoto import operations
    from easyphoto.ui.models_tab import download_flow, licence_text

    free = served(server, "free", blob(200_000, 16), licence="MIT")
    nc = served(server, "nc", blob(1000, 17), licence=NC, noncommercial=True, group="other")
    monkeypatch.setattr(weights, "MANIFEST", (free, nc))
    monkeypatch.setattr(weights, "GROUPS", ("test", "other"))
    ctx = standalone_context(tmp_path)
    try:
        assert licence_text(ctx, "all") == "- Licence: MIT — free"
        assert licence_text(ctx, "other") == "Nothing to download."  # not opted in
        updates = list(download_flow(ctx, "all"))
        assert all(text.startswith("- Licence: MIT — free") for text, _, _ in updates[:-1]) and len(updates) > 1
        final = updates[-1][0]
        assert final.startswith("Download finished.") and "Left out (non-commercial licence, not opted in): nc" in final
        assert free.path(ctx.paths).is_file() and not nc.path(ctx.paths).exists()

        job = operations.job_queue(ctx).submit("fetch_models", {"ids": ["nc"]})
        record = operations.job_queue(ctx).wait(job.id, timeout=60)
        assert record.state.value == "failed" and record.error["error"] == "LicenceNotAccepted"

        save_settings_file(ctx.paths, Settings(allow_noncommercial_tryon=True))
        assert licence_text(ctx, "other") == f"- Licence: {NC} — nc"
        job = operations.job_queue(ctx).submit("fetch_models", {"group": "other"})
        record = operations.job_queue(ctx).wait(job.id, timeout=60)
        assert record.state.value == "succeeded" and record.result["licences"] == [f"Licence: {NC} — nc"]
        assert [f["state"] for f in record.result["files"]] == ["downloaded"]
        assert Path(record.result["files"][0]["path"]).read_bytes() == blob(1000, 17)
    finally:
        operations.shutdown_all()
