"""A worker: takes jobs from the Celery queues it listens on and runs them one at a time.

    python -m easyphoto worker --broker redis://HOST:6379/0 [--queues easyphoto.gpu,easyphoto.cpu] [--name N]

Per job (`run_job`, the Celery task's body):

1. A job already ended (done, cancelled while queued, or a duplicate message) is acknowledged and left alone.
2. The job is claimed with a lease (`<ns>:lease:<id>`, EASYPHOTO_LEASE_SECONDS, 20 s by default); a job whose
   lease another live worker holds is left to it.
3. The operation runs with a JobContext whose progress, resumable step and cancel flag live in Redis. A thread
   renews the lease and polls the cancel flag every half second; a cancel calls the operation's cancel callbacks
   (a training's child process is stopped as in the embedded queue).
4. The end is recorded once (`finish_once`): the record gets its state, result or error, and `result.distributed`
   (worker, attempts, the step a redelivered training resumed from).

Every worker also watches the jobs the others hold: a job whose lease stayed expired for half a lease time
(its worker was killed, or lost its machine) is re-queued once, marked so in its notes; the next worker to take it
resumes it from its last recorded checkpoint when its kind can resume (its parameters have `resume`), else runs
it again from the start. The late duplicate message of the lost worker (acks_late) finds the job ended or held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from easyphoto.context import AppContext
from easyphoto.distributed import celery_app
from easyphoto.distributed.queue import KindRegistry
from easyphoto.distributed.redis_jobs import QueueUnavailable, RedisJobs
from easyphoto.errors import Cancelled, EasyPhotoError
from easyphoto.jobs import (
    FINAL_STATES,
    JobContext,
    JobRecord,
    JobState,
    _Active,
    _error_dict,
    is_bug,
    update_progress,
)

log = logging.getLogger("easyphoto")
POLL_S = 0.5
ROOT_MARKER = ".easyphoto-root"


class DataRootMismatch(EasyPhotoError):
    phase = "worker"
    http_status = 500


def lease_seconds() -> float:
    return max(float(os.environ.get("EASYPHOTO_LEASE_SECONDS", "20")), 1.0)


def wait_for_broker(store: RedisJobs, seconds: float, say=print) -> None:
    """Wait up to `seconds` for Redis to answer: a worker started before Redis (a reboot, a supervisor starting
    everything at once) or during its restart waits for it, as Celery's own consumer does, instead of exiting."""
    deadline, pause = time.monotonic() + max(seconds, 0.0), 1.0
    while True:
        try:
            store.ping()
            return
        except QueueUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            say(f"EasyPhoto worker: {exc.message} Waiting for it ({left:.0f} s left) ...")
            time.sleep(min(pause, left))
            pause = min(pause * 2, 10.0)


def check_data_root(ctx: AppContext, store: RedisJobs, *, create: bool) -> str:
    """The data root's marker, the same for the server and every worker (they must share one folder).

    The API server (`create`) writes `<data root>/.easyphoto-root` once and publishes its id in Redis; a worker
    reads its own file and refuses to start when it is missing or differs: it would not see the identities,
    LoRAs and outputs the server writes."""
    import uuid

    marker = ctx.paths.data_root / ROOT_MARKER
    if create and not marker.is_file():
        marker.parent.mkdir(parents=True, exist_ok=True)
        from easyphoto.store import atomic_write_text

        atomic_write_text(marker, uuid.uuid4().hex)
    mine = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    if create and mine:
        published = store.set_root_marker(mine)
        if published != mine:
            raise DataRootMismatch(
                f"This server's data root {ctx.paths.data_root} is not the one the other EasyPhoto processes on this "
                f"broker use (marker {mine}, the broker has {published}).",
                hint="Point every server and worker at the same shared data folder (--data-dir), or use another "
                "Redis database for this one.")
        return mine
    published = store.root_marker()
    if published is None:
        raise DataRootMismatch("No EasyPhoto server has published its data root on this broker yet.",
                               hint="Start the API server with --broker first (it marks the data root).")
    if mine != published:
        raise DataRootMismatch(
            f"This worker's data root {ctx.paths.data_root} is not the server's: its marker file {marker} is "
            f"{'missing' if mine is None else mine}, the server's is {published}.",
            hint="Mount the server's data folder here and pass it as --data-dir: identities, LoRAs and outputs "
            "live there, and every worker must see the same files.")
    return mine


