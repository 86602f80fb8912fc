"""Jobs under hostile conditions: kill -9 of the server and of its parent, LoRA files EasyPhoto did not write,
and the test suite's own rule that a missing dependency fails under CI instead of skipping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from easyphoto import bundle, operations
from easyphoto.context import standalone_context
from easyphoto.jobs import JobQueue, JobState
from easyphoto.store import ForeignLoraFile, check_lora_target, is_easyphoto_lora, read_json
from easyphoto.train import runner
from tests.conftest import require_module

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60  # seconds: failure guard only; every wait below ends on an event long before it


def safetensors_bytes(metadata: dict[str, str] | None) -> bytes:
    """A valid one-tensor .safetensors file written by hand (no torch): 8-byte header length, JSON header, data."""
    header: dict = {"lora_unet_x.alpha": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + b"\x00\x00\x80\x3f"


COMMUNITY_LORA = safetensors_bytes({"ss_network_dim": "32", "ss_output_name": "alice"})  # kohya keys, not ours
OUR_LORA = safetensors_bytes({"ss_output_name": "alice", "easyphoto_version": "0.1.0", "easyphoto_modules": "[]"})


# ---------------------------------------------------------------------------------------------- kill -9 and restart


def test_a_record_killed_while_running_names_the_step_to_resume_from(tmp_path):
    """The server is killed (no shutdown) after the job recorded a resumable step: the next queue on the folder
    reads FAILED "interrupted" with that step and how to resume."""
    jobs_dir = tmp_path / "jobs"
    first = JobQueue(jobs_dir)
    recorded, release = threading.Event(), threading.Event()

    def training(params, ctx):
        ctx.progress(phase="training", step=250, total=800)
        ctx.resumable(200)  # the last checkpoint
        recorded.set()
        release.wait(WAIT)
        return {}

    first.register("train", training)
    job_id = first.submit("train", {}).id
    try:
        assert recorded.wait(WAIT)
        on_disk = read_json(jobs_dir / f"{job_id}.json")  # written at once, not at the next periodic save
        assert on_disk["state"] == "running" and on_disk["progress"]["resumable_step"] == 200

        record = JobQueue(jobs_dir, start=False).get(job_id)  # what a restarted server sees
        assert record.state is JobState.FAILED
        assert record.error["message"] == ("interrupted: EasyPhoto stopped while this job was running; "
                                           "resume from step 200 with resume: true / --resume")
        assert "continue from step 200" in record.error["hint"]
        assert read_json(jobs_dir / f"{job_id}.json")["error"]["message"] == record.error["message"]
    finally:
        release.set()
        first.shutdown(timeout=WAIT)


def test_a_record_without_a_resumable_step_keeps_the_plain_message(tmp_path):
    jobs_dir = tmp_path / "jobs"
    first = JobQueue(jobs_dir)
    started, release = threading.Event(), threading.Event()
    first.register("work", lambda p, c: (started.set(), release.wait(WAIT), {})[-1])
    job_id = first.submit("work", {}).id
    try:
        assert started.wait(WAIT)
        record = JobQueue(jobs_dir, start=False).get(job_id)
        assert record.error["message"] == "interrupted: EasyPhoto stopped while this job was running"
        assert record.error["hint"] == "Submit the job again to run it."
    finally:
        release.set()
        first.shutdown(timeout=WAIT)


# ---------------------------------------------------------------------------------------------- the child's parent

PARENT = """
import subprocess, sys, time
from easyphoto.train import runner
child = subprocess.Popen(sys.argv[1:], env=runner.child_env(), stdout=sys.stdout, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""

STAND_IN = """
import sys, time
from easyphoto.train import child
child.guard_parent(use_prctl=False, interval=0.05)
print("watching", flush=True)
time.sleep(600)
"""


def _start_parent(command: list[str]) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *command], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=str(ROOT))
    return parent, int(parent.stdout.readline())


def _wait_for_eof(stream) -> bool:
    """True once nobody holds the write end of the pipe any more (parent and child both gone)."""
    done = threading.Event()
    threading.Thread(target=lambda: (stream.read(), done.set()), daemon=True).start()
    return done.wait(WAIT)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _until(predicate) -> bool:
    guard = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > guard:
            return False
        time.sleep(0.02)
    return True


needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 and /proc: Linux")


