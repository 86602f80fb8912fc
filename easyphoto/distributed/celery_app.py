"""The Celery app: one task, "easyphoto.run_job", and the queue each job kind is routed to.

Routing by what a job needs, so a worker only takes what its machine can run:

    easyphoto.cpu              photo checks, datasets, downloads (no GPU)
    easyphoto.gpu              training, portraits, try-on with a trained garment, ...
    easyphoto.gpu.sdxl         the same on an SDXL base (a `base` whose header is SDXL's): big GPUs only
    easyphoto.gpu.<backend>    zero-shot try-on with that backend (leffa, catvton, ootd): its weights are large

A worker listens on all of them unless told otherwise (`worker --queues`). Settings that matter for GPU jobs:
acks_late with reject_on_worker_lost (a message is acknowledged only when its job ended), prefetch 1 (a worker
never holds a second job while it runs one), and no result backend (the result lives in the job record).
"""

from __future__ import annotations

from typing import Any

TASK = "easyphoto.run_job"
CPU_QUEUE, GPU_QUEUE = "easyphoto.cpu", "easyphoto.gpu"
SDXL_QUEUE = f"{GPU_QUEUE}.sdxl"
ZERO_SHOT_KINDS = {"tryon_any"}


def route(kind: str, params: dict, gpu: bool) -> str:
    """The Celery queue of a job. A GPU job on an SDXL base (its `base` file or folder says so) goes to
    easyphoto.gpu.sdxl: SDXL needs about three times the VRAM, so only the big cards listen there."""
    if kind in ZERO_SHOT_KINDS and params.get("backend"):
        return f"{GPU_QUEUE}.{params['backend']}"
    if not gpu:
        return CPU_QUEUE
    base = params.get("base")
    if isinstance(base, str) and base:
        from easyphoto.sd.family import model_family

        if model_family(base) == "sdxl":
            return SDXL_QUEUE
    return GPU_QUEUE


def all_queues() -> list[str]:
    from easyphoto.tryon.zeroshot.registry import BACKENDS

    return [CPU_QUEUE, GPU_QUEUE, SDXL_QUEUE, *(f"{GPU_QUEUE}.{name}" for name in sorted(BACKENDS))]


def make_app(broker: str, run_job: Any = None):
    """The Celery app on `broker`; `run_job(job_id)` is the task body on a worker (None on the API server)."""
    from celery import Celery

    app = Celery("easyphoto", broker=broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # the worker's own prints (its start line) stay prints
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # A message whose worker died is redelivered by Redis after this long at the latest; the lease (worker.py)
        # re-queues such a job much sooner, and the late duplicate then finds the job ended and does nothing.
        broker_transport_options={"visibility_timeout": 6 * 3600},
    )
    if run_job is not None:
        app.task(name=TASK, acks_late=True, reject_on_worker_lost=True, shared=False)(run_job)
    return app


def send(app, job_id: str, queue: str) -> None:
    """Publish the task once (no retry loop: a down broker must answer at once, as QueueUnavailable)."""
    app.send_task(TASK, args=[job_id], queue=queue, retry=False)
