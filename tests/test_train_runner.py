"""The "train" job: real training processes on the kit's tiny SD 1.5, through the job queue.

Success with monotonic progress; cancel (CANCELLED, resumable, nothing exported); SIGKILL of the child after a
checkpoint (FAILED with the resume hint) then resume to the same weights as an uninterrupted run; errors reported
by the child; and the child's stdout protocol (events only, whatever libraries print).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easyphoto import operations
from easyphoto.config import TrainConfig
from easyphoto.context import standalone_context
from easyphoto.jobs import JobContext, JobQueue, JobState
from easyphoto.train import runner

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = "alice"
STEPS, EVERY = 8, 4
CONFIG = TrainConfig(
    resolution=256, rank=4, network_alpha=4, steps_per_photo=3, max_train_steps=STEPS, validation=False,
    validation_every=EVERY, gradient_accumulation_steps=1, seed=7, matting=False, upscale_small=False,
).to_dict()


def make_identity(ctx, identity_id: str = IDENTITY) -> None:
    """Three small images and metadata.jsonl in dataset.py's layout, written directly (no face stack)."""
    layout = ctx.identities.create(identity_id, exist_ok=True)
    (layout.dataset / "train").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        pixels = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((256, 256), Image.BILINEAR).save(layout.dataset / "train" / f"{i}.jpg")
        (layout.dataset / "train" / f"{i}.txt").write_text(CONFIG["caption"])
        lines.append(json.dumps({"file_name": f"train/{i}.jpg", "text": CONFIG["caption"]}))
    (layout.dataset / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def setup_queue(data_dir: Path):
    ctx = standalone_context(data_dir, offline=True)
    make_identity(ctx)
    queue = JobQueue(ctx.paths.jobs_dir)
    operations.register_operations(queue, ctx)
    return ctx, queue


def train_to_the_end(tmp_path: Path, timeout: float, **params):
    """Submit a training job for the test identity and wait until it ends; the final record."""
    _, queue = setup_queue(tmp_path)
    try:
        record = queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG, **params})
        return queue.wait(record.id, timeout=timeout)
    finally:
        queue.shutdown()


def wait_until(predicate, timeout: float, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def lora_tensors(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def base(tiny_single_file, tiny_sd_config_dir) -> dict:
    return {"base": str(tiny_single_file), "config_dir": str(tiny_sd_config_dir)}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, base):
    """One uninterrupted training (shared: it is the reference of the resume test too)."""
    ctx, queue = setup_queue(tmp_path_factory.mktemp("reference"))
    calls: list[dict] = []
    original = JobContext.progress

    def recording(self, **kwargs):
        calls.append(kwargs)
        return original(self, **kwargs)

    seen = []
    warnings = _ListHandler()
    logging.getLogger("easyphoto").addHandler(warnings)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(JobContext, "progress", recording)
        guard = time.monotonic() + 120  # a failure guard only
        record = queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG, **base})
        while not queue.get(record.id).is_final and time.monotonic() < guard:
            seen.append(queue.get(record.id).progress)
            time.sleep(0.01)
        final = queue.wait(record.id, timeout=5)
    queue.shutdown()
    logging.getLogger("easyphoto").removeHandler(warnings)
    return {"ctx": ctx, "record": final, "calls": calls, "seen": seen, "log": warnings.lines}


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_a_training_job_exports_the_lora_with_monotonic_progress(reference_run):
    record, ctx = reference_run["record"], reference_run["ctx"]
    assert record.state is JobState.SUCCEEDED, record.error
    lora_file = ctx.paths.lora_dir / f"{IDENTITY}.safetensors"
    assert record.result["lora_file"] == str(lora_file) and lora_file.is_file()
    assert record.result["steps"] == STEPS
    assert Path(record.result["log"]).is_file()
    assert lora_tensors(lora_file)  # a non-empty LoRA
    fractions = [c["fraction"] for c in reference_run["calls"] if c.get("fraction") is not None]
    assert fractions and fractions == sorted(fractions), "the runner reported a decreasing fraction"
    steps = [c["step"] for c in reference_run["calls"] if c.get("step") is not None]
    assert steps == sorted(steps) and max(steps) == STEPS
    seen = [p.fraction for p in reference_run["seen"]]
    assert seen == sorted(seen)
    assert record.progress.fraction == 1.0
    spec = json.loads((ctx.paths.jobs_dir / record.id / "spec.json").read_text())
    assert spec["steps"] == STEPS and spec["resume"] is False


