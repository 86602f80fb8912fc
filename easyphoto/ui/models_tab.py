"""Models tab: every weight file with its state and licence; per-group download (a job) and verify.

The licences of the files a download would fetch are shown next to the button and at the top of every status line
of the download, before its first byte. Non-commercial weights are fetched only with the opt-in setting."""

from __future__ import annotations

from collections.abc import Iterator

from easyphoto import weights
from easyphoto.context import AppContext
from easyphoto.ui.job_updates import cancel, failure_text, follow

MODEL_COLUMNS = ["File", "Group", "State", "Licence", "Purpose", "Path"]
ALL = "all"


def model_rows(ctx: AppContext) -> list[list[str]]:
    return [
        [s.entry.filename, s.entry.group, s.state, s.entry.licence, s.entry.purpose, s.found_at]
        for s in weights.status_all(ctx.paths)
    ]


def missing_text(ctx: AppContext) -> str:
    missing = [s for s in weights.status_all(ctx.paths) if s.state != "present"]
    if not missing:
        return "All model files are present."
    lines = "\n".join(weights.how_to_fetch(s) for s in missing)
    return f"{len(missing)} model file(s) are not on disk yet. To add them by hand:\n\n{lines}"


def licence_text(ctx: AppContext, group: str) -> str:
    """Markdown: one line per licence of the files "Download missing" would fetch for `group` (as the job does)."""
    ids = None if group == ALL else [e.id for e in weights.select(None, group)]
    pending = weights.to_download(ids, ctx.paths, allow_noncommercial=ctx.settings.allow_noncommercial_tryon)
    lines = weights.licence_lines(pending)
    return "\n".join(f"- {line}" for line in lines) if lines else "Nothing to download."


def skipped_text(result: dict) -> str:
    """The files a download of "all" left out for their non-commercial licence, and how to opt in."""
    skipped = [f["id"] for f in result.get("files", []) if f.get("state") == "skipped"]
    if not skipped:
        return ""
    return (f"Left out (non-commercial licence, not opted in): {', '.join(skipped)}. To download them, "
            f"{weights.NONCOMMERCIAL_OPT_IN}.\n\n")


def download_flow(ctx: AppContext, group: str) -> Iterator[tuple]:
    """Yields (status, table, job id) while the download job runs; every status starts with the licences."""
    from easyphoto.operations import job_queue

    if ctx.offline:
        yield "Offline mode: nothing is downloaded. " + missing_text(ctx), model_rows(ctx), ""
        return
    licences = licence_text(ctx, group)
    job = job_queue(ctx).submit("fetch_models", {"group": None if group == ALL else group, "ids": []})
    for record in follow(ctx, job.id):
        if record.is_final:
            break
        p = record.progress
        percent = f" {p.fraction * 100:.0f}%" if p.fraction else ""
        current = p.message if p.phase == "downloading" else "starting"  # the job's first message is the licences
        yield f"{licences}\n\nDownloading{percent}: {current}", model_rows(ctx), job.id
    ok = record.state.value == "succeeded"
    text = ("Download finished. " + skipped_text(record.result or {}) + missing_text(ctx)) if ok \
        else failure_text("Download", record)
    yield text, model_rows(ctx), ""


def verify_text(ctx: AppContext, group: str) -> str:
    results = weights.verify([e.id for e in weights.select(None, None if group == ALL else group)], ctx.paths)
    lines = [f"- {r.entry.filename}: {r.state}" + (f" ({r.detail})" if r.detail else "") for r in results]
    return "Verification:\n\n" + "\n".join(lines)


def cancel_download(ctx: AppContext, job_id: str) -> str:
    return cancel(ctx, job_id, idle="Nothing is downloading.",
                  cancelling="Cancelling… (the partial file is kept and resumed next time)")


def build_models_tab(gr, ctx: AppContext) -> None:
    table = gr.Dataframe(value=model_rows(ctx), headers=MODEL_COLUMNS, interactive=False, wrap=True,
                         elem_id="easyphoto_models_table")
    with gr.Row():
        group = gr.Dropdown(choices=[ALL, *weights.GROUPS], value=ALL, label="Group", elem_id="easyphoto_models_group")
        download = gr.Button("Download missing", variant="primary", elem_id="easyphoto_models_download")
        verify = gr.Button("Verify", elem_id="easyphoto_models_verify")
        cancel = gr.Button("Cancel", elem_id="easyphoto_models_cancel")
        refresh = gr.Button("Refresh", elem_id="easyphoto_models_refresh")
    licences = gr.Markdown(licence_text(ctx, ALL), elem_id="easyphoto_models_licences")
    job_id = gr.State("")
    status = gr.Markdown(missing_text(ctx), elem_id="easyphoto_models_missing")

    def run_download(selected):  # gradio streams a generator's yields to the outputs
        yield from download_flow(ctx, selected)

    group.change(fn=lambda selected: licence_text(ctx, selected), inputs=[group], outputs=[licences])
    download.click(fn=run_download, inputs=[group], outputs=[status, table, job_id]).then(
        fn=lambda selected: licence_text(ctx, selected), inputs=[group], outputs=[licences])
    verify.click(fn=lambda selected: verify_text(ctx, selected), inputs=[group], outputs=[status])
    cancel.click(fn=lambda j: cancel_download(ctx, j), inputs=[job_id], outputs=[status])
    refresh.click(fn=lambda selected: (model_rows(ctx), missing_text(ctx), licence_text(ctx, selected)),
                  inputs=[group], outputs=[table, status, licences])
