"""What the tabs share about jobs: following one until it ends, and cancelling it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError

POLL_SECONDS = 0.5


def follow(ctx: AppContext, job_id: str, poll: float = POLL_SECONDS) -> Iterator:
    """Yield the job's record every `poll` seconds until it ends; the last one yielded is final (`is_final`)."""
    from easyphoto.operations import job_queue

    queue = job_queue(ctx)
    record = queue.get(job_id)
    while not record.is_final:
        yield record
        time.sleep(poll)
        record = queue.get(job_id)
    yield record


def cancel(ctx: AppContext, job_id: str, *, idle: str, cancelling: str = "Cancelling…") -> str:
    """Cancel from a button; the answer is text for the tab's status line."""
    from easyphoto.operations import job_queue

    if not job_id:
        return idle
    try:
        job_queue(ctx).cancel(job_id)
    except EasyPhotoError as exc:
        return exc.message
    return cancelling


def failure_text(what: str, record) -> str:
    """Markdown for a tab's status line: the message and hint; for a bug, its report folded below them."""
    error = record.error or {}
    text = f"**{what} {record.state.value}:** {error.get('message', '')} {error.get('hint', '')}".strip()
    report = error.get("report")
    if not isinstance(report, dict) or not report.get("text"):
        return text
    from easyphoto.bugreport import fenced

    # The report is shown as its Markdown source in a code block, so what the user copies renders in an issue.
    return (f"{text}\n\n<details><summary>This is a bug in EasyPhoto: copy this report into an issue</summary>\n\n"
            f"{fenced(str(report['text']), 'markdown')}\n\n</details>")


def follow_gallery(ctx: AppContext, job_id: str, what: str, finish) -> Iterator[tuple]:
    """(status, gallery, job id) while the job runs (the gallery left as it is); then `finish(result)` = (text,
    gallery) when it succeeded, or the failure and an empty gallery."""
    import gradio as gr

    for record in follow(ctx, job_id):
        if record.is_final:
            break
        p = record.progress
        yield f"{p.phase or record.state.value}: {p.message}".strip(), gr.update(), job_id
    if record.state.value != "succeeded":
        yield failure_text(what, record), [], ""
        return
    yield (*finish(record.result or {}), "")


def cannot(what: str, exc: EasyPhotoError) -> str:
    return f"**Cannot {what}:** {exc.message} {exc.hint}".strip()


def submit_and_follow(ctx: AppContext, kind: str, make_params: Callable[[], object], refused: str, invalid: str,
                      what: str, finish) -> Iterator[tuple]:
    """Submit a `kind` job with `make_params()` (which checks every input first) and follow it as follow_gallery
    does. Nothing is submitted when the checks refuse: an EasyPhotoError becomes "**Cannot `refused`:** …", invalid
    settings (ValueError) "**Invalid `invalid` settings:** …"."""
    from easyphoto.operations import submit

    try:
        job = submit(ctx, kind, make_params())
    except EasyPhotoError as exc:
        yield cannot(refused, exc), [], ""
        return
    except ValueError as exc:
        yield f"**Invalid {invalid}settings:** {exc}", [], ""
        return
    yield from follow_gallery(ctx, job.id, what, finish)