def test_the_record_and_the_progress_say_the_speed_the_time_left_and_the_levers(reference_run):
    """The "time to a usable LoRA" readout: measured in the child, carried to the job's messages and record."""
    record = reference_run["record"]
    speed = record.result["speed"]
    assert speed["steps_timed"] == STEPS and speed["seconds_per_step"] > 0
    assert speed["steps_per_second"] == pytest.approx(1 / speed["seconds_per_step"], rel=0.01)
    assert speed["remaining_seconds"] == 0 and speed["projected_seconds"] >= speed["seconds_per_step"]
    assert "cached latents" in speed["levers"] and "fused AdamW" in speed["levers"]
    training = [c["message"] for c in reference_run["calls"] if c.get("phase") == "training" and c.get("message")]
    assert any("s/step" in m and "usable LoRA in about" in m and "levers: cached latents" in m for m in training)


def test_the_real_child_wrote_only_events_on_stdout(reference_run):
    # the runner warns about every non-JSON stdout line; the reference run had none
    ctx, record = reference_run["ctx"], reference_run["record"]
    log_text = (ctx.paths.jobs_dir / record.id / "child.log").read_text(errors="replace")
    assert not [line for line in reference_run["log"] if "non-event line" in line]
    assert "Traceback" not in log_text


def test_cancel_ends_cancelled_and_leaves_a_resumable_state(tmp_path, base):
    ctx, queue = setup_queue(tmp_path)
    try:
        record = queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG, **base})
        wait_until(lambda: (queue.get(record.id).progress.step or 0) >= 1, 120, interval=0.02)
        queue.cancel(record.id)
        final = queue.wait(record.id, timeout=60)  # a failure guard only
        assert final.state is JobState.CANCELLED, final.error
        # The child stopped itself at the stop file (not terminated after the grace period): it says so in its log.
        log_text = (ctx.paths.jobs_dir / record.id / "child.log").read_text(errors="replace")
        assert "training stopped on request" in log_text
        assert "resume" in final.error["hint"]
        layout = ctx.identities.get(IDENTITY)
        assert (layout.checkpoints / "state.json").is_file()
        assert [p for p in layout.checkpoints.iterdir() if p.suffix == ".safetensors"]
        assert not ctx.paths.lora_dir.exists() or list(ctx.paths.lora_dir.iterdir()) == []
    finally:
        queue.shutdown()


def test_killed_child_fails_with_resume_hint_and_resume_matches_an_uninterrupted_run(tmp_path, base, reference_run):
    ctx, queue = setup_queue(tmp_path)
    try:
        record = queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG, **base})
        pid_file = ctx.paths.jobs_dir / record.id / "child.pid"
        target = random.randint(EVERY + 1, STEPS - 1)
        wait_until(lambda: (queue.get(record.id).progress.step or 0) >= target, 120, interval=0.02)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        failed = queue.wait(record.id, timeout=20)
        assert failed.state is JobState.FAILED, (failed.state, failed.error)
        assert failed.error["phase"] == "train" and "SIGKILL" in failed.error["message"]
        match = re.search(r"resume to continue from step (\d+)", failed.error["hint"])
        assert match, failed.error
        assert int(match.group(1)) % EVERY == 0 and EVERY <= int(match.group(1)) < STEPS
        assert not (ctx.paths.lora_dir / f"{IDENTITY}.safetensors").exists()

        again = queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG, "resume": True, **base})
        done = queue.wait(again.id, timeout=120)
        assert done.state is JobState.SUCCEEDED, done.error
    finally:
        queue.shutdown()
    resumed = lora_tensors(done.result["lora_file"])
    reference = lora_tensors(reference_run["record"].result["lora_file"])
    assert resumed.keys() == reference.keys()
    for key, tensor in reference.items():
        assert np.allclose(resumed[key].float().numpy(), tensor.float().numpy(), atol=1e-5), key


