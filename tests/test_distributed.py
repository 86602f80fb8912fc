"""The distributed job queue end to end: a real redis-server, two `python -m easyphoto worker` processes on the
kit's tiny models, the API server's DistributedQueue in this process.

Mixed jobs with cancels on both workers; kill -9 of a worker in the middle of a training (redelivered, resumed from
its checkpoint); Redis stopped and started again (the API answers 503 "unavailable", then works again)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_module
from tests.kit.photos import skip_or_fail

require_module("celery")
require_module("redis")

from easyphoto import operations  # noqa: E402
from easyphoto.context import standalone_context  # noqa: E402
from easyphoto.distributed.redis_jobs import QueueUnavailable  # noqa: E402
from easyphoto.generation import CONTROLNET_MODELS  # noqa: E402
from easyphoto.jobs import JobState  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEASE_S = 3
CAPTION = "easyphoto_face, easyphoto, 1person"
TRAIN = {"resolution": 256, "rank": 4, "network_alpha": 4, "steps_per_photo": 2, "max_train_steps": 4,
         "validation": False, "validation_every": 2, "gradient_accumulation_steps": 1, "seed": 7, "matting": False,
         "upscale_small": False}
PORTRAIT = {"first_steps": 5, "second_steps": 4, "short_side": 256, "seed": 42}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, appendonly, in its own folder: stop() and start() keep its data."""

    def __init__(self, folder: Path):
        self.exe = shutil.which("redis-server")
        self.folder, self.port = folder, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--appendonly", "yes",
             "--save", "", "--protected-mode", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError("redis-server did not answer within 30 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (Debian: apt-get install redis-server; run-tests.sh does)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def _identity_with_dataset(ctx, identity_id: str) -> None:
    layout = ctx.identities.create(identity_id, exist_ok=True)
    (layout.dataset / "train").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(identity_id))
    lines = []
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((256, 256)).save(
            layout.dataset / "train" / f"{i}.jpg")
        (layout.dataset / "train" / f"{i}.txt").write_text(CAPTION)
        lines.append(json.dumps({"file_name": f"train/{i}.jpg", "text": CAPTION}))
    (layout.dataset / "metadata.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def studio(tmp_path_factory, redis_server, tiny_sd_dir, tiny_single_file, tiny_sd_config_dir, tiny_controlnet_dirs,
           photos_same_man, photo_other_person):
    """One shared data root: identities with photos (checks), with datasets (trainings), with a LoRA (portraits)."""
    from easyphoto.face import stacks
    from tests.test_portrait import make_identity
    from tests.test_portrait_diffusers import tiny_lora

    root = tmp_path_factory.mktemp("shared-root")
    ctx = standalone_context(root, offline=True, broker=redis_server.url)
    ctx.paths.controlnet_dir.mkdir(parents=True)
    for kind, stem in CONTROLNET_MODELS.items():
        (ctx.paths.controlnet_dir / stem).symlink_to(tiny_controlnet_dirs[kind], target_is_directory=True)
    stack = stacks.load("dlib", ctx.paths)
    make_identity(ctx.paths, "barack", photos_same_man[0], stack, lora=False)
    tiny_lora(tiny_sd_dir, ctx.paths.lora_dir / "barack.safetensors", 0)
    checked = ctx.identities.create("checked", exist_ok=True)
    checked.photos.mkdir(parents=True, exist_ok=True)
    for photo in [*photos_same_man[:3], photo_other_person]:
        shutil.copy(photo, checked.photos / Path(photo).name)
    for i in range(8):
        _identity_with_dataset(ctx, f"trainee{i}")
    queue = operations.job_queue(ctx)  # the server: publishes the data root's marker before any worker starts
    yield {"ctx": ctx, "queue": queue, "root": root, "base": {"base": str(tiny_single_file), "config_dir": str(tiny_sd_config_dir)},
           "sd_dir": str(tiny_sd_dir), "template": str(photos_same_man[1])}
    operations.shutdown_all()