@needs_linux
def test_the_real_training_child_exits_when_its_parent_is_killed(tmp_path):
    """The real entry point (`python -m easyphoto.train.child`), parked on a spec FIFO nobody writes, dies with its
    parent (prctl's parent-death signal, or the watchdog)."""
    spec = tmp_path / "spec.json"
    os.mkfifo(spec)
    parent, child_pid = _start_parent(runner.child_command(spec, tmp_path / "stop"))
    writer = None
    try:
        # Opening the FIFO for writing succeeds only once the child has opened it: it is past guard_parent.
        def child_reads_the_spec():
            nonlocal writer
            try:
                writer = os.open(spec, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return False
            return True

        assert _until(child_reads_the_spec), "the child never opened its spec"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _wait_for_eof(parent.stdout), "the training child outlived its parent"
        assert _until(lambda: _gone(child_pid))
    finally:
        if writer is not None:
            os.close(writer)
        _cleanup(parent, child_pid)


@needs_linux
def test_the_watchdog_alone_ends_the_child_when_the_parent_is_killed(tmp_path):
    """Without prctl (other systems), the polling thread notices the new parent and exits."""
    parent, child_pid = _start_parent([sys.executable, "-c", STAND_IN])
    try:
        assert parent.stdout.readline().strip() == "watching"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _wait_for_eof(parent.stdout), "the stand-in child outlived its parent"
        assert _until(lambda: _gone(child_pid))
    finally:
        _cleanup(parent, child_pid)


def _cleanup(parent: subprocess.Popen, child_pid: int) -> None:
    """Only what this test started, by pid."""
    if parent.poll() is None:
        parent.kill()
        parent.wait()
    if not _gone(child_pid):
        try:
            os.kill(child_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------------------- LoRA files not ours


@pytest.fixture
def ctx(tmp_path):
    context = standalone_context(tmp_path / "data", offline=True)
    context.paths.lora_dir.mkdir(parents=True, exist_ok=True)
    yield context
    operations.shutdown_all()


def test_ownership_is_read_from_the_header_metadata(tmp_path):
    ours, theirs, junk = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors", tmp_path / "junk.safetensors"
    ours.write_bytes(OUR_LORA)
    theirs.write_bytes(COMMUNITY_LORA)
    junk.write_bytes(b"\xff" * 64)
    assert is_easyphoto_lora(ours) and not is_easyphoto_lora(theirs) and not is_easyphoto_lora(junk)
    check_lora_target(ours, "ours")
    check_lora_target(tmp_path / "absent.safetensors", "absent")
    for path in (theirs, junk):
        with pytest.raises(ForeignLoraFile, match="must be renamed"):
            check_lora_target(path, "alice")


def test_deleting_an_identity_leaves_a_lora_easyphoto_did_not_write(ctx):
    ctx.identities.create("alice")
    lora_file = ctx.paths.lora_dir / "alice.safetensors"
    lora_file.write_bytes(COMMUNITY_LORA)
    notes = ctx.identities.delete("alice")
    assert not ctx.identities.exists("alice")
    assert lora_file.read_bytes() == COMMUNITY_LORA
    assert len(notes) == 1 and "not written by EasyPhoto" in notes[0] and str(lora_file) in notes[0]


def test_deleting_an_identity_deletes_its_own_lora(ctx):
    ctx.identities.create("alice")
    lora_file = ctx.paths.lora_dir / "alice.safetensors"
    lora_file.write_bytes(OUR_LORA)
    assert ctx.identities.delete("alice") == []
    assert not lora_file.exists()


def test_a_bundle_import_never_overwrites_a_lora_easyphoto_did_not_write(ctx):
    ctx.identities.create("alice")
    (ctx.paths.lora_dir / "alice.safetensors").write_bytes(OUR_LORA)
    data = bundle.export_identity(ctx.identities, "alice")
    ctx.identities.delete("alice")
    community = ctx.paths.lora_dir / "bob.safetensors"
    community.write_bytes(COMMUNITY_LORA)
    with pytest.raises(ForeignLoraFile, match="'bob' must be renamed") as info:
        bundle.import_identity(ctx.identities, data, identity_id="bob")
    assert info.value.http_status == 409 and "another identity id" in info.value.hint
    assert community.read_bytes() == COMMUNITY_LORA and not ctx.identities.exists("bob")
    assert sorted(p.name for p in ctx.identities.paths.identities_dir.iterdir() if not p.name.startswith(".")) == []
    assert bundle.import_identity(ctx.identities, data, identity_id="bob_ep") == "bob_ep"  # renamed: fine


def test_training_refuses_before_it_starts_when_the_lora_is_not_ours(ctx, tmp_path):
    ctx.identities.create("alice")  # no dataset yet: the training would prepare it first
    lora_file = ctx.paths.lora_dir / "alice.safetensors"
    lora_file.write_bytes(COMMUNITY_LORA)
    base = tmp_path / "base.safetensors"
    base.write_bytes(b"never read")
    queue = JobQueue(ctx.paths.jobs_dir)
    operations.register_operations(queue, ctx)
    try:
        record = queue.wait(queue.submit("train", {"identity_id": "alice", "base": str(base)}).id, timeout=WAIT)
    finally:
        queue.shutdown()
    assert record.state is JobState.FAILED and record.error["error"] == "ForeignLoraFile"
    assert "must be renamed" in record.error["message"] and str(lora_file) in record.error["message"]
    assert record.progress.phase == ""  # nothing ran: no photo check, no dataset, no child
    assert not list(ctx.paths.jobs_dir.glob("*/spec.json"))
    assert lora_file.read_bytes() == COMMUNITY_LORA


# ---------------------------------------------------------------------------------------------- test hygiene


def test_require_module_skips_locally_and_fails_under_ci(monkeypatch):
    missing = "easyphoto_no_such_module_for_tests"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_module(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_module(missing)
    assert require_module("json") is json


def test_no_test_module_skips_itself_whole_on_a_missing_import():
    """Module-level importorskip would let a whole module skip in CI when an install failed; require_module fails."""
    offenders = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "pytest.importorskip(" in line and not line.startswith((" ", "\t")):
                offenders.append(f"{path.name}:{number}")
    assert offenders == []
