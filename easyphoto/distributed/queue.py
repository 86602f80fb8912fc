"""DistributedQueue: the job queue interface (easyphoto.jobs.JobQueue's) over Redis and Celery.

The API server, the UI and the CLI use it exactly as they use the in-process queue: `submit` validates the
parameters with the kind's parser, writes the QUEUED record to Redis and sends the Celery task; `get`/`list`/`wait`
read the records the workers update; `cancel` ends a queued job at once (its task later finds it ended and does
nothing) and sets the cancel flag a running job's worker polls.
"""

from __future__ import annotations

import contextlib
import copy
import time
import uuid
from typing import Any

from easyphoto.distributed import celery_app
from easyphoto.distributed.redis_jobs import QueueUnavailable, RedisJobs, envelope_of, redacted
from easyphoto.errors import Cancelled
from easyphoto.jobs import (
    _JOB_ID_RE,
    FINAL_STATES,
    JobFinished,
    JobNotFound,
    JobRecord,
    JobState,
    UnknownJobKind,
    _Kind,
    _make_label,
    _typed_params,
    job_state,
)

WAIT_POLL_S = 0.1


class KindRegistry:
    """The operations by kind, as JobQueue.register keeps them (operations.register_operations fills it)."""

    def __init__(self):
        self._ops: dict[str, _Kind] = {}

    def register(self, kind: str, operation, *, label=None, gpu: bool = True, params=None) -> None:
        if not isinstance(kind, str) or not kind:
            raise ValueError("a job kind must be a non-empty string")
        self._ops[kind] = _Kind(operation, label, bool(gpu), params)

    def needs_gpu(self, kind: str) -> bool:
        entry = self._ops.get(kind)
        return True if entry is None else entry.gpu

    def kinds(self) -> list[str]:
        return sorted(self._ops)

    def entry(self, kind: str) -> _Kind:
        entry = self._ops.get(kind)
        if entry is None:
            raise UnknownJobKind(
                f"No operation is registered for job kind {str(kind)[:80]!r} (registered: "
                f"{', '.join(self.kinds()) or 'none'}).",
                hint="This EasyPhoto install cannot run it; check the kind, or install the missing part.",
            )
        return entry


class DistributedQueue(KindRegistry):
    def __init__(self, jobs_dir, broker: str, *, history: int = 1000, namespace: str = "easyphoto"):
        super().__init__()
        self.jobs_dir, self.broker, self.history = jobs_dir, broker, history
        self.store = RedisJobs(broker, namespace)
        self.app = celery_app.make_app(broker)

    def start(self) -> None:
        """Nothing to start here: the workers run the jobs."""

    def shutdown(self, **_ignored) -> None:
        """Jobs keep running on the workers; only this process's connections close."""
        self.store.client.close()

    def submit(self, kind: str, params: Any) -> JobRecord:
        entry = self.entry(kind)
        typed, params = _typed_params(entry.parse, params)
        record = JobRecord(id=uuid.uuid4().hex, kind=kind, state=JobState.QUEUED, created=time.time(), params=params)
        record.label = _make_label(entry.label, params if typed is None else typed, kind)
        queue = celery_app.route(kind, params, entry.gpu)
        self.store.add(envelope_of(record.to_dict(), queue=queue), record.created)
        try:
            celery_app.send(self.app, record.id, queue)
        except Exception as exc:  # kombu's OperationalError and friends: the broker went away between the calls
            with contextlib.suppress(QueueUnavailable):
                self.store.forget(record.id)
            raise QueueUnavailable(
                f"The job could not be queued: the broker at {redacted(self.store.url)} did not take it "
                f"({type(exc).__name__}: {exc}).",
                hint="Start Redis again (or check the broker address), then submit the job again.",
            ) from exc
        self._prune()
        return record

    def get(self, job_id: str) -> JobRecord:
        return JobRecord.from_dict(self._envelope(job_id)["record"])

    def meta(self, job_id: str) -> dict:
        """Where and how often the job ran: worker, attempts, notes (a redelivery says so)."""
        return dict(self._envelope(job_id)["meta"])

    def list(self, *, state: JobState | str | None = None, kind: str | None = None, limit: int = 100) -> list:
        wanted = job_state(state)
        scan = self.store.newest_ids(limit if wanted is None and kind is None else self.history)
        records = [JobRecord.from_dict(e["record"]) for e in self.store.load_many(scan)]
        chosen = [r for r in records if (wanted is None or r.state is wanted) and (kind is None or r.kind == kind)]
        return chosen[: max(0, limit)]

    def cancel(self, job_id: str) -> JobRecord:
        envelope = self._envelope(job_id)
        record = JobRecord.from_dict(envelope["record"])
        if record.state in FINAL_STATES:
            raise JobFinished(f"Job {record.id} already ended ({record.state.value}); there is nothing to cancel.",
                              hint="Only queued or running jobs can be cancelled.")
        self.store.request_cancel(job_id)
        if record.state is JobState.QUEUED and self.store.finish_once(job_id):
            record.state, record.finished = JobState.CANCELLED, time.time()
            record.error = Cancelled("Cancelled before it started.").to_dict()
            envelope["record"] = record.to_dict()
            self.store.save(envelope)
        return copy.deepcopy(record)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.get(job_id)
            if record.state in FINAL_STATES or (deadline is not None and time.monotonic() >= deadline):
                return record
            time.sleep(WAIT_POLL_S)

    def _envelope(self, job_id: object) -> dict:
        if not isinstance(job_id, str) or not _JOB_ID_RE.fullmatch(job_id):
            raise JobNotFound(f"{str(job_id)[:40]!r} is not a job id.",
                              hint="Job ids are 32 lowercase hex digits, as returned by submit.")
        envelope = self.store.load(job_id)
        if envelope is None:
            raise JobNotFound(f"No job {job_id}.",
                              hint=f"It may have been dropped from the history (the last {self.history} are kept).")
        return envelope

    def _prune(self) -> None:
        """Forget the oldest final records beyond `history` (queued and running ones are never dropped)."""
        excess = self.store.count() - self.history
        if excess <= 0:
            return
        for envelope in self.store.load_many(self.store.oldest_ids(excess)):
            if JobState(envelope["record"]["state"]) in FINAL_STATES:
                self.store.forget(envelope["record"]["id"])
