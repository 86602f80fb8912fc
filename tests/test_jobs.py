"""The job queue: states, progress, cancellation, persistence across restarts, history, GPU lock."""

import json
import logging
import threading
import time
import uuid

import pytest

from easyphoto.errors import EasyPhotoError
from easyphoto.jobs import (
    FINAL_STATES,
    Cancelled,
    InvalidJobParams,
    JobFinished,
    JobNotFound,
    JobProgress,
    JobQueue,
    JobRecord,
    JobState,
    QueueStopped,
    UnknownJobKind,
)
from easyphoto.store import read_json

WAIT = 5  # seconds: generous upper bound for anything that should take milliseconds


@pytest.fixture
def jobs_dir(tmp_path):
    return tmp_path / "jobs"


@pytest.fixture
def make_queue(jobs_dir):
    queues = []

    def make(**kwargs):
        queue = JobQueue(kwargs.pop("jobs_dir", jobs_dir), **kwargs)
        queues.append(queue)
        return queue

    yield make
    for queue in queues:
        queue.shutdown(timeout=2)


def echo(params, ctx):
    return {"echo": params}


class Gate:
    """An operation that signals it started, then waits until released (or cancelled, when it polls)."""

    def __init__(self, poll_cancel=True):
        self.started = threading.Event()
        self.release = threading.Event()
        self.saw_cancel = threading.Event()  # the operation itself stopped on the cancel (not on its guard)
        self.poll_cancel = poll_cancel

    def __call__(self, params, ctx):
        self.started.set()
        deadline = time.monotonic() + WAIT
        while not self.release.wait(0.005):
            if self.poll_cancel:
                try:
                    ctx.check_cancelled()
                except Cancelled:
                    self.saw_cancel.set()
                    raise
            assert time.monotonic() < deadline, "gate never released"
        return {"released": True}


def wait_until(predicate, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


# ---------------------------------------------------------------------------------------------- basics


def test_submit_runs_and_succeeds(make_queue, jobs_dir):
    queue = make_queue()
    queue.register("echo", echo, label=lambda p: f"echo {p['name']}")
    assert queue.kinds() == ["echo"]
    submitted = queue.submit("echo", {"name": "alice", "n": (1, 2)})
    assert submitted.state is JobState.QUEUED and len(submitted.id) == 32
    assert submitted.label == "echo alice"

    done = queue.wait(submitted.id, timeout=WAIT)
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"echo": {"name": "alice", "n": [1, 2]}}  # params are JSON: the tuple became a list
    assert done.error is None
    assert done.created <= done.started <= done.finished
    assert done.progress.fraction == 1.0 and done.progress.eta_seconds == 0.0
    assert read_json(jobs_dir / f"{done.id}.json")["state"] == "succeeded"

    # Callers get copies, never the live record.
    done.result["echo"] = "tampered"
    done.progress.fraction = 0.0
    again = queue.get(done.id)
    assert again.result == {"echo": {"name": "alice", "n": [1, 2]}} and again.progress.fraction == 1.0


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            EasyPhotoError("No face in 3 photos.", hint="Use photos with one visible face.", phase="prepare"),
            {
                "error": "EasyPhotoError",
                "phase": "prepare",
                "message": "No face in 3 photos.",
                "hint": "Use photos with one visible face.",
            },
        ),
        (ValueError("boom"), {"error": "ValueError", "phase": "job", "message": "boom"}),
    ],
)
def test_operation_error_fails_the_job_and_the_worker_keeps_running(make_queue, exc, expected):
    queue = make_queue()

    def fail(params, ctx):
        raise exc

    queue.register("fail", fail)
    queue.register("echo", echo)
    failed = queue.wait(queue.submit("fail", {}).id, timeout=WAIT)
    assert failed.state is JobState.FAILED
    assert failed.result is None
    assert {k: failed.error[k] for k in expected} == expected
    if "hint" not in expected:
        assert failed.error["hint"].startswith("this is a bug")
    assert queue.wait(queue.submit("echo", {"a": 1}).id, timeout=WAIT).state is JobState.SUCCEEDED


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_fail_the_job_without_killing_the_worker(make_queue, exc_type):
    queue = make_queue()

    def interrupt(params, ctx):
        raise exc_type()

    queue.register("interrupt", interrupt)
    queue.register("echo", echo)
    failed = queue.wait(queue.submit("interrupt", {}).id, timeout=WAIT)
    assert failed.state is JobState.FAILED and failed.error["error"] == exc_type.__name__
    assert queue.wait(queue.submit("echo", {}).id, timeout=WAIT).state is JobState.SUCCEEDED


