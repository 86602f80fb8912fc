"""Bug reports: a job that fails with a bug (not an EasyPhotoError) records what a maintainer needs to reproduce it,
and the UI, the CLI and the API show it; user-actionable errors get none."""

import json
from importlib import metadata

import pytest

from easyphoto import __version__
from easyphoto.bugreport import NOT_INSTALLED, PACKAGES, fenced, inline_code, redact
from easyphoto.context import HostInfo, standalone_context
from easyphoto.errors import Cancelled, EasyPhotoError, MissingWeights
from easyphoto.jobs import JobQueue, JobState
from easyphoto.store import read_json
from easyphoto.ui.job_updates import failure_text
from tests.conftest import require_module

WAIT = 10  # seconds: a failure guard only; the jobs below take milliseconds

PARAMS = {
    "identity_id": "zed",
    "config": {"steps": 3, "rank": 4},
    "base": "/models/Stable-diffusion/base.safetensors",
    "hf_token": "SECRET-ONE",
    "auth": {"user": "SECRET-TWO"},
    "nested": [{"password": "SECRET-THREE", "api_key": "SECRET-FOUR", "author": "kept"}],
}


def explode_in_the_backend(params, ctx):
    raise RuntimeError("the tensor has the wrong shape")


def refuse_with_a_hint(params, ctx):
    raise MissingWeights("The face detector is missing.", hint="Run `python -m easyphoto models fetch face`.")


@pytest.fixture
def queue(tmp_path):
    queue = JobQueue(tmp_path / "jobs", host=HostInfo("forge", "f2.0.1v1.10.1"))
    queue.register("boom", explode_in_the_backend, gpu=False)
    queue.register("refuse", refuse_with_a_hint, gpu=False)
    yield queue
    queue.shutdown(timeout=2)


def test_a_bug_records_a_report_with_versions_host_params_and_traceback(queue, tmp_path):
    record = queue.wait(queue.submit("boom", PARAMS).id, timeout=WAIT)
    assert record.state is JobState.FAILED and record.error["error"] == "RuntimeError"
    assert record.error["hint"].startswith("this is a bug")
    report = record.error["report"]
    assert report["easyphoto"] == __version__ and report["python"] and report["platform"]
    assert set(report["packages"]) == set(PACKAGES)
    assert report["packages"]["pydantic"] == metadata.version("pydantic")  # read from the installed metadata
    assert all(isinstance(v, str) and v for v in report["packages"].values())
    assert report["host"] == {"flavour": "forge", "version": "f2.0.1v1.10.1"}
    params = report["job"]["params"]
    assert report["job"]["kind"] == "boom"
    assert params["config"] == {"steps": 3, "rank": 4} and params["base"] == PARAMS["base"]
    assert params["nested"] == [{"author": "kept"}] and "hf_token" not in params and "auth" not in params
    assert "SECRET" not in json.dumps(report)
    assert report["error"] == "RuntimeError: the tensor has the wrong shape"
    assert report["traceback"][-1] == "RuntimeError: the tensor has the wrong shape"
    assert any("explode_in_the_backend" in line for line in report["traceback"])
    text = report["text"]
    for part in ("forge f2.0.1v1.10.1", f"pydantic {metadata.version('pydantic')}", '"rank": 4',
                 "explode_in_the_backend", "RuntimeError: the tensor has the wrong shape"):
        assert part in text
    # the record on disk carries it too (a restart, the API, another process read it from there)
    assert read_json(tmp_path / "jobs" / f"{record.id}.json")["error"]["report"] == report


def test_user_errors_and_cancels_get_no_report(queue):
    refused = queue.wait(queue.submit("refuse", {"identity_id": "zed"}).id, timeout=WAIT)
    assert refused.state is JobState.FAILED and refused.error["error"] == "MissingWeights"
    assert "report" not in refused.error and "bug" not in refused.error["hint"]

    def plain(params, ctx):
        raise EasyPhotoError("No photo has a face.", hint="Add photos that show the face.", phase="photos")

    def stop(params, ctx):
        raise Cancelled("The job was cancelled.")

    queue.register("plain", plain, gpu=False)
    queue.register("stop", stop, gpu=False)
    plain_record = queue.wait(queue.submit("plain", {}).id, timeout=WAIT)
    assert plain_record.state is JobState.FAILED and "report" not in plain_record.error
    stopped = queue.wait(queue.submit("stop", {}).id, timeout=WAIT)
    assert stopped.state is JobState.CANCELLED and "report" not in stopped.error


def test_a_queue_without_host_says_unknown(tmp_path):
    queue = JobQueue(tmp_path / "jobs")
    try:
        queue.register("boom", explode_in_the_backend, gpu=False)
        record = queue.wait(queue.submit("boom", {}).id, timeout=WAIT)
        assert record.error["report"]["host"]["flavour"] == "unknown"
    finally:
        queue.shutdown(timeout=2)


