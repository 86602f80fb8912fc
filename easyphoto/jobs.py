"""The job queue: one worker thread runs EasyPhoto's long work (training, generation) one job at a time.

GPU work is serial, so there is exactly one worker. Inside the WebUI the host passes its own queue lock as
`gpu_lock`; each job kind declares whether it needs the GPU (`register(..., gpu=...)`), and only those run while
holding that lock, so training and portraits never overlap a txt2img request, while photo checks and downloads
never block one.

    queue = JobQueue(paths.jobs_dir, gpu_lock=webui.host_queue_lock)
    queue.register("train", train_operation, label=lambda p: f"train {p['identity']}", gpu=True)
    record = queue.submit("train", {"identity": "alice"})
    queue.get(record.id).progress          # phase, fraction, ETA, message, latest preview
    queue.cancel(record.id)

An operation is `operation(params, ctx) -> dict | None`. A kind registered with `params=parse` gets its typed
parameters: `parse` validates what submit receives (a dict, or the typed value itself) once, at submit, and the
record stores the typed value's `to_dict()`; other kinds get the JSON dict. It reports with `ctx.progress(...)`, polls
`ctx.check_cancelled()` (raises `Cancelled`) and, when its work happens elsewhere (a child process),
registers `ctx.on_cancel(callback)` to stop that work when a cancel is requested.

Every state change is written atomically to `<jobs_dir>/<id>.json`, so a new queue on the same folder (after a
restart or a crash) shows what happened: final records as they were, and jobs that were queued or running
marked FAILED "interrupted" (naming the step to resume from when the job recorded one with
`ctx.resumable(step)`). At most `history` final records are kept; older ones are deleted with their
work folders. Queued and running jobs are never deleted.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from easyphoto.errors import Cancelled, EasyPhotoError
from easyphoto.store import atomic_write_json, read_json

log = logging.getLogger("easyphoto")

PERSIST_INTERVAL = 0.5  # seconds between progress writes to disk (phase changes and state changes always write)
_JOB_ID_RE = re.compile(r"[0-9a-f]{32}")


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


# ---------------------------------------------------------------------------------------------- errors


class JobNotFound(EasyPhotoError):
    phase = "job"
    http_status = 404


class JobFinished(EasyPhotoError):
    """The job is already in a final state (e.g. cancel of a finished job)."""

    phase = "job"
    http_status = 409


class UnknownJobKind(EasyPhotoError):
    phase = "job"
    http_status = 501


class InvalidJobParams(EasyPhotoError):
    phase = "job"
    http_status = 422


class QueueStopped(EasyPhotoError):
    """submit() after shutdown()."""

    phase = "job"
    http_status = 503


class Interrupted(EasyPhotoError):
    """The error recorded for a job that was queued or running when EasyPhoto stopped."""

    phase = "job"
    http_status = 500


# ---------------------------------------------------------------------------------------------- records


@dataclass
class JobProgress:
    phase: str = ""
    fraction: float = 0.0  # of the whole job, 0..1, never decreases
    message: str = ""
    eta_seconds: float | None = None
    preview: str | None = None  # path of the latest preview image file
    step: int | None = None
    total: int | None = None
    resumable_step: int | None = None  # the last step a resumed job could continue from (JobContext.resumable)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> JobProgress:
        if not isinstance(data, dict):
            raise ValueError("progress must be a JSON object")
        known = {f.name for f in fields(cls)}
        progress = cls(**{k: v for k, v in data.items() if k in known})
        progress.fraction = min(1.0, max(0.0, float(progress.fraction)))
        progress.eta_seconds = _opt_float(progress.eta_seconds)
        progress.resumable_step = None if progress.resumable_step is None else int(progress.resumable_step)
        return progress


@dataclass
class JobRecord:
    id: str
    kind: str
    state: JobState
    created: float
    started: float | None = None
    finished: float | None = None
    params: dict = field(default_factory=dict)
    progress: JobProgress = field(default_factory=JobProgress)
    result: dict | None = None
    error: dict | None = None
    label: str = ""

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "params": copy.deepcopy(self.params),
            "progress": self.progress.to_dict(),
            "result": copy.deepcopy(self.result),
            "error": copy.deepcopy(self.error),
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: dict) -> JobRecord:
        """Rebuild a record from `to_dict()` output; raises ValueError/KeyError/TypeError on a damaged one."""
        if not isinstance(data, dict):
            raise ValueError("a job record must be a JSON object")
        job_id = data["id"]
        if not isinstance(job_id, str) or not _JOB_ID_RE.fullmatch(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        params, result, error = data.get("params") or {}, data.get("result"), data.get("error")
        if not isinstance(params, dict):
            raise ValueError("params must be a JSON object")
        if result is not None and not isinstance(result, dict):
            raise ValueError("result must be a JSON object or null")
        if error is not None and not isinstance(error, dict):
            raise ValueError("error must be a JSON object or null")
        return cls(
            id=job_id,
            kind=str(data["kind"]),
            state=JobState(data["state"]),
            created=float(data["created"]),
            started=_opt_float(data.get("started")),
            finished=_opt_float(data.get("finished")),
            params=params,
            progress=JobProgress.from_dict(data.get("progress") or {}),
            result=result,
            error=error,
            label=str(data.get("label") or ""),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------------------------------------- operations

Operation = Callable[[Any, "JobContext"], "dict | None"]
# dict (or the typed value) in, typed parameters with to_dict() out; raises an EasyPhotoError when they are invalid
ParamsParser = Callable[[Any], Any]


@dataclass(frozen=True)
class _Kind:
    operation: Operation
    label: Callable[[Any], str] | None
    gpu: bool  # runs under the host's GPU lock (the WebUI's queue lock)
    parse: ParamsParser | None = None


class _Active:
    """Book-keeping of the running job (guarded by the queue's lock)."""

    def __init__(self, record: JobRecord):
        self.record = record
        self.cancel_event = threading.Event()
        self.callbacks: list[Callable[[], Any]] = []
        self.t0 = time.monotonic()
        self.last_persist = self.t0

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        """Store a cancel callback; True when the cancel was already requested (the caller then calls it at once).
        Callers hold their queue's lock."""
        if self.cancel_event.is_set():
            return True
        self.callbacks.append(callback)
        return False

    def request_cancel(self) -> list[Callable[[], Any]]:
        """Set the flag; return the callbacks to call now (each is called once)."""
        self.cancel_event.set()
        callbacks, self.callbacks = self.callbacks, []
        return callbacks


class JobContext:
    """What an operation receives: progress reporting, cancellation, and a folder for its files."""

    def __init__(self, queue: JobQueue, active: _Active):
        self._queue = queue
        self._active = active
        self.job_id = active.record.id

    def progress(
        self,
        *,
        phase: str | None = None,
        fraction: float | None = None,
        message: str | None = None,
        step: int | None = None,
        total: int | None = None,
        preview: str | Path | None = None,
    ) -> None:
        """Update the job's progress; None leaves a field as it is.

        `fraction` is of the whole job: clamped to [0, 1] and never lowered (a smaller value is ignored).
        `step`/`total` are informative only (e.g. the training step); they do not set the fraction.
        """
        self._queue._progress(self._active, phase, fraction, message, step, total, preview)

    @property
    def cancelled(self) -> bool:
        return self._active.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self._active.cancel_event.is_set():
            raise Cancelled("The job was cancelled.", hint="Submit it again to run it.")

    def resumable(self, step: int) -> None:
        """Record that the job could continue from `step` if it stopped now (e.g. the last saved checkpoint).

        Written to disk at once, so a killed process (kill -9, power loss) still leaves the step in the record,
        and the next queue's "interrupted" message names it."""
        self._queue._resumable(self._active, step)

    def on_cancel(self, callback: Callable[[], Any]) -> None:
        """Call `callback()` once when a cancel is requested (at once if it already was).

        It runs in the thread that calls `JobQueue.cancel()`, so it must be quick (e.g. kill a child process).
        """
        if self._queue._add_cancel_callback(self._active, callback):
            _call_quietly(callback, self.job_id)

    @property
    def work_dir(self) -> Path:
        """`<jobs_dir>/<id>/`: previews and result files; deleted with the record when history is pruned."""
        folder = self._queue.jobs_dir / self.job_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _call_quietly(callback: Callable[[], Any], job_id: str) -> None:
    try:
        callback()
    except Exception:
        log.exception("EasyPhoto: a cancel callback of job %s failed", job_id)


# ---------------------------------------------------------------------------------------------- the queue


class JobQueue:
    def __init__(
        self,
        jobs_dir: Path | str,
        *,
        history: int = 200,
        gpu_lock: Callable[[], AbstractContextManager] | None = None,
        start: bool = True,
        host: Any = None,
    ):
        if history < 1:
            raise ValueError("history must be at least 1")
        self.jobs_dir = Path(jobs_dir)
        self.history = history
        self._gpu_lock = gpu_lock
        self._host = host  # HostInfo (or its dict) named in bug reports; None: "unknown"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every state change
        self._jobs: dict[str, JobRecord] = {}  # in creation order
        self._pending: deque[str] = deque()
        self._active: _Active | None = None
        self._ops: dict[str, _Kind] = {}
        self._typed: dict[str, Any] = {}  # job id -> typed params of a job not started yet (validated at submit)
        self._stopping = False
        self._thread: threading.Thread | None = None
        with self._lock:
            self._load()
        if start:
            self.start()

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the worker thread (done by the constructor unless start=False); a no-op if it runs."""
        with self._lock:
            if self._stopping:
                raise QueueStopped("The job queue was shut down.", hint="Create a new JobQueue.")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._worker, name="easyphoto-jobs", daemon=True)
            self._thread.start()

    def register(
        self,
        kind: str,
        operation: Operation,
        *,
        label: Callable[[Any], str] | None = None,
        gpu: bool = True,
        params: ParamsParser | None = None,
    ) -> None:
        """Register `operation` for `kind`. `gpu`: whether it needs the GPU, i.e. must hold the host's GPU lock
        while it runs (True, the safe default, for anything that may load a model on the GPU). `params`: the
        parser of the kind's typed parameters (see the module docstring); `label` receives what it returns."""
        if not isinstance(kind, str) or not kind:
            raise ValueError("a job kind must be a non-empty string")
        with self._lock:
            self._ops[kind] = _Kind(operation, label, bool(gpu), params)

    def needs_gpu(self, kind: str) -> bool:
        with self._lock:
            entry = self._ops.get(kind)
            return True if entry is None else entry.gpu

    def kinds(self) -> list[str]:
        with self._lock:
            return sorted(self._ops)

    def submit(self, kind: str, params: Any) -> JobRecord:
        """Queue a job; `params` is a JSON-able dict, or the kind's typed parameters (validated here, once)."""
        with self._lock:
            entry = self._ops.get(kind)
            registered = sorted(self._ops)
        if entry is None:
            names = ", ".join(registered) or "none"
            raise UnknownJobKind(
                f"No operation is registered for job kind {str(kind)[:80]!r} (registered: {names}).",
                hint="This EasyPhoto install cannot run it; check the kind, or install the missing part.",
            )
        typed, params = _typed_params(entry.parse, params)
        record = JobRecord(id=uuid.uuid4().hex, kind=kind, state=JobState.QUEUED, created=time.time(), params=params)
        record.label = _make_label(entry.label, params if typed is None else typed, kind)
        with self._lock:
            if self._stopping:
                raise QueueStopped(
                    "EasyPhoto is shutting down; no new jobs are accepted.", hint="Try again after it restarts."
                )
            self._persist(record, strict=True)
            self._jobs[record.id] = record
            if typed is not None:  # a copy: the caller may go on changing its own object
                self._typed[record.id] = copy.deepcopy(typed)
            self._pending.append(record.id)
            self._changed.notify_all()
            return copy.deepcopy(record)

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            return copy.deepcopy(self._find(job_id))

    def list(
        self, *, state: JobState | str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Records, newest first."""
        wanted = job_state(state)
        with self._lock:
            records = [
                r
                for r in reversed(self._jobs.values())  # insertion order = creation order, also on equal timestamps
                if (wanted is None or r.state is wanted) and (kind is None or r.kind == kind)
            ]
            records.sort(key=lambda r: r.created, reverse=True)  # stable: ties keep newest-first insertion order
            return [copy.deepcopy(r) for r in records[: max(0, limit)]]

    def cancel(self, job_id: str) -> JobRecord:
        """Queued: CANCELLED at once. Running: flag set and on_cancel callbacks called; the job ends CANCELLED
        when its operation raises Cancelled or returns (the result is then discarded). Final: JobFinished."""
        callbacks: list[Callable[[], Any]] = []
        with self._lock:
            record = self._find(job_id)
            if record.state in FINAL_STATES:
                raise JobFinished(
                    f"Job {record.id} already ended ({record.state.value}); there is nothing to cancel.",
                    hint="Only queued or running jobs can be cancelled.",
                )
            if record.state is JobState.QUEUED:
                self._finish(record, JobState.CANCELLED, error=Cancelled("Cancelled before it started.").to_dict())
                try:
                    self._pending.remove(record.id)
                except ValueError:
                    pass  # the worker already took it and is waiting for the GPU lock; it will skip it
            elif self._active is not None and self._active.record is record:
                callbacks = self._active.request_cancel()
            snapshot = copy.deepcopy(record)
        for callback in callbacks:
            _call_quietly(callback, snapshot.id)
        return snapshot

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job is final or `timeout` seconds passed; returns the record either way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            record = self._find(job_id)  # the object stays valid even if history pruning drops it from the table
            while record.state not in FINAL_STATES:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining)
            return copy.deepcopy(record)

    def shutdown(self, *, cancel_running: bool = True, timeout: float = 10) -> None:
        """Stop accepting jobs; queued ones become FAILED "interrupted" (as after a restart); cancel the running
        one if asked; wait up to `timeout` s for the worker. A job still running then stays RUNNING on disk and
        is marked interrupted by the next queue on this folder."""
        callbacks: list[Callable[[], Any]] = []
        with self._lock:
            self._stopping = True
            for record in list(self._jobs.values()):
                if record.state is JobState.QUEUED:
                    self._finish(record, JobState.FAILED, error=_interrupted_error(JobState.QUEUED))
            self._pending.clear()
            if cancel_running and self._active is not None:
                callbacks = self._active.request_cancel()
            self._changed.notify_all()
            thread = self._thread
        for callback in callbacks:
            _call_quietly(callback, "(shutdown)")
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                with self._lock:
                    running = self._active.record.id if self._active else "?"
                log.warning("EasyPhoto: job %s was still running when the job queue shut down", running)

    # ------------------------------------------------------------------ worker

    def _worker(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                job_id = self._pending.popleft()
            try:
                self._run(job_id)
            except (KeyboardInterrupt, SystemExit):
                if self._stopping:
                    raise
                log.exception("EasyPhoto: job %s was interrupted; the job queue keeps running", job_id)
            except Exception:  # a bug in the queue itself: log it, never let the worker die
                log.exception("EasyPhoto: internal error of the job queue while running job %s", job_id)

    def _run(self, job_id: str) -> None:
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or record.state is not JobState.QUEUED:
                return
            entry = self._ops.get(record.kind)
        operation = entry.operation if entry is not None else None
        try:
            # Only kinds that need the GPU take the host's lock: a photo check must not block the WebUI's txt2img.
            needs_lock = self._gpu_lock is not None and (entry is None or entry.gpu)
            gpu = self._gpu_lock() if needs_lock else nullcontext()
            with gpu:
                with self._lock:
                    if record.state is not JobState.QUEUED or self._stopping:
                        return  # cancelled (or shut down) while waiting for the GPU lock
                    record.state = JobState.RUNNING
                    record.started = time.time()
                    active = self._active = _Active(record)
                    typed = self._typed.pop(record.id, None)
                    self._persist(record)
                    self._changed.notify_all()
                self._execute(operation, record, active, typed)
        except BaseException as exc:  # the GPU lock failed, or a bug above: the job must still end
            error = self._failure_error(record, exc)
            with self._lock:
                if record.state not in FINAL_STATES:
                    self._finish(record, JobState.FAILED, error=error)
                self._active = None
            raise

    def _execute(self, operation: Operation | None, record: JobRecord, active: _Active, typed: Any = None) -> None:
        result: Any = None
        failure: BaseException | None = None
        try:
            if operation is None:
                raise UnknownJobKind(f"No operation is registered for job kind {record.kind!r}.")
            params = copy.deepcopy(record.params) if typed is None else typed
            result = operation(params, JobContext(self, active))
            if result is not None and not isinstance(result, dict):
                raise TypeError(f"the {record.kind!r} operation returned {type(result).__name__}, not a dict")
            if result is not None:
                result = json.loads(json.dumps(result, allow_nan=False))
        except BaseException as exc:
            failure = exc
        # Built before taking the lock: reading package metadata for a bug report must not stall get()/list().
        error = None if failure is None or isinstance(failure, Cancelled) else self._failure_error(record, failure)
        with self._lock:
            self._active = None
            if active.cancel_event.is_set() or isinstance(failure, Cancelled):
                if failure is not None and not isinstance(failure, Cancelled):
                    log.debug("EasyPhoto: job %s ended with %r after a cancel", record.id, failure)
                error = failure if isinstance(failure, Cancelled) else Cancelled("The job was cancelled.")
                self._finish(record, JobState.CANCELLED, error=error.to_dict())
            elif failure is not None:
                if is_bug(failure):
                    log.error("EasyPhoto: job %s (%s) failed", record.id, record.kind, exc_info=failure)
                self._finish(record, JobState.FAILED, error=error)
            else:
                record.progress.fraction = 1.0
                record.progress.eta_seconds = 0.0
                self._finish(record, JobState.SUCCEEDED, result=result)
        if isinstance(failure, KeyboardInterrupt | SystemExit) and self._stopping:
            raise failure

    def _failure_error(self, record: JobRecord, exc: BaseException) -> dict:
        """The record's error for `exc`; a bug (an Exception that is not an EasyPhotoError) also gets a report
        (versions, host, kind, params, traceback) for the user to paste into an issue. Interruptions
        (KeyboardInterrupt, SystemExit) and user-actionable errors get none."""
        error = _error_dict(exc)
        if is_bug(exc):
            try:
                from easyphoto.bugreport import bug_report  # light, but only needed when something broke

                error["report"] = bug_report(exc, kind=record.kind, params=record.params, host=self._host)
                error["hint"] = ("this is a bug: please report it with this job's bug report (versions, settings, "
                                 "traceback).")
            except Exception:  # the report is a courtesy: it must never stop the job from ending
                log.exception("EasyPhoto: could not build the bug report of job %s", record.id)
        return error

    def _progress(self, active: _Active, phase, fraction, message, step, total, preview) -> None:
        with self._lock:
            record = active.record
            if record.state is not JobState.RUNNING:
                return
            if update_progress(active, phase, fraction, message, step, total, preview):
                self._persist(record)

    def _resumable(self, active: _Active, step: int) -> None:
        with self._lock:
            record = active.record
            if record.state is not JobState.RUNNING:
                return
            record.progress.resumable_step = int(step)
            active.last_persist = time.monotonic()
            self._persist(record)

    def _add_cancel_callback(self, active: _Active, callback: Callable[[], Any]) -> bool:
        """Store the callback; True when the cancel was already requested (the caller then calls it at once)."""
        with self._lock:
            return active.add_callback(callback)

    # ------------------------------------------------------------------ table and disk (callers hold the lock)

    def _find(self, job_id: object) -> JobRecord:
        if not isinstance(job_id, str) or not _JOB_ID_RE.fullmatch(job_id):
            shown = repr(job_id)[:40] + ("…" if len(repr(job_id)) > 40 else "")
            raise JobNotFound(
                f"{shown} is not a job id.", hint="Job ids are 32 lowercase hex digits, as returned by submit."
            )
        record = self._jobs.get(job_id)
        if record is None:
            raise JobNotFound(
                f"No job {job_id}.",
                hint=f"It may have been dropped from the history (the last {self.history} are kept).",
            )
        return record

    def _finish(self, record: JobRecord, state: JobState, *, result: dict | None = None, error: dict | None = None):
        self._typed.pop(record.id, None)  # a queued job cancelled or interrupted never runs
        record.state = state
        record.finished = time.time()
        record.result = result
        record.error = error
        if state is not JobState.SUCCEEDED:
            record.progress.eta_seconds = None
        self._persist(record)
        self._prune()
        self._changed.notify_all()

    def _path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def _persist(self, record: JobRecord, *, strict: bool = False) -> None:
        try:
            atomic_write_json(self._path(record.id), record.to_dict())
        except (OSError, TypeError, ValueError) as exc:
            if strict:
                raise EasyPhotoError(
                    f"Could not save job record {self._path(record.id)}: {exc}",
                    hint="Check that the EasyPhoto data folder is writable and the disk is not full.",
                    phase="job",
                ) from exc
            log.warning("EasyPhoto: could not save job record %s (%s)", self._path(record.id), exc)

    def _prune(self) -> None:
        final = [r for r in self._jobs.values() if r.state in FINAL_STATES]
        excess = len(final) - self.history
        if excess <= 0:
            return
        final.sort(key=lambda r: r.finished or r.created)  # stable: ties keep creation order
        for record in final[:excess]:
            del self._jobs[record.id]
            try:
                self._path(record.id).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("EasyPhoto: could not delete old job record %s (%s)", self._path(record.id), exc)
            work_dir = self.jobs_dir / record.id
            if work_dir.is_dir():
                shutil.rmtree(work_dir, ignore_errors=True)

    def _load(self) -> None:
        if not self.jobs_dir.is_dir():
            return
        records: list[JobRecord] = []
        for path in sorted(self.jobs_dir.glob("*.json")):
            if not _JOB_ID_RE.fullmatch(path.stem):
                continue  # not one of ours
            try:
                record = JobRecord.from_dict(read_json(path))
                if record.id != path.stem:
                    raise ValueError(f"it holds job {record.id}")
            except Exception as exc:
                log.warning("EasyPhoto: skipping damaged job record %s (%s); the file is left as it is", path, exc)
                continue
            if record.state in (JobState.QUEUED, JobState.RUNNING):
                was = record.state
                record.state = JobState.FAILED
                record.error = _interrupted_error(was, record.progress.resumable_step)
                record.progress.eta_seconds = None
                try:
                    record.finished = path.stat().st_mtime  # its last write: about when it stopped
                except OSError:
                    record.finished = time.time()
                self._persist(record)
            records.append(record)
        records.sort(key=lambda r: r.created)
        self._jobs = {r.id: r for r in records}
        self._prune()


# ---------------------------------------------------------------------------------------------- helpers


def job_state(state: JobState | str | None) -> JobState | None:
    """A listing's state filter; InvalidJobParams naming the states for an unknown one."""
    try:
        return None if state is None else JobState(state)
    except ValueError:
        raise InvalidJobParams(
            f"Unknown job state {str(state)[:40]!r}.", hint=f"Use one of: {', '.join(s.value for s in JobState)}."
        ) from None


def update_progress(active: _Active, phase, fraction, message, step, total, preview) -> bool:
    """Apply a JobContext.progress call to the running record (the fraction never decreases; the ETA follows
    from it); True when the record should be saved now (a phase change, or PERSIST_INTERVAL since the last save)."""
    p = active.record.progress
    phase_changed = phase is not None and str(phase) != p.phase
    if phase is not None:
        p.phase = str(phase)
    if message is not None:
        p.message = str(message)
    if step is not None:
        p.step = int(step)
    if total is not None:
        p.total = int(total)
    if preview is not None:
        p.preview = str(preview)
    if fraction is not None:
        value = float(fraction)
        if math.isfinite(value):
            p.fraction = max(p.fraction, min(1.0, max(0.0, value)))
    now = time.monotonic()
    if p.fraction <= 0:
        p.eta_seconds = None
    elif p.fraction >= 1:
        p.eta_seconds = 0.0
    else:
        p.eta_seconds = round((now - active.t0) * (1 - p.fraction) / p.fraction, 1)
    if phase_changed or now - active.last_persist >= PERSIST_INTERVAL:
        active.last_persist = now
        return True
    return False


def _interrupted_error(state: JobState, resumable_step: int | None = None) -> dict:
    message = f"interrupted: EasyPhoto stopped while this job was {state.value}"
    if not resumable_step:
        return Interrupted(message, hint="Submit the job again to run it.").to_dict()
    return Interrupted(
        f"{message}; resume from step {resumable_step} with resume: true / --resume",
        hint=f"Submit it again with resume (API \"resume\": true, CLI --resume, or the Train tab's Resume box) to "
        f"continue from step {resumable_step}; without resume it starts over.",
    ).to_dict()


def is_bug(exc: BaseException) -> bool:
    """A bug: an Exception that is not an EasyPhotoError, or an EasyPhotoError that carries a bug from another
    process (`exc.bug`: the details the training child sent, see easyphoto.bugreport.process_details)."""
    if not isinstance(exc, Exception):
        return False
    return not isinstance(exc, EasyPhotoError) or isinstance(getattr(exc, "bug", None), dict)


def _typed_params(parse: ParamsParser | None, params: Any) -> tuple[Any, dict]:
    """(typed params or None, the JSON dict the record stores). A typed value without a parser (a kind registered
    without one, e.g. by a test) is passed on as it is."""
    if parse is not None:
        params = parse(params)
    if not isinstance(params, dict) and callable(getattr(params, "to_dict", None)):
        return params, _json_params(params.to_dict())
    return None, _json_params(params)


def _error_dict(exc: BaseException) -> dict:
    if isinstance(exc, EasyPhotoError):
        try:
            data = exc.to_dict()
            json.dumps(data, allow_nan=False)
            return data
        except (TypeError, ValueError):
            return EasyPhotoError.to_dict(exc)
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
        return {
            "error": type(exc).__name__,
            "phase": "job",
            "message": f"interrupted ({type(exc).__name__}) {exc}".strip(),
            "hint": "Submit the job again to run it.",
        }
    return {
        "error": type(exc).__name__,
        "phase": "job",
        "message": str(exc) or type(exc).__name__,
        "hint": "this is a bug: please report it with the EasyPhoto log, which has the full traceback.",
    }


def _make_label(label: Callable[[Any], str] | None, params: Any, kind: str) -> str:
    if label is None:
        return kind
    try:
        return str(label(copy.deepcopy(params)))
    except Exception as exc:
        log.warning("EasyPhoto: the label of a %s job failed (%s)", kind, exc)
        return kind


def _json_params(params: Any) -> dict:
    """A JSON round-tripped copy of `params` (what the job will see after a restart too), or InvalidJobParams."""
    if not isinstance(params, dict):
        raise InvalidJobParams(
            f"Job parameters must be a JSON object, not {type(params).__name__}.", hint="Pass a dict of settings."
        )
    try:
        return json.loads(json.dumps(params, allow_nan=False))
    except (TypeError, ValueError) as exc:
        where, value = _first_bad(params, "")
        raise InvalidJobParams(
            f"Job parameter {where or '(root)'!r} is not JSON-serialisable ({type(value).__name__}: {exc}).",
            hint="Pass plain strings, numbers, booleans, lists and dicts (file paths as strings).",
        ) from None


def _first_bad(value: Any, path: str) -> tuple[str | None, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str | int | float | bool) and key is not None:
                return sub, key
            found = _first_bad(item, sub)
            if found[0] is not None:
                return found
        return None, None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_bad(item, f"{path}[{index}]")
            if found[0] is not None:
                return found
        return None, None
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if value is None or isinstance(value, str | int | float | bool):
        return None, None
    return path, value