def test_an_error_in_the_child_fails_the_job_with_its_phase_and_message(tmp_path, base):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"this is not a checkpoint")
    final = train_to_the_end(tmp_path, 60, **{**base, "base": str(broken)})
    assert final.state is JobState.FAILED
    assert final.error["phase"] != "job" and "broken.safetensors" in final.error["message"], final.error
    assert "bug" not in final.error["hint"]


def test_parameters_are_checked_before_a_child_starts(tmp_path):
    ctx, queue = setup_queue(tmp_path)
    try:
        no_base = queue.wait(queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG}).id, timeout=10)
        missing = queue.wait(queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG,
                                                    "base": str(tmp_path / "nope.safetensors")}).id, timeout=10)
        nobody = queue.wait(queue.submit("train", {"identity_id": "nobody", "config": CONFIG,
                                                   "base": str(tmp_path)}).id, timeout=10)
        ctx.identities.create("empty")
        empty = queue.wait(queue.submit("train", {"identity_id": "empty", "config": CONFIG,
                                                  "base": str(tmp_path)}).id, timeout=10)
    finally:
        queue.shutdown()
    assert no_base.state is JobState.FAILED and '"base"' in no_base.error["hint"]
    assert "nope.safetensors" in missing.error["message"] and "does not exist" in missing.error["message"]
    assert nobody.error["error"] == "IdentityNotFound"
    # no dataset: it is prepared first (phase "preparing"), which needs photos
    assert empty.state is JobState.FAILED and empty.progress.phase == "preparing"
    assert "has no photos yet" in empty.error["message"]
    assert not list(ctx.paths.jobs_dir.glob("*/child.pid"))


# ---------------------------------------------------------------------------------------------- the child protocol


def child_spec(tmp_path: Path, **changes) -> dict:
    """A valid spec.json for the child (TrainSpec), as the runner writes it."""
    from easyphoto.train.spec import TrainSpec

    identity = tmp_path / "data" / "easyphoto" / "identities" / IDENTITY
    spec = TrainSpec(identity_id=IDENTITY, identity_dir=identity, lora_file=tmp_path / f"{IDENTITY}.safetensors",
                     config=TrainConfig.from_dict(CONFIG), steps=STEPS, base=tmp_path, device="cpu",
                     models_root=tmp_path / "models")
    return {**spec.to_dict(), **changes}

DRIVER = """
import os, sys, time
from easyphoto.errors import EasyPhotoError
from easyphoto.errors import Cancelled
from easyphoto.train import child, pipeline

mode = sys.argv[3]

def fake_run(spec, emit, should_stop):
    print("a library prints this")
    os.write(1, b"native code writes this\\n")
    emit({"event": "progress", "phase": "training", "step": 1, "total": 2, "loss": float("nan"), "message": "x"})
    if mode == "error":
        raise EasyPhotoError("The base model is broken.", phase="models", hint="pass another")
    if mode == "bug":
        raise RuntimeError("boom")
    if mode == "cancel":
        while not should_stop():
            time.sleep(0.01)
        raise Cancelled("stopped")
    if mode in ("hang", "segv"):
        emit({"event": "checkpoint", "step": 1, "path": "c1"})
        emit({"event": "progress", "phase": "training", "step": 2, "total": 2, "loss": 0.5, "message": ""})
        if mode == "segv":
            os.kill(os.getpid(), 11)
        import signal
        def ignore(signum, frame):
            print("SIGTERM ignored", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, ignore)
        while True:
            time.sleep(0.05)
    return {"lora_file": str(spec.lora_file), "path": __import__("pathlib").Path("p")}

pipeline.run = fake_run
sys.exit(child.main(sys.argv[1:3]))
"""


@pytest.mark.parametrize("mode, code, last", [("done", 0, "done"), ("error", 1, "error"), ("bug", 1, "error"),
                                              ("cancel", 3, "cancelled")])