def test_a_result_that_is_not_a_json_dict_fails_the_job(make_queue):
    queue = make_queue()
    queue.register("list", lambda p, c: [1, 2])
    queue.register("blob", lambda p, c: {"data": object()})
    for kind in ("list", "blob"):
        record = queue.wait(queue.submit(kind, {}).id, timeout=WAIT)
        assert record.state is JobState.FAILED and record.error["hint"].startswith("this is a bug")


def test_none_result_succeeds(make_queue):
    queue = make_queue()
    queue.register("noop", lambda p, c: None)
    record = queue.wait(queue.submit("noop", {}).id, timeout=WAIT)
    assert record.state is JobState.SUCCEEDED and record.result is None


def test_unknown_kind(make_queue):
    queue = make_queue()
    queue.register("train", echo)
    queue.register("generate", echo)
    with pytest.raises(UnknownJobKind) as err:
        queue.submit("upscale", {})
    assert err.value.http_status == 501
    assert "'upscale'" in err.value.message and "generate, train" in err.value.message
    assert queue.list() == []


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"image": object()}, "'image'"),
        ({"a": {"b": [1, {1, 2}]}}, "'a.b[1]'"),
        ({"scale": float("nan")}, "'scale'"),
        ({"ok": 1, (1, 2): "tuple key"}, "'(1, 2)'"),
        (["not", "a", "dict"], "JSON object"),
    ],
)
def test_params_must_be_json(make_queue, jobs_dir, params, names):
    queue = make_queue()
    queue.register("echo", echo)
    with pytest.raises(InvalidJobParams) as err:
        queue.submit("echo", params)
    assert isinstance(err.value, EasyPhotoError) and err.value.http_status == 422
    assert names in err.value.message
    assert queue.list() == [] and not list(jobs_dir.glob("*.json"))


@pytest.mark.parametrize(
    "bad_id",
    [
        "../x",
        "",
        "a" * 10_000,
        "../" + uuid.uuid4().hex,
        uuid.uuid4().hex + ".json",
        uuid.uuid4().hex.upper(),
        str(uuid.uuid4()),  # dashed form: not what submit returns
        uuid.uuid4().hex,  # well-formed but unknown
        None,
        123,
    ],
)
def test_invalid_or_hostile_ids_are_not_found(make_queue, bad_id):
    queue = make_queue()
    for call in (queue.get, queue.cancel, lambda i: queue.wait(i, timeout=0.01)):
        with pytest.raises(JobNotFound) as err:
            call(bad_id)
        assert err.value.http_status == 404 and len(err.value.message) < 200


def test_list_filters_newest_first(make_queue):
    queue = make_queue(start=False)
    queue.register("a", echo)
    queue.register("b", echo)
    ids = [queue.submit(kind, {"i": i}).id for i, kind in enumerate("ababa")]
    assert [r.id for r in queue.list()] == ids[::-1]
    assert [r.id for r in queue.list(kind="b")] == [ids[3], ids[1]]
    assert [r.id for r in queue.list(limit=2)] == [ids[4], ids[3]]
    queue.cancel(ids[0])
    assert [r.id for r in queue.list(state=JobState.CANCELLED)] == [ids[0]]
    assert [r.id for r in queue.list(state="queued", kind="a")] == [ids[4], ids[2]]
    assert queue.list(kind="c") == [] and queue.list(limit=0) == []
    with pytest.raises(InvalidJobParams):
        queue.list(state="exploded")


def test_record_round_trips_through_json():
    record = JobRecord(
        id=uuid.uuid4().hex,
        kind="train",
        state=JobState.FAILED,
        created=1.5,
        started=2.0,
        finished=3.25,
        params={"identity": "alice"},
        progress=JobProgress(phase="train", fraction=0.5, message="step 5", eta_seconds=3.0, step=5, total=10),
        error={"error": "X", "phase": "job", "message": "m", "hint": "h"},
        label="train alice",
    )
    data = json.loads(json.dumps(record.to_dict()))
    assert data["state"] == "failed"
    assert JobRecord.from_dict(data) == record


# ---------------------------------------------------------------------------------------------- progress


