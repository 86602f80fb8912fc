"""Train tab, step 1: upload photos and check them (kept/dropped with the reason) before any training starts.

The check runs as a job on the shared queue (so it never overlaps GPU work, survives in the job history and can
be cancelled); the tab streams its progress. The LoRA training step arrives with the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from easyphoto.config import TrainConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.store import read_json, suggest_identity_id
from easyphoto.train import prepare
from easyphoto.ui.job_updates import cancel, failure_text, follow


def upload_paths(files) -> list[Path]:
    """gradio 3 hands tempfile wrappers (.name), gradio 4 plain paths."""
    return [Path(getattr(f, "name", f)) for f in (files or [])]


def _unchanged():
    import gradio as gr

    return gr.update()


def check_photos_flow(ctx: AppContext, identity_id: str, files) -> Iterator[tuple]:
    """Yields (gallery, summary, job id) while the check job runs; errors become the summary."""
    from easyphoto.operations import job_queue

    try:
        identity_id = (identity_id or "").strip()
        if not identity_id:
            raise EasyPhotoError("Enter an identity id first.", hint="For example 'alice' or 'bob_2024'.")
        if files:
            prepare.add_photos(ctx, identity_id, upload_paths(files))
        ctx.identities.get(identity_id)
        queue = job_queue(ctx)
        job = queue.submit("check_photos", {"identity_id": identity_id, "config": TrainConfig().to_dict()})
    except EasyPhotoError as exc:
        yield [], f"**Cannot check photos:** {exc.message} {exc.hint}".strip(), ""
        return
    updates = follow(ctx, job.id)
    while True:
        try:
            record = next(updates)
        except StopIteration as done:
            yield (*_finished(ctx, identity_id, done.value), "")
            return
        p = record.progress
        step = f" ({p.step}/{p.total})" if p.total else ""
        yield _unchanged(), f"{record.state.value.capitalize()}: {p.phase or 'waiting'}{step} {p.message}".strip(), job.id


def _finished(ctx: AppContext, identity_id: str, record) -> tuple[list, str]:
    if record.state.value == "cancelled":
        return [], "Photo check cancelled."
    if record.state.value == "failed":
        return [], failure_text("Photo check", record)
    layout = ctx.identities.get(identity_id)
    report = read_json(layout.report)
    kept = report["kept"]
    advice = "" if kept >= 5 else " Fewer than 5 photos kept: add more varied photos for a good likeness."
    summary = (
        f"**{kept} of {report['total']} photos kept** for `{identity_id}`; reference face: "
        f"`{report.get('reference') or 'none'}`; face models: {report['face_stack'].get('name', '?')}.{advice}"
    )
    return prepare.thumbnails(layout, report), summary


def cancel_job(ctx: AppContext, job_id: str) -> str:
    return cancel(ctx, job_id, idle="Nothing is running.")


def build_train_tab(gr, ctx: AppContext) -> None:
    gr.Markdown(
        "Upload 5–20 photos of one person. **Check photos** shows which are kept and why the others are not "
        "(another person, no face, blurred, too small, duplicate…).",
        elem_id="easyphoto_train_intro",
    )
    with gr.Row():
        identity = gr.Textbox(label="Identity id", placeholder="e.g. alice", elem_id="easyphoto_train_identity",
                              info="lowercase letters, digits, '_' or '-'")
        suggestion = gr.Textbox(label="Suggested id for a name", interactive=True, elem_id="easyphoto_train_suggest",
                                placeholder="type a name to get a valid id")
    suggestion.change(fn=lambda name: suggest_identity_id(name) if name else "", inputs=[suggestion], outputs=[identity])
    uploads = gr.File(label="Photos", file_count="multiple", file_types=["image"], elem_id="easyphoto_train_uploads")
    with gr.Row():
        check = gr.Button("Check photos", variant="primary", elem_id="easyphoto_train_check")
        cancel = gr.Button("Cancel", elem_id="easyphoto_train_cancel")
    job_id = gr.State("")
    summary = gr.Markdown(elem_id="easyphoto_train_summary")
    gallery = gr.Gallery(label="Photo check", columns=5, elem_id="easyphoto_train_gallery")

    def run_check(identity_id, files):  # gradio streams a generator's yields to the outputs
        yield from check_photos_flow(ctx, identity_id, files)

    check.click(fn=run_check, inputs=[identity, uploads], outputs=[gallery, summary, job_id])
    cancel.click(fn=lambda j: cancel_job(ctx, j), inputs=[job_id], outputs=[summary])
    gr.Markdown("Training the LoRA from the kept photos arrives with the trainer.", elem_id="easyphoto_train_coming")
