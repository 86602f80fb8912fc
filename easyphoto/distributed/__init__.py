"""Jobs spread over several machines: Celery tasks on a Redis broker, job records and progress in Redis.

Off by default: with no broker configured the in-process queue (easyphoto.jobs) runs as always. With one
(`--broker redis://HOST:6379/0` on `serve`, or EASYPHOTO_BROKER), `operations.job_queue` returns a
DistributedQueue: submit writes the record to Redis and sends a Celery task to the queue of the job's kind; any
`python -m easyphoto worker` listening on that queue runs it, one job at a time per worker process.

    redis_jobs.py   the records, cancel flags, leases and the data-root marker in Redis
    queue.py        DistributedQueue: the JobQueue interface the API, UI and CLI already use
    worker.py       Worker: claims a job, runs its operation with a JobContext backed by Redis, ends it once
    celery_app.py   the Celery app, the task, and which queue each job kind goes to

Failure semantics (docs/scale-out.md says more): a job is claimed with a lease that its worker renews every
few seconds; a worker that dies (kill -9, power loss) stops renewing, and the other workers re-queue its job once
the lease has expired; a training then resumes from its last checkpoint. A job ends once: the first worker to
record its end wins, so no job is ever run twice to completion.
"""