def test_progress_is_monotonic_with_eta(make_queue):
    queue = make_queue()
    seen_inside = []

    def work(params, ctx):
        for value in [0.1, 0.3, 0.2, 0.5, 0.4, 0.9, 1.7, 0.95]:  # goes back twice and overshoots once
            ctx.progress(phase="train", fraction=value, message=f"at {value}", step=int(value * 10), total=10)
            seen_inside.append(queue.get(ctx.job_id).progress)
            time.sleep(0.01)
        return {}

    queue.register("work", work)
    job_id = queue.submit("work", {}).id
    polled = []
    deadline = time.monotonic() + WAIT
    while (record := queue.get(job_id)).state not in FINAL_STATES:
        polled.append(record.progress.fraction)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert record.state is JobState.SUCCEEDED

    fractions = [p.fraction for p in seen_inside]
    assert fractions == [0.1, 0.3, 0.3, 0.5, 0.5, 0.9, 1.0, 1.0]
    assert polled == sorted(polled) and len(set(polled)) >= 2
    assert all(p.eta_seconds is not None and p.eta_seconds >= 0 for p in seen_inside)
    assert seen_inside[-1].eta_seconds == 0.0
    assert seen_inside[2].message == "at 0.2" and seen_inside[2].step == 2 and seen_inside[2].total == 10


def test_no_eta_before_any_progress(make_queue):
    queue = make_queue()
    gate = Gate()
    queue.register("gate", gate)
    job_id = queue.submit("gate", {}).id
    assert gate.started.wait(WAIT)
    running = queue.get(job_id)
    assert running.state is JobState.RUNNING and running.progress.fraction == 0.0
    assert running.progress.eta_seconds is None
    gate.release.set()
    queue.wait(job_id, timeout=WAIT)


def test_progress_is_persisted(make_queue, jobs_dir):
    queue = make_queue()
    reported = threading.Event()
    release = threading.Event()

    def work(params, ctx):
        preview = ctx.work_dir / "preview.png"
        preview.write_bytes(b"png")
        ctx.progress(phase="prepare", fraction=0.1)
        ctx.progress(phase="train", fraction=0.25, message="step 25/100", step=25, total=100, preview=preview)
        reported.set()
        release.wait(WAIT)
        return {"preview": str(preview)}

    queue.register("work", work)
    job_id = queue.submit("work", {}).id
    assert reported.wait(WAIT)
    on_disk = read_json(jobs_dir / f"{job_id}.json")  # a phase change is written at once
    assert on_disk["state"] == "running"
    assert on_disk["progress"]["phase"] == "train" and on_disk["progress"]["fraction"] == 0.25
    assert on_disk["progress"]["message"] == "step 25/100" and on_disk["progress"]["step"] == 25
    assert on_disk["progress"]["preview"] == str(jobs_dir / job_id / "preview.png")
    release.set()
    queue.wait(job_id, timeout=WAIT)
    final = read_json(jobs_dir / f"{job_id}.json")
    assert final["state"] == "succeeded" and final["progress"]["fraction"] == 1.0


# ---------------------------------------------------------------------------------------------- cancel


def test_cancel_a_queued_job(make_queue):
    queue = make_queue(start=False)
    ran = []
    queue.register("echo", lambda p, c: ran.append(p["i"]) or {})
    first, second = queue.submit("echo", {"i": 1}), queue.submit("echo", {"i": 2})
    cancelled = queue.cancel(second.id)
    assert cancelled.state is JobState.CANCELLED and cancelled.finished is not None
    assert cancelled.error["error"] == "Cancelled"
    queue.start()
    assert queue.wait(first.id, timeout=WAIT).state is JobState.SUCCEEDED
    assert queue.get(second.id).state is JobState.CANCELLED
    assert ran == [1]


def test_cancel_a_running_job_that_polls(make_queue):
    queue = make_queue()
    gate = Gate()
    queue.register("gate", gate)
    job_id = queue.submit("gate", {}).id
    assert gate.started.wait(WAIT)
    assert queue.cancel(job_id).state is JobState.RUNNING  # the flag is set; the operation ends it
    record = queue.wait(job_id, timeout=WAIT)  # a failure guard only: the gate itself gives up after WAIT
    assert record.state is JobState.CANCELLED and gate.saw_cancel.is_set() and not gate.release.is_set()
    assert record.result is None and record.error["error"] == "Cancelled"


