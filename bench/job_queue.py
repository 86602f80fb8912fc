"""Jobs per second through the distributed queue (Celery + Redis, one worker) against the in-process queue, on no-op
jobs: what the broker costs per job, measured in one run.

Both queues run the same registered no-op kind; each job is submitted and its end waited for, one after another
(the latency a user sees), then N submitted at once and all waited for (the throughput). Needs redis-server on
PATH (Debian: apt-get install redis-server) and the `distributed` extra (celery, redis).

    python bench/job_queue.py [--jobs 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def noop(params, job) -> dict:
    job.progress(phase="noop", fraction=1.0, message="done")
    return {"ok": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    import redis

    port = free_port()
    process = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir",
                                str(folder), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(300):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def timed(queue, jobs: int) -> tuple[float, float]:
    """(jobs/s one after another, jobs/s all submitted at once)."""
    started = time.perf_counter()
    for _ in range(jobs):
        record = queue.submit("noop", {})
        queue.wait(record.id, timeout=60)
    serial = jobs / (time.perf_counter() - started)
    started = time.perf_counter()
    records = [queue.submit("noop", {}) for _ in range(jobs)]
    for record in records:
        queue.wait(record.id, timeout=120)
    burst = jobs / (time.perf_counter() - started)
    return serial, burst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH (Debian: apt-get install redis-server)")
        return 1
    from easyphoto.context import standalone_context
    from easyphoto.distributed.queue import DistributedQueue
    from easyphoto.distributed.worker import Worker, check_data_root
    from easyphoto.jobs import JobQueue

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        embedded = JobQueue(work / "jobs")
        embedded.register("noop", noop, gpu=False)
        local = timed(embedded, args.jobs)
        embedded.shutdown()

        redis_process, url = start_redis(work)
        try:
            ctx = standalone_context(work / "data", broker=url)
            server = DistributedQueue(ctx.paths.jobs_dir, url)
            server.register("noop", noop, gpu=False)
            check_data_root(ctx, server.store, create=True)
            worker = Worker(ctx, url, name="bench")
            worker.register("noop", noop, gpu=False)
            os.environ.setdefault("EASYPHOTO_LEASE_SECONDS", "20")
            thread = threading.Thread(target=worker.serve, args=(["easyphoto.cpu"],), daemon=True)
            thread.start()
            warm = server.submit("noop", {})
            server.wait(warm.id, timeout=60)  # the worker is connected and consuming
            remote = timed(server, args.jobs)
        finally:
            redis_process.terminate()
    print(f"{args.jobs} no-op jobs, one worker")
    print(f"in-process queue: {local[0]:.1f} jobs/s one after another, {local[1]:.1f} jobs/s submitted at once")
    print(f"Celery + Redis:   {remote[0]:.1f} jobs/s one after another, {remote[1]:.1f} jobs/s submitted at once")
    print(f"ratio in-process / distributed: {local[0] / remote[0]:.1f}× one after another, "
          f"{local[1] / remote[1]:.1f}× at once")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