class Workers:
    def __init__(self, root: Path, broker: str, logs: Path):
        self.root, self.broker, self.logs = root, broker, logs
        self.processes: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}  # where each worker's current process began in its log

    def start(self, name: str, *, ready: bool = True) -> None:
        """Start worker `name`; with `ready`, return once it takes jobs (a test after it must not race its start)."""
        env = {**os.environ, "EASYPHOTO_LEASE_SECONDS": str(LEASE_S), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        path = self.logs / f"{name}.log"
        self.starts[name] = path.stat().st_size if path.exists() else 0
        log = open(path, "ab")  # noqa: SIM115 - the worker writes it until it ends
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "easyphoto", "--data-dir", str(self.root), "--offline", "--broker", self.broker,
             "worker", "--name", name], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        if ready:
            self.wait_for_line(name, f"@{socket.gethostname()} ready.", 180)

    def since_start(self, name: str) -> str:
        """What the current process of worker `name` logged (its log file is shared with earlier ones)."""
        with open(self.logs / f"{name}.log", "rb") as log:
            log.seek(self.starts[name])
            return log.read().decode(errors="replace")

    def wait_for_line(self, name: str, text: str, timeout: float) -> None:
        _wait(lambda: text in self.since_start(name), timeout, f"worker {name} to log {text!r}", self)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)

    def kill(self, name: str) -> None:
        """kill -9 of the worker's whole process group (its training child dies with it, as on a lost machine)."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None and process.returncode != -signal.SIGKILL:
                raise AssertionError(f"worker {name} exited with {process.returncode}:\n{self.log(name)}")


@pytest.fixture(scope="module")
def workers(studio, redis_server, tmp_path_factory):
    pool = Workers(studio["root"], redis_server.url, tmp_path_factory.mktemp("worker-logs"))
    pool.start("alpha")
    pool.start("beta")
    yield pool
    pool.stop_all()


# The two longest multi-worker runs (about a minute together) test Celery, Redis and the worker processes, which
# are the same packages in both pin sets; they run once, in the forge pin set (run-tests.sh forge), to keep CI short.
# The Redis-restart test (the REST API's 503, which differs between the pin sets' FastAPI/pydantic) runs in both.
FORGE_PIN_SET_ONLY = pytest.mark.skipif(os.environ.get("EASYPHOTO_PINSET") == "a1111",
                                        reason="runs in the forge pin set (run-tests.sh forge): pin-set independent")


def _wait(predicate, timeout: float, what: str, workers: Workers | None = None):
    deadline = time.monotonic() + timeout  # a failure guard only: nothing asserts how long it took
    while time.monotonic() < deadline:
        if workers is not None:
            workers.check_alive()
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_a_worker_on_another_data_root_refuses_to_start(studio, redis_server, tmp_path):
    other = subprocess.run(
        [sys.executable, "-m", "easyphoto", "--data-dir", str(tmp_path), "--broker", redis_server.url, "worker"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert other.returncode == 2
    assert "is not the server's" in other.stderr and "--data-dir" in other.stderr


def test_a_worker_waits_for_redis_at_start_then_says_what_to_do(tmp_path):
    from easyphoto.distributed.redis_jobs import RedisJobs
    from easyphoto.distributed.worker import wait_for_broker

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    said: list[str] = []
    with pytest.raises(QueueUnavailable) as info:
        wait_for_broker(RedisJobs(closed), 1.5, say=said.append)
    assert said and all("Waiting for it" in line and "127.0.0.1" in line for line in said)
    assert "Start Redis again" in info.value.hint and info.value.http_status == 503


def test_the_setting_turns_the_distributed_queue_on_and_a_second_root_is_refused(redis_server, tmp_path):
    """Settings → Distributed job queue does what --broker does; another data root on the same Redis database
    is refused (its marker differs), while another database is a queue of its own."""
    from easyphoto.config import Settings
    from easyphoto.context import save_settings_file
    from easyphoto.distributed.worker import DataRootMismatch

    own_db = redis_server.url.rsplit("/", 1)[0] + "/1"
    ctx = standalone_context(tmp_path / "one")
    save_settings_file(ctx.paths, Settings(broker_url=own_db))
    try:
        queue = operations.job_queue(ctx)
        assert type(queue).__name__ == "DistributedQueue" and queue.broker == own_db
        other = standalone_context(tmp_path / "two", broker=own_db)
        with pytest.raises(DataRootMismatch, match="not the one the other EasyPhoto processes"):
            operations.job_queue(other)
    finally:
        operations._queues.pop(ctx.paths.jobs_dir.resolve(), None)  # the studio's queue stays


def test_a_lost_lease_is_requeued_once_and_its_old_worker_records_no_end(redis_server, tmp_path, monkeypatch):
    """The watch every worker keeps: a job whose lease stayed expired is re-queued by one worker only, and the
    worker that lost a lease stops its copy of the job and leaves the end to the new holder."""
    import threading
    import uuid

    from easyphoto.distributed.redis_jobs import envelope_of
    from easyphoto.distributed.worker import Worker
    from easyphoto.jobs import JobRecord, _Active

    monkeypatch.setenv("EASYPHOTO_LEASE_SECONDS", "1")
    ctx = standalone_context(tmp_path, broker=redis_server.url)
    a, b = (Worker(ctx, redis_server.url, name=n, namespace="lease-test") for n in ("a", "b"))
    record = JobRecord(id=uuid.uuid4().hex, kind="check_photos", state=JobState.RUNNING, created=time.time())
    a.store.add(envelope_of(record.to_dict(), queue="easyphoto.nobody", worker="gone", attempts=1), record.created)
    a.store.client.sadd(a.store.key("running"), record.id)  # held by a worker that died: its lease is gone
    assert a.requeue_lost() == [] and b.requeue_lost() == []  # first sighting: it may still renew
    time.sleep(0.6)  # half a lease later
    assert a.requeue_lost() + b.requeue_lost() == [record.id]
    envelope = a.store.load(record.id)
    assert envelope["record"]["state"] == "queued" and "worker gone was lost" in envelope["record"]["progress"]["message"]
    assert record.id not in a.store.running_ids()

    active, stop = _Active(record), threading.Event()
    assert a.store.claim(record.id, "b", 5000)  # b holds it now; a still thinks it runs the job
    watch = threading.Thread(target=a._watch, args=(record.id, active, stop))
    watch.start()
    _wait(lambda: active.cancel_event.is_set(), 30, "a noticing that b took the job")
    stop.set()
    watch.join()
    assert a._end(envelope, record, active, {"late": True}, None, None) == "lost"
    assert not a.store.client.exists(a.store.key("done", record.id))  # the end is still b's to record


@FORGE_PIN_SET_ONLY
@pytest.mark.timeout(900)
def test_mixed_jobs_with_cancels_all_end_right_on_both_workers(studio, workers):
    queue, base = studio["queue"], studio["base"]
    jobs = []
    for i in range(8):
        jobs.append(("train", queue.submit("train", {"identity_id": f"trainee{i}", "config": TRAIN, **base})))
    for i in range(6):
        jobs.append(("portrait", queue.submit("portrait", {
            "identity_ids": ["barack"], "templates": [studio["template"]],
            "config": {**PORTRAIT, "seed": i}, "base": studio["sd_dir"]})))
    for _ in range(6):
        jobs.append(("check", queue.submit("check_photos", {"identity_id": "checked"})))
    order = [jobs[i] for i in (0, 8, 14, 1, 9, 15, 2, 10, 16, 3, 11, 17, 4, 12, 18, 5, 13, 19, 6, 7)]
    assert len(order) == 20
    cancelled = {order[i][1].id for i in (5, 9, 13, 17, 19)}  # queued ones, or running by the time it arrives
    for job_id in cancelled:
        queue.cancel(job_id)
    finals = {}
    for kind, job in jobs:
        record = _wait(lambda j=job: (r := queue.get(j.id)).is_final and r, 600, f"{kind} job {job.id}", workers)
        finals[job.id] = (kind, record)
    for job_id, (kind, record) in finals.items():
        if job_id in cancelled:
            assert record.state is JobState.CANCELLED, (kind, record.error)
            continue
        assert record.state is JobState.SUCCEEDED, (kind, record.error, workers.log("alpha"), workers.log("beta"))
        assert record.result["distributed"]["attempts"] == 1
        if kind == "train":
            assert Path(record.result["lora_file"]).is_file()
        elif kind == "portrait":
            assert all(Path(p["file"]).is_file() for p in record.result["portraits"])
        else:
            assert record.result["kept"] >= 3 and record.result["total"] == 4
    ran_on = {record.result["distributed"]["worker"] for _, record in finals.values() if record.result}
    assert ran_on == {"alpha", "beta"}


@FORGE_PIN_SET_ONLY
@pytest.mark.timeout(900)
def test_a_killed_worker_s_training_is_resumed_by_the_other(studio, workers):
    queue, base = studio["queue"], studio["base"]
    long = {**TRAIN, "max_train_steps": 24, "steps_per_photo": 12, "validation_every": 2}
    job = queue.submit("train", {"identity_id": "trainee0", "config": long, **base})
    running = _wait(lambda: (r := queue.get(job.id)).state is JobState.RUNNING and (r.progress.resumable_step or 0) >= 2
                    and r, 300, "a checkpoint of the long training", workers)
    victim = queue.meta(job.id)["worker"]
    workers.kill(victim)
    record = _wait(lambda: (r := queue.get(job.id)).is_final and r, 600, "the redelivered training")
    assert record.state is JobState.SUCCEEDED, (record.error, workers.log("alpha"), workers.log("beta"))
    survivor = ({"alpha", "beta"} - {victim}).pop()
    distributed = record.result["distributed"]
    assert distributed["worker"] == survivor and distributed["attempts"] == 2
    assert distributed["resumed_from_step"] >= running.progress.resumable_step
    assert any(f"worker {victim} was lost" in note and "resumed from step" in note for note in distributed["notes"])
    assert record.result["steps"] == 24
    workers.start(victim)  # back for what follows


@pytest.mark.timeout(600)
def test_redis_restarted_mid_run_is_a_clear_503_and_the_queue_recovers(studio, workers, redis_server):
    from fastapi.testclient import TestClient

    from easyphoto.app import create_app

    queue, base = studio["queue"], studio["base"]
    client = TestClient(create_app(studio["ctx"], with_ui=False))
    long = {**TRAIN, "max_train_steps": 16, "steps_per_photo": 8, "validation_every": 4}
    running = queue.submit("train", {"identity_id": "trainee1", "config": long, **base})
    _wait(lambda: queue.get(running.id).state is JobState.RUNNING, 300, "the training to start", workers)
    redis_server.stop()
    try:
        with pytest.raises(QueueUnavailable, match="unavailable") as info:
            queue.submit("check_photos", {"identity_id": "checked"})
        assert info.value.http_status == 503 and "Start Redis again" in info.value.hint
        answer = client.get("/easyphoto/v1/jobs")
        assert answer.status_code == 503 and "unavailable" in answer.text
        # A worker started while Redis is down waits for it (a reboot, a supervisor starting all at once).
        workers.start("gamma", ready=False)
        workers.wait_for_line("gamma", "Waiting for it", 180)
    finally:
        redis_server.start()
    workers.wait_for_line("gamma", f"@{socket.gethostname()} ready.", 180)
    job = queue.submit("check_photos", {"identity_id": "checked"})
    for submitted in (running, job):
        record = _wait(lambda j=submitted: (r := queue.get(j.id)).is_final and r, 300, "jobs across the restart",
                       workers)
        assert record.state is JobState.SUCCEEDED, (record.error, workers.log("alpha"), workers.log("beta"))
    assert queue.get(running.id).result["steps"] == 16
    workers.stop("gamma")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("flavour", ["a1111", "forge"])
def test_a_webui_started_with_the_worker_flag_runs_jobs_on_its_own_backend(studio, workers, redis_server,
                                                                          webui_host_factory, flavour):
    """`--easyphoto-broker URL --easyphoto-worker`: the extension's worker thread takes jobs inside the WebUI."""
    workers.stop_all()  # only the WebUI's worker listens now
    host = webui_host_factory(flavour, extensions={"easyphoto": ROOT}, cmd_args=[
        "--easyphoto-broker", redis_server.url, "--easyphoto-worker", "--easyphoto-worker-queues", "easyphoto.cpu",
        "--easyphoto-data-dir", str(studio["ctx"].paths.data_root)])
    host.app_started(demo=None)
    from easyphoto_webui import worker as webui_worker

    try:
        started = webui_worker._started.get("worker")
        assert started is not None and started.name.startswith(f"webui-{flavour}-")
        queue = studio["queue"]
        job = queue.submit("check_photos", {"identity_id": "checked"})
        record = _wait(lambda: (r := queue.get(job.id)).is_final and r, 300, "a job on the WebUI's worker")
        assert record.state is JobState.SUCCEEDED, record.error
        assert record.result["distributed"]["worker"] == started.name and record.result["kept"] >= 3
    finally:
        webui_worker.stop_worker()


def test_jobs_are_routed_by_what_they_need(tiny_single_file, tiny_sdxl_single_file, tiny_sdxl_dir):
    from easyphoto.distributed import celery_app

    route = celery_app.route
    assert route("check_photos", {"identity_id": "x"}, False) == "easyphoto.cpu"
    assert route("train", {"base": str(tiny_single_file)}, True) == "easyphoto.gpu"
    assert route("portrait", {}, True) == "easyphoto.gpu"  # the worker's default base
    for sdxl in (tiny_sdxl_single_file, tiny_sdxl_dir):  # the header (file) or model_index.json (folder) says SDXL
        assert route("train", {"base": str(sdxl)}, True) == "easyphoto.gpu.sdxl"
    assert route("tryon_any", {"backend": "leffa", "base": str(tiny_sdxl_single_file)}, True) == "easyphoto.gpu.leffa"
    assert {"easyphoto.cpu", "easyphoto.gpu", "easyphoto.gpu.sdxl", "easyphoto.gpu.leffa"} <= set(
        celery_app.all_queues())