def test_on_cancel_callback_stops_outside_work(make_queue):
    """Simulates a child process: the operation waits for it; the callback "kills" it."""
    queue = make_queue()
    started = threading.Event()
    calls = []

    ended_by_kill = threading.Event()

    def work(params, ctx):
        child_exited = threading.Event()
        ctx.on_cancel(lambda: (calls.append("kill"), child_exited.set()))
        started.set()
        if child_exited.wait(WAIT):
            ended_by_kill.set()
        return {"partial": True}  # returned after the flag: discarded

    queue.register("work", work)
    job_id = queue.submit("work", {}).id
    assert started.wait(WAIT)
    queue.cancel(job_id)
    queue.cancel(job_id)  # a second request calls nothing again
    record = queue.wait(job_id, timeout=WAIT)
    assert record.state is JobState.CANCELLED and record.result is None
    assert ended_by_kill.is_set()  # the callback, not the guard, ended the outside work
    assert calls == ["kill"]


def test_on_cancel_after_the_cancel_is_called_at_once(make_queue):
    queue = make_queue()
    gate = Gate(poll_cancel=False)
    late = []

    def work(params, ctx):
        gate(params, ctx)
        ctx.on_cancel(lambda: late.append(True))
        ctx.check_cancelled()
        return {}

    queue.register("work", work)
    job_id = queue.submit("work", {}).id
    assert gate.started.wait(WAIT)
    queue.cancel(job_id)
    gate.release.set()
    assert queue.wait(job_id, timeout=WAIT).state is JobState.CANCELLED
    assert late == [True]


def test_an_operation_may_raise_cancelled_itself(make_queue):
    queue = make_queue()

    def work(params, ctx):
        raise Cancelled("The training process was stopped.")

    queue.register("work", work)
    record = queue.wait(queue.submit("work", {}).id, timeout=WAIT)
    assert record.state is JobState.CANCELLED and record.error["message"] == "The training process was stopped."


def test_cancel_a_finished_job(make_queue):
    queue = make_queue()
    queue.register("echo", echo)
    job_id = queue.submit("echo", {}).id
    queue.wait(job_id, timeout=WAIT)
    with pytest.raises(JobFinished) as err:
        queue.cancel(job_id)
    assert err.value.http_status == 409 and "succeeded" in err.value.message


def test_fifty_jobs_half_cancelled_all_end(make_queue):
    queue = make_queue()
    running = {i: threading.Event() for i in range(50)}

    def work(params, ctx):
        i = params["i"]
        running[i].set()
        deadline = time.monotonic() + (WAIT if i % 2 else 0.01)  # odd jobs run until cancelled
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(0.001)
        return {"i": i}

    queue.register("work", work)
    ids = [queue.submit("work", {"i": i}).id for i in range(50)]
    states_at_cancel = {}
    # The worker cannot pass job 1 before it is cancelled, so jobs 11, 13, ... are certainly still queued.
    for i in range(11, 50, 2):
        states_at_cancel[i] = queue.get(ids[i]).state
        assert queue.cancel(ids[i]).state is JobState.CANCELLED
    for i in range(1, 11, 2):  # these are cancelled while running
        assert running[i].wait(WAIT)
        states_at_cancel[i] = queue.cancel(ids[i]).state

    deadline = time.monotonic() + WAIT
    records = [queue.wait(job_id, timeout=max(0.0, deadline - time.monotonic())) for job_id in ids]
    assert all(r.state in FINAL_STATES for r in records)
    assert {i for i, r in enumerate(records) if r.state is JobState.CANCELLED} == set(range(1, 50, 2))
    assert {i for i, r in enumerate(records) if r.state is JobState.SUCCEEDED} == set(range(0, 50, 2))
    assert {i for i, s in states_at_cancel.items() if s is JobState.RUNNING} == {1, 3, 5, 7, 9}
    assert {i for i, s in states_at_cancel.items() if s is JobState.QUEUED} == set(range(11, 50, 2))
    assert not any(running[i].is_set() for i in range(11, 50, 2))


# ---------------------------------------------------------------------------------------------- restart


