"""Job records, cancel flags, leases and the data-root marker, kept in Redis under one namespace.

    <ns>:job:<id>       the record as JSON: {"record": JobRecord.to_dict(), "meta": {worker, attempts, notes}}
    <ns>:jobs           sorted set of job ids by creation time (listing, newest first)
    <ns>:running        set of the ids a worker holds (what the other workers watch for a lost worker)
    <ns>:lease:<id>     the name of the worker running the job; expires unless that worker renews it
    <ns>:cancel:<id>    a cancel request, polled by the worker running the job
    <ns>:done:<id>      set once, by the first worker to end the job: no job ends twice
    <ns>:requeue:<id>:<n>  set once per lost attempt: one worker re-queues a lost job, not each of them
    <ns>:root           the data root's marker (easyphoto.distributed.worker.check_data_root)

Every Redis failure becomes QueueUnavailable (HTTP 503) naming the broker, so the API answers "queue unavailable"
while Redis restarts and works again as soon as it is back (redis-py reconnects on the next call).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from easyphoto.errors import EasyPhotoError

T = TypeVar("T")
CANCEL_TTL_S = 7 * 24 * 3600
DONE_TTL_S = 30 * 24 * 3600

# Take a free lease and list the job as running; renew the lease only if this worker still holds it; delete it
# only if so.
_CLAIM = ("if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then redis.call('sadd', KEYS[2], ARGV[3]) "
          "return 1 else return 0 end")
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class QueueUnavailable(EasyPhotoError):
    phase = "job"
    http_status = 503


def redacted(url: str) -> str:
    """The broker URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


class RedisJobs:
    def __init__(self, url: str, namespace: str = "easyphoto"):
        try:
            import redis
        except ImportError as exc:
            raise EasyPhotoError("The distributed job queue needs the redis and celery packages.",
                                 hint="pip install 'celery>=5.4,<6' 'redis>=5,<7', or run without --broker.",
                                 phase="job") from exc
        self.url, self.ns = url, namespace
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, retry_on_timeout=False,
                                           health_check_interval=10, decode_responses=True)

    # --- every call goes through here
    def call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except self._errors as exc:
            raise QueueUnavailable(
                f"The job queue (Redis at {redacted(self.url)}) is unavailable: {exc}.",
                hint="Start Redis again (or check the broker address); EasyPhoto reconnects by itself and no "
                "submitted job is lost while Redis keeps its data (appendonly yes).",
            ) from exc

    def key(self, *parts: object) -> str:
        return ":".join([self.ns, *(str(p) for p in parts)])

    def ping(self) -> None:
        self.call(self.client.ping)

    # --- records
    def add(self, envelope: dict, created: float) -> None:
        job_id = envelope["record"]["id"]

        def write():
            with self.client.pipeline() as pipe:
                pipe.set(self.key("job", job_id), json.dumps(envelope))
                pipe.zadd(self.key("jobs"), {job_id: created})
                pipe.execute()

        self.call(write)

    def save(self, envelope: dict) -> None:
        self.call(lambda: self.client.set(self.key("job", envelope["record"]["id"]), json.dumps(envelope)))

    def load(self, job_id: str) -> dict | None:
        raw = self.call(lambda: self.client.get(self.key("job", job_id)))
        return json.loads(raw) if raw else None

    def load_many(self, job_ids: Iterable[str]) -> list[dict]:
        ids = list(job_ids)
        if not ids:
            return []
        raws = self.call(lambda: self.client.mget([self.key("job", i) for i in ids]))
        return [json.loads(raw) for raw in raws if raw]

    def newest_ids(self, limit: int) -> list[str]:
        return self.call(lambda: self.client.zrevrange(self.key("jobs"), 0, max(limit, 1) - 1))

    def count(self) -> int:
        return int(self.call(lambda: self.client.zcard(self.key("jobs"))))

    def oldest_ids(self, count: int) -> list[str]:
        return self.call(lambda: self.client.zrange(self.key("jobs"), 0, max(count, 1) - 1))

    def forget(self, job_id: str) -> None:
        def delete():
            with self.client.pipeline() as pipe:
                pipe.delete(self.key("job", job_id), self.key("cancel", job_id))
                pipe.zrem(self.key("jobs"), job_id)
                pipe.execute()

        self.call(delete)

    # --- cancel flags
    def request_cancel(self, job_id: str) -> None:
        self.call(lambda: self.client.set(self.key("cancel", job_id), "1", ex=CANCEL_TTL_S))

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.call(lambda: self.client.exists(self.key("cancel", job_id))))

    # --- leases: who runs a job, for as long as it keeps renewing
    def claim(self, job_id: str, worker: str, ttl_ms: int) -> bool:
        """Take the job's lease if nobody holds it, and list the job as running, in one step (a worker dying in
        between must not leave a lease that no watcher knows of)."""
        keys = (self.key("lease", job_id), self.key("running"))
        return bool(self.call(lambda: self.client.eval(_CLAIM, 2, *keys, worker, ttl_ms, job_id)))

    def renew(self, job_id: str, worker: str, ttl_ms: int) -> bool:
        """Extend this worker's lease; False when it lost it (expired, or another worker holds it now)."""
        return bool(self.call(lambda: self.client.eval(_RENEW, 1, self.key("lease", job_id), worker, ttl_ms)))

    def release(self, job_id: str, worker: str) -> None:
        def drop():
            self.client.eval(_RELEASE, 1, self.key("lease", job_id), worker)
            self.client.srem(self.key("running"), job_id)

        self.call(drop)

    def lease_holder(self, job_id: str) -> str | None:
        return self.call(lambda: self.client.get(self.key("lease", job_id)))

    def running_ids(self) -> list[str]:
        return sorted(self.call(lambda: self.client.smembers(self.key("running"))))

    def drop_running(self, job_id: str) -> None:
        self.call(lambda: self.client.srem(self.key("running"), job_id))

    # --- exactly-once markers
    def finish_once(self, job_id: str) -> bool:
        """True for the first caller only: the one whose end of the job is recorded."""
        return bool(self.call(lambda: self.client.set(self.key("done", job_id), "1", nx=True, ex=DONE_TTL_S)))

    def requeue_once(self, job_id: str, attempt: int) -> bool:
        return bool(self.call(lambda: self.client.set(self.key("requeue", job_id, attempt), "1", nx=True,
                                                      ex=DONE_TTL_S)))

    # --- the data-root marker
    def root_marker(self) -> str | None:
        return self.call(lambda: self.client.get(self.key("root")))

    def set_root_marker(self, value: str) -> str:
        """Store `value` unless a marker is there already; returns the stored one."""
        self.call(lambda: self.client.set(self.key("root"), value, nx=True))
        return str(self.root_marker())


def envelope_of(record_dict: dict, **meta: Any) -> dict:
    return {"record": record_dict, "meta": {"worker": None, "attempts": 0, "notes": [], **meta}}
