"""`--easyphoto-worker`: a distributed-queue worker inside the WebUI, running jobs on the WebUI's own models.

Started once from on_app_started in a daemon thread (the WebUI keeps serving its UI and API beside it); its jobs
hold the WebUI's queue lock like the embedded queue's, so a txt2img request and a worker job never overlap. A
worker that cannot start (no broker, another data root) says why in the log and leaves the WebUI running.
"""

from __future__ import annotations

import logging
import threading

from easyphoto.backends.webui.host import cmd_opt
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError

log = logging.getLogger("easyphoto")
_started: dict[str, object] = {}  # one worker per process: "Reload UI" calls on_app_started again


def start_worker(ctx: AppContext):
    """The running Worker (started now, or earlier in this process); None when it cannot start."""
    from easyphoto import operations
    from easyphoto.distributed import celery_app
    from easyphoto.distributed.redis_jobs import redacted
    from easyphoto.distributed.worker import Worker, check_data_root

    if "worker" in _started:
        return _started["worker"]
    broker = ctx.broker_url
    if not broker:
        log.error("EasyPhoto: --easyphoto-worker needs a broker: add --easyphoto-broker redis://HOST:6379/0 "
                  "(or set EASYPHOTO_BROKER, or Settings → EasyPhoto → Distributed job queue)")
        return None
    try:
        worker = Worker(ctx, broker, name=f"webui-{ctx.host.flavour}-{_host_name()}")
        check_data_root(ctx, worker.store, create=False)
        operations.register_operations(worker, ctx)
    except EasyPhotoError as exc:
        log.error("EasyPhoto: the distributed worker did not start: %s", exc)
        return None
    queues = [q.strip() for q in (cmd_opt("easyphoto_worker_queues") or "").split(",") if q.strip()]
    thread = threading.Thread(target=worker.serve, args=(queues or celery_app.all_queues(),),
                              name="easyphoto-worker", daemon=True)
    thread.start()
    _started["worker"] = worker
    log.info("EasyPhoto: distributed worker %s started on %s", worker.name, redacted(broker))
    return worker


def stop_worker() -> None:
    worker = _started.pop("worker", None)
    if worker is not None:
        worker.stop()


def _host_name() -> str:
    import os
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"