def test_records_survive_a_restart(make_queue, jobs_dir):
    first = make_queue()
    gate = Gate(poll_cancel=False)  # ignores cancel: still running when the app stops
    first.register("echo", echo, label=lambda p: f"echo {p['x']}")
    first.register("fail", lambda p, c: 1 / 0)
    first.register("gate", gate)
    ok = first.wait(first.submit("echo", {"x": 1}).id, timeout=WAIT)
    bad = first.wait(first.submit("fail", {}).id, timeout=WAIT)
    running = first.submit("gate", {})
    queued = first.submit("echo", {"x": 2})
    cancelled = first.cancel(first.submit("echo", {"x": 3}).id)
    assert gate.started.wait(WAIT)
    first.shutdown(cancel_running=False, timeout=0.05)
    with pytest.raises(QueueStopped):
        first.submit("echo", {"x": 4})

    second = make_queue(start=False)  # nothing registered: records load regardless of kinds
    for before in (ok, bad, cancelled):
        assert second.get(before.id).to_dict() == before.to_dict()
    for job_id, was in ((running.id, "running"), (queued.id, "queued")):
        record = second.get(job_id)
        assert record.state is JobState.FAILED
        assert record.error["message"] == f"interrupted: EasyPhoto stopped while this job was {was}"
        assert "again" in record.error["hint"]
        assert read_json(jobs_dir / f"{job_id}.json")["state"] == "failed"
    assert second.get(queued.id).label == "echo 2"
    assert [r.id for r in second.list()] == [r.id for r in first.list()]
    gate.release.set()


def test_a_crashed_process_leaves_interrupted_records(make_queue, jobs_dir):
    dead = make_queue(start=False)  # submitted but never run, and never shut down: like a killed process
    dead.register("echo", echo)
    job_id = dead.submit("echo", {}).id
    record = make_queue(start=False).get(job_id)
    assert record.state is JobState.FAILED and record.finished is not None
    assert record.error["message"] == "interrupted: EasyPhoto stopped while this job was queued"


def test_corrupt_record_files_are_skipped(make_queue, jobs_dir, caplog):
    queue = make_queue()
    queue.register("echo", echo)
    good = queue.wait(queue.submit("echo", {}).id, timeout=WAIT)
    broken = jobs_dir / f"{uuid.uuid4().hex}.json"
    broken.write_text("{not json", encoding="utf-8")
    wrong_shape = jobs_dir / f"{uuid.uuid4().hex}.json"
    wrong_shape.write_text('{"id": 1, "state": "exploded"}', encoding="utf-8")
    other_id = jobs_dir / f"{uuid.uuid4().hex}.json"
    other_id.write_text(json.dumps(good.to_dict()), encoding="utf-8")  # a copy under another name
    (jobs_dir / "notes.json").write_text("[]", encoding="utf-8")  # not a job file: ignored

    with caplog.at_level(logging.WARNING, logger="easyphoto"):
        restarted = make_queue()
    assert [r.id for r in restarted.list()] == [good.id]
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert broken.name in warned and wrong_shape.name in warned and other_id.name in warned
    assert broken.read_text(encoding="utf-8") == "{not json"  # left on disk
    assert wrong_shape.exists() and other_id.exists()


# ---------------------------------------------------------------------------------------------- history


def test_history_keeps_the_newest_final_records(make_queue, jobs_dir):
    queue = make_queue(history=3)

    def work(params, ctx):
        (ctx.work_dir / "out.txt").write_text("x", encoding="utf-8")
        return {}

    queue.register("work", work)
    ids = [queue.wait(queue.submit("work", {"i": i}).id, timeout=WAIT).id for i in range(5)]
    for old in ids[:2]:
        with pytest.raises(JobNotFound):
            queue.get(old)
        assert not (jobs_dir / f"{old}.json").exists() and not (jobs_dir / old).exists()
    assert [r.id for r in queue.list()] == ids[:1:-1]
    for kept in ids[2:]:
        assert (jobs_dir / f"{kept}.json").exists() and (jobs_dir / kept / "out.txt").exists()

    smaller = make_queue(history=2, start=False)  # a smaller bound applies on load
    assert [r.id for r in smaller.list()] == ids[:2:-1]
    assert not (jobs_dir / f"{ids[2]}.json").exists()


def test_history_never_drops_queued_or_running_jobs(make_queue):
    queue = make_queue(history=1)
    gate = Gate()
    queue.register("gate", gate)
    queue.register("echo", echo)
    done = [queue.wait(queue.submit("echo", {}).id, timeout=WAIT).id for _ in range(2)]
    running = queue.submit("gate", {}).id
    queued = [queue.submit("echo", {}).id for _ in range(3)]
    assert gate.started.wait(WAIT)
    assert [r.id for r in queue.list()] == [*queued[::-1], running, done[1]]
    gate.release.set()
    assert queue.wait(queued[-1], timeout=WAIT).state is JobState.SUCCEEDED  # FIFO: the others ended before it
    assert [r.id for r in queue.list()] == [queued[-1]]


