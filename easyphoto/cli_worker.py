"""`python -m easyphoto worker`: run jobs from the distributed queue (easyphoto.distributed, docs/scale-out.md)."""

from __future__ import annotations

import argparse

from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError


def add_worker_command(commands) -> None:
    worker = commands.add_parser("worker", help="run jobs from the distributed queue (needs --broker)")
    worker.add_argument("--queues", help="comma-separated Celery queues to take jobs from (default: all: "
                                         "easyphoto.cpu, easyphoto.gpu, easyphoto.gpu.sdxl and "
                                         "easyphoto.gpu.<try-on backend>)")
    worker.add_argument("--name", help="this worker's name in job records (default: host-pid)")
    worker.add_argument("--wait-for-broker", type=float, default=300.0, metavar="SECONDS",
                        help="how long to wait for Redis when it does not answer at start (default: 300; 0: fail at "
                             "once). Once running, a worker rides out Redis restarts by itself.")
    worker.set_defaults(run=_worker)


def _worker(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto import operations
    from easyphoto.distributed import celery_app
    from easyphoto.distributed.worker import Worker, check_data_root, wait_for_broker

    broker = ctx.broker_url
    if not broker:
        raise EasyPhotoError("A worker takes its jobs from a broker, and none is set.", phase="worker",
                             hint="Pass --broker redis://HOST:6379/0 (or set EASYPHOTO_BROKER), the server's own.")
    worker = Worker(ctx, broker, name=args.name)
    wait_for_broker(worker.store, args.wait_for_broker, say=lambda line: print(line, flush=True))
    check_data_root(ctx, worker.store, create=False)
    operations.register_operations(worker, ctx)
    queues = [q.strip() for q in (args.queues or "").split(",") if q.strip()] or celery_app.all_queues()
    print(f"EasyPhoto worker {worker.name}: data root {ctx.paths.data_root}, queues {', '.join(queues)}", flush=True)
    worker.serve(queues)
    return 0