class Worker(KindRegistry):
    def __init__(self, ctx: AppContext, broker: str, *, name: str | None = None, namespace: str = "easyphoto"):
        super().__init__()
        self.ctx, self.broker = ctx, broker
        self.store = RedisJobs(broker, namespace)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_ms = int(lease_seconds() * 1000)
        self.jobs_dir: Path = ctx.paths.jobs_dir
        self.app = celery_app.make_app(broker, run_job=self.run_job)
        self._lock = threading.Lock()
        self._envelope: dict | None = None
        self._suspects: dict[str, float] = {}  # job id -> when its lease was first seen missing
        self._lost: set[str] = set()  # jobs whose lease another worker took from this one: their end is not ours

    # ------------------------------------------------------------------ the task

    def run_job(self, job_id: str) -> str:
        envelope = self.store.load(job_id)
        if envelope is None:
            return "unknown"
        if JobRecord.from_dict(envelope["record"]).state in FINAL_STATES:
            return "ended"
        if not self.store.claim(job_id, self.name, self.lease_ms):
            return "held"
        try:
            envelope = self.store.load(job_id) or envelope  # as it is now that it is ours
            record = JobRecord.from_dict(envelope["record"])
            if record.state in FINAL_STATES:
                return "ended"
            return self._run(envelope, record)
        finally:
            self.store.release(job_id, self.name)

    def _run(self, envelope: dict, record: JobRecord) -> str:
        meta = envelope["meta"]
        meta["attempts"] = int(meta.get("attempts", 0)) + 1
        previous, meta["worker"] = meta.get("worker"), self.name
        params, resumed = dict(record.params), None
        if meta["attempts"] > 1:
            step = record.progress.resumable_step
            if "resume" in params and step:
                params["resume"], resumed = True, step
                meta["notes"].append(f"attempt {meta['attempts']}: worker {previous} was lost; {self.name} resumed "
                                     f"from step {step}")
            else:
                meta["notes"].append(f"attempt {meta['attempts']}: worker {previous} was lost; {self.name} ran the "
                                     "job again from the start")
        record.state, record.started = JobState.RUNNING, record.started or time.time()
        if resumed:
            record.progress.message = f"resuming from step {resumed} on {self.name}"
        active = _Active(record)
        self._save(envelope, record)
        result, failure = None, None
        if self.store.cancel_requested(record.id):
            failure = Cancelled("Cancelled before it started.")
        else:
            with self._guard(record.id, active):
                result, failure = self._call(record, params, active)
        return self._end(envelope, record, active, result, failure, resumed)

    def _call(self, record: JobRecord, params: dict, active: _Active):
        try:
            entry = self.entry(record.kind)
            typed = entry.parse(params) if entry.parse is not None else params
            # Inside the WebUI a GPU job holds the host's queue lock, as the embedded queue's jobs do.
            gpu = self.ctx.gpu_lock() if self.ctx.gpu_lock is not None and entry.gpu else contextlib.nullcontext()
            with gpu:
                result = entry.operation(typed, JobContext(self, active))  # type: ignore[arg-type]
            if result is not None and not isinstance(result, dict):
                raise TypeError(f"the {record.kind!r} operation returned {type(result).__name__}, not a dict")
            return result, None
        except BaseException as exc:  # noqa: BLE001 - every end of a job is recorded, interrupts included
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return None, exc

    def _end(self, envelope, record: JobRecord, active: _Active, result, failure, resumed) -> str:
        if record.id in self._lost:  # the worker that holds the job now records its end
            self._lost.discard(record.id)
            return "lost"
        if not self.store.finish_once(record.id):
            return "ended elsewhere"
        meta = envelope["meta"]
        record.finished = time.time()
        if active.cancel_event.is_set() or isinstance(failure, Cancelled):
            record.state = JobState.CANCELLED
            record.error = (failure if isinstance(failure, Cancelled) else Cancelled("The job was cancelled.")).to_dict()
        elif failure is not None:
            record.state, record.error = JobState.FAILED, self._error(record, failure)
        else:
            record.state, record.result = JobState.SUCCEEDED, dict(result or {})
            record.result["distributed"] = {"worker": self.name, "attempts": meta["attempts"],
                                            "resumed_from_step": resumed, "notes": list(meta["notes"])}
            record.progress.fraction, record.progress.eta_seconds = 1.0, 0.0
        if record.state is not JobState.SUCCEEDED:
            record.progress.eta_seconds = None
        self._save(envelope, record)
        self.store.drop_running(record.id)
        return record.state.value

    def _error(self, record: JobRecord, exc: BaseException) -> dict:
        error = _error_dict(exc)
        if is_bug(exc):
            log.error("EasyPhoto: job %s (%s) failed on worker %s", record.id, record.kind, self.name, exc_info=exc)
            with contextlib.suppress(Exception):
                from easyphoto.bugreport import bug_report

                error["report"] = bug_report(exc, kind=record.kind, params=record.params, host=self.ctx.host)
        return error

    def _save(self, envelope: dict, record: JobRecord) -> None:
        with self._lock:
            envelope["record"] = record.to_dict()
            self._envelope = envelope
            self.store.save(envelope)

    # ------------------------------------------------------------------ lease and cancel, while a job runs

    @contextlib.contextmanager
    def _guard(self, job_id: str, active: _Active):
        stop = threading.Event()
        thread = threading.Thread(target=self._watch, args=(job_id, active, stop), name="easyphoto-lease",
                                  daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)

    def _watch(self, job_id: str, active: _Active, stop: threading.Event) -> None:
        renew_every, last_renew = self.lease_ms / 3000, time.monotonic()
        while not stop.wait(POLL_S):
            try:
                if not active.cancel_event.is_set() and self.store.cancel_requested(job_id):
                    self._cancel(active, "a cancel was requested")
                if time.monotonic() - last_renew >= renew_every:
                    last_renew = time.monotonic()
                    if not self.store.renew(job_id, self.name, self.lease_ms) and \
                            not self.store.claim(job_id, self.name, self.lease_ms):
                        self._lost.add(job_id)
                        self._cancel(active, f"worker {self.name} lost the job to {self.store.lease_holder(job_id)}")
            except QueueUnavailable as exc:  # Redis restarting: the job goes on; the lease is renewed once it is back
                log.warning("EasyPhoto worker %s: %s", self.name, exc.message)

    def _cancel(self, active: _Active, why: str) -> None:
        log.info("EasyPhoto worker %s: stopping job %s (%s)", self.name, active.record.id, why)
        with self._lock:
            callbacks = active.request_cancel()
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()

    # ------------------------------------------------------------------ JobContext's hooks (JobQueue's names)

    def _progress(self, active: _Active, phase, fraction, message, step, total, preview) -> None:
        if update_progress(active, phase, fraction, message, step, total, preview):
            self._save_quietly(active.record)

    def _resumable(self, active: _Active, step: int) -> None:
        active.record.progress.resumable_step = int(step)
        self._save_quietly(active.record)

    def _add_cancel_callback(self, active: _Active, callback) -> bool:
        with self._lock:
            return active.add_callback(callback)

    def _save_quietly(self, record: JobRecord) -> None:
        if self._envelope is None or record.state is not JobState.RUNNING:
            return
        try:
            self._save(self._envelope, record)
        except QueueUnavailable as exc:
            log.warning("EasyPhoto worker %s: progress not saved (%s)", self.name, exc.message)

    # ------------------------------------------------------------------ lost workers' jobs

    def requeue_lost(self) -> list[str]:
        """Re-queue the jobs whose lease stayed expired for half a lease time; returns their ids."""
        requeued, now = [], time.monotonic()
        for job_id in self.store.running_ids():
            if self.store.lease_holder(job_id) is not None:
                self._suspects.pop(job_id, None)
                continue
            envelope = self.store.load(job_id)
            if envelope is None or JobState(envelope["record"]["state"]) in FINAL_STATES:
                self.store.drop_running(job_id)
                continue
            first = self._suspects.setdefault(job_id, now)
            if now - first < self.lease_ms / 2000:
                continue
            self._suspects.pop(job_id, None)
            if self.store.requeue_once(job_id, envelope["meta"]["attempts"]):
                record = JobRecord.from_dict(envelope["record"])
                record.state = JobState.QUEUED
                record.progress.message = f"worker {envelope['meta'].get('worker')} was lost; queued again"
                envelope["record"] = record.to_dict()
                self.store.save(envelope)
                self.store.drop_running(job_id)
                celery_app.send(self.app, job_id, envelope["meta"].get("queue") or celery_app.GPU_QUEUE)
                log.warning("EasyPhoto worker %s: re-queued job %s of lost worker %s", self.name, job_id,
                            envelope["meta"].get("worker"))
                requeued.append(job_id)
        return requeued

    def _watch_others(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease_ms / 4000):
            try:
                self.requeue_lost()
            except Exception as exc:  # Redis away, a damaged record: try again at the next round
                log.warning("EasyPhoto worker %s: could not check for lost jobs (%s)", self.name, exc)

    # ------------------------------------------------------------------ running

    def serve(self, queues: list[str]) -> None:
        """Consume `queues` until stopped (Ctrl+C / SIGTERM, or `stop()` from another thread): solo pool, one job
        at a time. Runs in a thread too (the WebUI's worker), where Celery leaves the signal handlers alone."""
        self._stopping = threading.Event()
        watcher = threading.Thread(target=self._watch_others, args=(self._stopping,), name="easyphoto-watch",
                                   daemon=True)
        watcher.start()
        self._controller = self.app.Worker(pool="solo", concurrency=1, loglevel="INFO", queues=queues,
                                           hostname=f"{self.name}@{socket.gethostname()}", without_gossip=True,
                                           without_mingle=True)
        try:
            self._controller.start()
        finally:
            self._stopping.set()

    def stop(self) -> None:
        """End `serve` (after the job in hand, if any)."""
        controller = getattr(self, "_controller", None)
        if controller is not None:
            controller.stop(in_sighandler=False)