def test_failure_text_folds_the_report_for_a_bug_only(queue):
    bug = queue.wait(queue.submit("boom", PARAMS).id, timeout=WAIT)
    text = failure_text("Training", bug)
    assert text.startswith("**Training failed:** the tensor has the wrong shape this is a bug")
    assert "<details>" in text and "</details>" in text and "copy this report into an issue" in text
    assert bug.error["report"]["text"] in text and "SECRET" not in text

    user = queue.wait(queue.submit("refuse", {}).id, timeout=WAIT)
    text = failure_text("Training", user)
    assert text == "**Training failed:** The face detector is missing. Run `python -m easyphoto models fetch face`."
    assert "<details>" not in text


def test_the_report_block_survives_backticks_in_the_error():
    inner = "```python\nx = 1\n```"
    block = fenced(inner)
    assert block.startswith("````\n") and block.endswith("\n````") and inner in block
    assert fenced("plain").startswith("```\n")
    assert inline_code("bad `x`") == "`` bad `x` ``" and inline_code("train") == "`train`"


def test_redact_drops_secret_keys_and_cuts_long_strings():
    data = {"Authorization": "Bearer x", "hf-token": "x", "tokenizer": "clip", "secret_key": "x", "oauth": "kept",
            "photo": "data:image/png;base64," + "A" * 5000, "scale": 1.5, "flag": None}
    out = redact(data)
    assert set(out) == {"tokenizer", "oauth", "photo", "scale", "flag"}
    assert len(out["photo"]) < 600 and out["photo"].endswith("(5022 characters)")


def test_absent_packages_say_not_installed_without_importing_them():
    import sys

    from easyphoto.bugreport import package_versions

    before = set(sys.modules)
    versions = package_versions()
    assert not {"torch", "diffusers", "mediapipe", "dlib", "onnxruntime"} & (set(sys.modules) - before)
    for name, distributions in PACKAGES.items():
        installed = [d for d in distributions if _installed(d)]
        assert versions[name] == NOT_INSTALLED if not installed else versions[name].startswith(
            metadata.version(installed[0]))


def _installed(distribution):
    try:
        metadata.version(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


def run_cli_train_with(tmp_path, capsys, operation) -> tuple[int, str]:
    """`train --resume` submits a "train" job; `operation` is put under that kind in the process's queue for this data
    folder (the one the CLI's run_job uses), so the real CLI path reports how the job ended."""
    from easyphoto import cli
    from easyphoto.operations import job_queue, shutdown_all

    base = tmp_path / "base.safetensors"
    base.write_bytes(b"not read: the registered operation runs first")
    try:
        job_queue(standalone_context(tmp_path)).register("train", operation, gpu=False)
        code = cli.main(["--data-dir", str(tmp_path), "train", "--id", "zed", "--base", str(base), "--resume"])
    finally:
        shutdown_all()
    return code, capsys.readouterr().err


def test_the_cli_prints_the_report_after_the_error_for_a_bug(tmp_path, capsys):
    code, err = run_cli_train_with(tmp_path, capsys, explode_in_the_backend)
    assert code == 2
    error_line = "error: [job] the tensor has the wrong shape this is a bug"
    assert error_line in err and "copy this report into an issue" in err
    assert err.index(error_line) < err.index("**EasyPhoto bug report**")
    assert "- Host: standalone" in err and "explode_in_the_backend" in err and '"identity_id": "zed"' in err


def test_the_cli_prints_no_report_for_a_user_error(tmp_path, capsys):
    code, err = run_cli_train_with(tmp_path, capsys, refuse_with_a_hint)
    assert code == 2 and "The face detector is missing." in err
    assert "bug report" not in err.lower() and "Traceback" not in err


def test_the_api_job_record_carries_the_report(tmp_path):
    require_module("fastapi")
    from fastapi.testclient import TestClient

    from easyphoto.app import create_app
    from easyphoto.operations import job_queue, shutdown_all

    ctx = standalone_context(tmp_path)
    try:
        queue = job_queue(ctx)
        queue.register("boom", explode_in_the_backend, gpu=False)
        job_id = queue.submit("boom", PARAMS).id
        queue.wait(job_id, timeout=WAIT)
        body = TestClient(create_app(ctx, with_ui=False)).get(f"/easyphoto/v1/jobs/{job_id}").json()
    finally:
        shutdown_all()
    report = body["error"]["report"]
    assert report["host"]["flavour"] == "standalone" and report["job"]["kind"] == "boom"
    assert set(report["packages"]) == set(PACKAGES) and "**EasyPhoto bug report**" in report["text"]
    assert "SECRET" not in json.dumps(body["error"])