def test_child_stdout_carries_only_json_events(tmp_path, mode, code, last):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(child_spec(tmp_path, lora_file="x.safetensors")))
    stop = tmp_path / "stop"
    if mode == "cancel":
        stop.touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(driver), str(spec), str(stop), mode], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=30)
    assert out.returncode == code, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]  # every line is JSON
    assert events[0] == {"event": "progress", "phase": "training", "step": 1, "total": 2, "loss": None,
                         "message": "x"}
    assert events[-1]["event"] == last and len(events) == 2
    assert "a library prints this" in out.stderr and "native code writes this" in out.stderr
    if mode == "done":
        assert events[-1]["result"] == {"lora_file": "x.safetensors", "path": "p"}
    if mode == "error":
        assert events[-1]["error"] == {"error": "EasyPhotoError", "phase": "models",
                                       "message": "The base model is broken.", "hint": "pass another"}
    if mode == "bug":  # a bug carries this process's traceback and versions for the parent's bug report
        error = events[-1]["error"]
        assert error["error"] == "RuntimeError" and "bug" in error["hint"]
        assert error["bug"]["error"] == "RuntimeError: boom" and any("fake_run" in x for x in error["bug"]["traceback"])
        assert error["bug"]["packages"]["pydantic"] and error["bug"]["python"]
        assert "Traceback" in out.stderr