# ---------------------------------------------------------------------------------------------- GPU lock


def test_operations_hold_the_gpu_lock_and_never_overlap(make_queue):
    gpu = threading.Lock()
    queue = make_queue(gpu_lock=lambda: gpu)
    active, overlaps = [], []

    def work(params, ctx):
        assert gpu.locked()
        active.append(params["i"])
        if len(active) > 1:
            overlaps.append(list(active))
        time.sleep(0.005)
        active.remove(params["i"])
        return {}

    queue.register("work", work)
    ids = [queue.submit("work", {"i": i}).id for i in range(8)]
    assert all(queue.wait(i, timeout=WAIT).state is JobState.SUCCEEDED for i in ids)
    assert overlaps == []
    assert not gpu.locked()


def test_jobs_wait_while_the_host_holds_the_gpu_lock(make_queue):
    gpu = threading.Lock()
    queue = make_queue(gpu_lock=lambda: gpu)
    ran = []
    queue.register("work", lambda p, c: ran.append(p["i"]) or {})
    with gpu:  # the WebUI is generating
        first = queue.submit("work", {"i": 1}).id
        second = queue.submit("work", {"i": 2}).id
        time.sleep(0.05)
        assert queue.get(first).state is JobState.QUEUED
        queue.cancel(first)  # cancelled while the worker waits for the lock
    assert queue.wait(second, timeout=WAIT).state is JobState.SUCCEEDED
    assert queue.get(first).state is JobState.CANCELLED
    assert ran == [2]


def test_only_kinds_that_need_the_gpu_take_the_hosts_lock(make_queue):
    """A photo check or a download runs while the WebUI generates; training and portraits wait for it."""
    host = threading.Lock()
    asked = []

    def gpu_lock():
        asked.append(True)
        return host

    queue = make_queue(gpu_lock=gpu_lock)
    queue.register("check", lambda p, c: {"host_busy": host.locked()}, gpu=False)
    queue.register("render", lambda p, c: {"host_busy": host.locked()}, gpu=True)
    assert not queue.needs_gpu("check") and queue.needs_gpu("render")
    with host:  # the WebUI is generating
        check = queue.wait(queue.submit("check", {}).id, timeout=WAIT)
        assert check.state is JobState.SUCCEEDED and check.result == {"host_busy": True}
        assert asked == []  # it never asked for the lock
        render = queue.submit("render", {}).id
        wait_until(lambda: asked)  # the worker asked for the lock ...
        assert queue.get(render).state is JobState.QUEUED  # ... and waits for the WebUI to finish
    done = queue.wait(render, timeout=WAIT)
    assert done.state is JobState.SUCCEEDED and done.result == {"host_busy": True}  # held by the job this time


def test_kinds_need_the_gpu_unless_they_say_otherwise(make_queue):
    queue = make_queue(start=False)
    queue.register("legacy", echo)
    assert queue.needs_gpu("legacy") and queue.needs_gpu("unregistered")


def test_every_operation_declares_whether_it_needs_the_gpu(make_queue, tmp_path):
    from easyphoto import operations
    from easyphoto.context import standalone_context

    queue = make_queue(start=False)
    operations.register_operations(queue, standalone_context(tmp_path / "data", offline=True))
    assert {kind: queue.needs_gpu(kind) for kind in queue.kinds()} == {
        "check_photos": False, "prepare_dataset": False, "fetch_models": False, "train": True, "portrait": True,
        "garment_dataset": False, "garment_train": True, "tryon": True, "tryon_any": True, "design": True, "design_train": True,
        "digital_model": True, "generate": True, "portrait_compare": True,
    }


def test_shutdown_cancels_the_running_job_and_interrupts_queued_ones(make_queue):
    queue = make_queue()
    gate = Gate()
    queue.register("gate", gate)
    running = queue.submit("gate", {}).id
    queued = queue.submit("gate", {}).id
    assert gate.started.wait(WAIT)
    queue.shutdown(timeout=WAIT)
    assert not queue._thread.is_alive()  # shutdown returned because the worker ended, not on its timeout
    assert gate.saw_cancel.is_set() and not gate.release.is_set()
    assert queue.get(running).state is JobState.CANCELLED
    assert queue.get(queued).state is JobState.FAILED
    assert "queued" in queue.get(queued).error["message"]