@pytest.fixture
def fake_child(tmp_path, monkeypatch):
    """The runner's command replaced (in this test only) by the driver above with a given mode."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    def use(mode: str):
        monkeypatch.setattr(runner, "child_command",
                            lambda spec, stop: [sys.executable, str(driver), str(spec), str(stop), mode])

    return use


def test_a_child_ignoring_the_stop_file_is_terminated_then_killed(tmp_path, fake_child, monkeypatch):
    monkeypatch.setattr(runner, "CANCEL_GRACE_S", 0.5)
    monkeypatch.setattr(runner, "KILL_GRACE_S", 0.5)
    fake_child("hang")
    ctx, queue = setup_queue(tmp_path)
    try:
        record = queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG, "base": str(tmp_path)})
        wait_until(lambda: queue.get(record.id).progress.step == 2, 20)
        queue.cancel(record.id)
        final = queue.wait(record.id, timeout=30)  # a failure guard only
    finally:
        queue.shutdown()
    assert final.state is JobState.CANCELLED
    # In order: the stop file (ignored), terminate() (ignored: the child logged it), then kill() ended it.
    work = ctx.paths.jobs_dir / record.id
    assert (work / "stop").exists() and "SIGTERM ignored" in (work / "child.log").read_text(errors="replace")
    assert "continue from step 1" in final.error["hint"]


def test_the_job_record_keeps_the_resumable_step_through_a_server_kill(tmp_path, fake_child, monkeypatch):
    """Each checkpoint event is written into the record at once; a server killed then (no shutdown: the record
    stays "running" on disk) is reported after the restart as interrupted, with the step to resume from."""
    monkeypatch.setattr(runner, "CANCEL_GRACE_S", 0.5)
    monkeypatch.setattr(runner, "KILL_GRACE_S", 0.5)
    fake_child("hang")  # checkpoint at step 1, progress at step 2, then never ends
    ctx, queue = setup_queue(tmp_path)
    try:
        record = queue.submit("train", {"identity_id": IDENTITY, "config": CONFIG, "base": str(tmp_path)})
        wait_until(lambda: queue.get(record.id).progress.step == 2, 20)
        on_disk = json.loads((ctx.paths.jobs_dir / f"{record.id}.json").read_text())
        assert on_disk["state"] == "running" and on_disk["progress"]["resumable_step"] == 1

        restarted = JobQueue(ctx.paths.jobs_dir, start=False).get(record.id)
        assert restarted.state is JobState.FAILED
        assert restarted.error["message"].endswith("resume from step 1 with resume: true / --resume")
    finally:
        queue.cancel(record.id)
        queue.wait(record.id, timeout=30)
        queue.shutdown()


def test_a_crashed_child_fails_naming_the_signal_and_the_step_to_resume_from(tmp_path, fake_child):
    fake_child("segv")
    final = train_to_the_end(tmp_path, 20, base=str(tmp_path))
    assert final.state is JobState.FAILED and final.error["phase"] == "train"
    assert "SIGSEGV" in final.error["message"] and "at step 2" in final.error["message"]
    assert final.error["hint"].startswith("submit the training again with resume: true / --resume to continue from "
                                          "step 1")
    assert final.progress.step == 2 and final.progress.message == "loss 0.5000"


def test_an_error_event_keeps_the_childs_error_name_phase_and_hint(tmp_path, fake_child):
    fake_child("error")
    final = train_to_the_end(tmp_path, 20, base=str(tmp_path))
    assert final.state is JobState.FAILED
    assert final.error == {"error": "EasyPhotoError", "phase": "models", "message": "The base model is broken.",
                           "hint": "pass another"}


# ---------------------------------------------------------------------------------------------- bugs in the child


def run_real_child_on(tmp_path: Path, spec: dict):
    """A job whose operation runs the real training process (`python -m easyphoto.train.child`) on `spec`, as
    train_operation does after writing it; the final record."""
    from easyphoto.context import HostInfo

    queue = JobQueue(tmp_path / "jobs", host=HostInfo("forge", "f2.0.1v1.10.1"))

    def train_on_spec(params, job):
        spec_file = job.work_dir / "spec.json"
        spec_file.write_text(json.dumps(spec))
        return runner.run_child(spec_file, job, steps=STEPS)

    queue.register("train", train_on_spec, gpu=False)
    try:
        return queue.wait(queue.submit("train", {"identity_id": IDENTITY, "hf_token": "SECRET"}).id, timeout=60)
    finally:
        queue.shutdown()


def test_a_spec_the_child_cannot_read_is_a_bug_with_the_childs_report(tmp_path):
    """The runner writes spec.json, so one that does not validate is our bug: the real child reports it with its
    traceback and versions, and the job gets the same bug report as a bug in this process."""
    final = run_real_child_on(tmp_path, child_spec(tmp_path, steps=0, config={**CONFIG, "rank": "many"}))
    assert final.state is JobState.FAILED and final.error["error"] == "InvalidTrainSpec"
    assert "steps" in final.error["message"] and "config.rank" in final.error["message"]
    assert final.error["hint"].startswith("this is a bug: please report it with this job's bug report")
    assert "bug" not in final.error  # the raw details became the report
    report = final.error["report"]
    assert report["host"] == {"flavour": "forge", "version": "f2.0.1v1.10.1"}  # the parent's host
    assert report["job"] == {"kind": "train", "params": {"identity_id": IDENTITY}}  # redacted: no hf_token
    assert report["error"].startswith("InvalidTrainSpec: the training spec is not valid: ")
    assert any("read_spec" in line for line in report["traceback"])  # the child's traceback, not the parent's
    assert not any("run_child" in line for line in report["traceback"])
    from easyphoto.bugreport import PACKAGES

    assert set(report["packages"]) == set(PACKAGES) and report["python"] and report["platform"]
    assert "InvalidTrainSpec" in report["text"] and "SECRET" not in json.dumps(final.error)
    work = tmp_path / "jobs" / final.id
    assert "Traceback" in (work / "child.log").read_text(errors="replace")


def test_a_bug_raised_while_training_gets_a_report_and_a_user_error_none(tmp_path, fake_child):
    fake_child("bug")  # the real child's main() around a pipeline.run that raises RuntimeError("boom")
    bug = train_to_the_end(tmp_path / "bug", 20, base=str(tmp_path))
    assert bug.state is JobState.FAILED and bug.error["error"] == "RuntimeError" and bug.error["message"] == "boom"
    report = bug.error["report"]
    assert report["error"] == "RuntimeError: boom" and any("fake_run" in line for line in report["traceback"])
    assert report["job"]["params"]["identity_id"] == IDENTITY and report["host"]["flavour"] == "unknown"
    fake_child("error")
    user = train_to_the_end(tmp_path / "user", 20, base=str(tmp_path))
    assert user.state is JobState.FAILED and "report" not in user.error
