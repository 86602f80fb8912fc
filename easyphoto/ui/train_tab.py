"""Train tab: 1. upload photos and check them (kept/dropped with the reason); 2. train the identity LoRA.

Both steps run as jobs on the shared queue (so they never overlap GPU work, survive in the job history and can be
cancelled); the tab streams their progress, and the latest validation image while training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from easyphoto.config import TrainConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.store import read_json, suggest_identity_id
from easyphoto.train import prepare
from easyphoto.ui.config_controls import ConfigForm, field_names, values_to_config
from easyphoto.ui.job_updates import cancel, failure_text, follow

PREFIX = "easyphoto_train"
TRAIN_FIELDS = field_names(TrainConfig)  # every field: the form's components and train_flow's values, in this order
PHOTO_GROUP = "Photo selection"  # rendered next to Check photos: what it decides is what the check shows


def upload_paths(files) -> list[Path]:
    """gradio 3 hands tempfile wrappers (.name), gradio 4 plain paths."""
    return [Path(getattr(f, "name", f)) for f in (files or [])]


def upload_items(files) -> list:
    """Uploads for prepare.add_photos under the names the user gave them: gradio 4 keeps the original name as the
    temp file's name; gradio 3's wrapper carries it as .orig_name when the temp name differs."""
    items = []
    for f, path in zip(files or [], upload_paths(files), strict=True):
        original = Path(str(getattr(f, "orig_name", "") or "")).name
        items.append((original, path.read_bytes()) if original and original != path.name else path)
    return items


def _unchanged():
    import gradio as gr

    return gr.update()


def check_photos_flow(ctx: AppContext, identity_id: str, files, values: Sequence = ()) -> Iterator[tuple]:
    """Yields (gallery, summary, job id) while the check job runs; errors become the summary. `values`: the
    form's, in TRAIN_FIELDS order (the photo selection settings training will use too); none = the defaults."""
    from easyphoto.operations import job_queue

    try:
        identity_id = (identity_id or "").strip()
        if not identity_id:
            raise EasyPhotoError("Enter an identity id first.", hint="For example 'alice' or 'bob_2024'.")
        config = values_to_config(TrainConfig, TRAIN_FIELDS, values) if values else TrainConfig()
        added = prepare.add_photos(ctx, identity_id, upload_items(files)) if files else None
        ctx.identities.get(identity_id)
        queue = job_queue(ctx)
        job = queue.submit("check_photos", {"identity_id": identity_id, "config": config.to_dict()})
    except EasyPhotoError as exc:
        yield [], f"**Cannot check photos:** {exc.message} {exc.hint}".strip(), ""
        return
    except ValueError as exc:  # InvalidSettings: names the field, where its control is and the accepted range
        yield [], f"**Invalid settings:** {exc}", ""
        return
    uploaded = f"Uploads: {added.summary()}.\n\n" if added else ""  # pressing Check twice stores nothing twice
    for record in follow(ctx, job.id):
        if record.is_final:
            gallery, summary = _finished(ctx, identity_id, record)
            yield gallery, uploaded + summary, ""
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
    return prepare.thumbnails(layout, report), summary + _dropped_list(report)


def _dropped_list(report: dict) -> str:
    """The gallery's captions are cut to one line: every dropped photo's reason is also listed in full."""
    dropped = [p for p in report.get("photos", []) if not p["kept"]]
    if not dropped:
        return ""
    return "\n\nDropped:\n" + "\n".join(f"- `{p['file']}`: {p['reason']}" for p in dropped)


def photo_names(ctx: AppContext, identity_id: str) -> list[str]:
    """The identity's stored photos by name (the choices of "Remove photo"); [] for an unknown or invalid id."""
    from easyphoto.store import photo_files

    try:
        return [p.name for p in photo_files(ctx.identities.get((identity_id or "").strip()).photos)]
    except EasyPhotoError:
        return []


def remove_photo_flow(ctx: AppContext, identity_id: str, name: str) -> tuple[list | None, str, list[str]]:
    """(gallery of the saved report without the photo, or None when nothing was removed; summary; the remaining
    photo names)."""
    from easyphoto.operations import job_queue, refuse_while_busy

    identity_id = (identity_id or "").strip()
    try:
        if not name:
            raise EasyPhotoError("Pick the photo to remove first.", hint="The list holds the names the report shows.")
        layout = ctx.identities.get(identity_id)
        refuse_while_busy(job_queue(ctx), identity_id, "then remove the photo", phase="photos")
        prepare.remove_photos(ctx, identity_id, [name])
    except EasyPhotoError as exc:
        return None, f"**Cannot remove the photo:** {exc.message} {exc.hint}".strip(), photo_names(ctx, identity_id)
    names = photo_names(ctx, identity_id)
    report = read_json(layout.report) if layout.report.is_file() else {}
    summary = (f"Removed `{name}` from `{identity_id}`; {len(names)} photo{'' if len(names) == 1 else 's'} left. "
               "Press **Check photos** again to decide on the photos left.")
    return prepare.thumbnails(layout, report), summary, names


def cancel_job(ctx: AppContext, job_id: str) -> str:
    return cancel(ctx, job_id, idle="Nothing is running.")


def train_flow(ctx: AppContext, identity_id: str, base: str, resume: bool, values: Sequence) -> Iterator[tuple]:
    """Yields (status, latest validation image, job id) while the training job runs; `values` in TRAIN_FIELDS
    order."""
    from easyphoto.operations import submit

    try:
        identity_id = (identity_id or "").strip()
        ctx.identities.get(identity_id)
        config = values_to_config(TrainConfig, TRAIN_FIELDS, values)
        # Only what differs from the defaults: an SDXL base then gets the SDXL defaults (1024 px, rank 32, ...) for
        # every setting the form left alone (easyphoto.config.train_config_for_family).
        params = {"identity_id": identity_id, "resume": bool(resume), "config": config.non_default()}
        if base and base.strip():
            params["base"] = base.strip()
        job = submit(ctx, "train", params)
    except EasyPhotoError as exc:
        yield f"**Cannot train:** {exc.message} {exc.hint}".strip(), None, ""
        return
    except ValueError as exc:  # InvalidSettings: names the field, where its control is and the accepted range
        yield f"**Invalid training settings:** {exc}", None, ""
        return
    for record in follow(ctx, job.id):
        if record.is_final:
            break
        p = record.progress
        eta = f", about {p.eta_seconds / 60:.0f} min left" if p.eta_seconds else ""
        step = f" step {p.step}/{p.total}" if p.total else ""
        yield f"{p.phase or record.state.value}{step} {p.message}{eta}".strip(), p.preview, job.id
    if record.state.value != "succeeded":
        yield failure_text("Training", record), record.progress.preview, ""
        return
    result = record.result or {}
    yield ((f"**Trained `{identity_id}`** ({result.get('steps')} steps, exported {result.get('source')}): "
           f"`{result.get('lora_file')}`. Use it with `<lora:{identity_id}:0.9>`.{speed_text(result)}"),
           record.progress.preview, "")


def speed_text(result: dict) -> str:
    """The finished training's speed line: seconds per step, total time, the levers it used."""
    speed = result.get("speed") or {}
    if not speed.get("seconds_per_step"):
        return ""
    levers = ", ".join(speed.get("levers") or []) or "none"
    return (f"\n\n{speed['seconds_per_step']:.2f} s per optimizer step, {result.get('seconds', 0) / 60:.1f} min in "
            f"all; speed levers: {levers}.")


def build_train_tab(gr, ctx: AppContext) -> None:
    form = ConfigForm(TrainConfig, PREFIX)  # its groups are rendered in both steps, so inputs are wired last
    identity, uploads, check, job_id, summary, gallery, photo_pick = _build_photo_step(gr, ctx, form)
    _build_training_step(gr, ctx, identity, form)

    def run_check(identity_id, files, *values):  # gradio streams a generator's yields to the outputs
        yield from check_photos_flow(ctx, identity_id, files, values)

    def refresh_names(identity_id):
        return gr.update(choices=photo_names(ctx, identity_id), value=None)

    check.click(fn=run_check, inputs=[identity, uploads, *form.components], outputs=[gallery, summary, job_id]).then(
        fn=refresh_names, inputs=[identity], outputs=[photo_pick])
    identity.blur(fn=refresh_names, inputs=[identity], outputs=[photo_pick])


def _build_photo_step(gr, ctx: AppContext, form: ConfigForm) -> tuple:
    """Step 1: identity, uploads, the photo selection settings, Check photos, its gallery and photo removal."""
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
    form.render(gr, [PHOTO_GROUP], folded=True)
    with gr.Row():
        check = gr.Button("Check photos", variant="primary", elem_id="easyphoto_train_check")
        cancel_button = gr.Button("Cancel", elem_id="easyphoto_train_cancel")
    job_id = gr.State("")
    summary = gr.Markdown(elem_id="easyphoto_train_summary")
    gallery = gr.Gallery(label="Photo check", columns=5, elem_id="easyphoto_train_gallery")
    with gr.Row():
        photo_pick = gr.Dropdown(label="Photo to remove", choices=[], elem_id="easyphoto_train_photo_pick",
                                 info="a photo of someone else, or one that cannot be read")
        remove = gr.Button("Remove photo", elem_id="easyphoto_train_remove_photo")

    def run_remove(identity_id, name):
        shown, text, names = remove_photo_flow(ctx, identity_id, name)
        return gr.update() if shown is None else shown, text, gr.update(choices=names, value=None)

    remove.click(fn=run_remove, inputs=[identity, photo_pick], outputs=[gallery, summary, photo_pick])
    cancel_button.click(fn=lambda j: cancel_job(ctx, j), inputs=[job_id], outputs=[summary])
    return identity, uploads, check, job_id, summary, gallery, photo_pick


def _build_training_step(gr, ctx: AppContext, identity, form: ConfigForm) -> None:
    gr.Markdown("### Train the identity LoRA", elem_id="easyphoto_train_step2")
    base = gr.Textbox(label="Base checkpoint (empty: the WebUI's selected checkpoint; standalone: the SD 1.5 base "
                            "in models/Stable-diffusion)", elem_id="easyphoto_train_base",
                      placeholder="path to an SD 1.5 .safetensors file or diffusers folder")
    with gr.Accordion("Training settings", open=False, elem_id="easyphoto_train_settings"):
        form.render(gr)  # every group but photo selection; the speed and memory levers are what out-of-VRAM names
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="easyphoto_train_start")
        resume = gr.Checkbox(label="Resume from the last checkpoint", value=False, elem_id="easyphoto_train_resume")
        stop = gr.Button("Cancel training", elem_id="easyphoto_train_stop")
    job_id = gr.State("")
    status = gr.Markdown(elem_id="easyphoto_train_status")
    preview = gr.Image(label="Latest validation image", interactive=False, elem_id="easyphoto_train_preview")

    def run_training(identity_id, base_path, resume_flag, *values):
        yield from train_flow(ctx, identity_id, base_path, resume_flag, values)

    start.click(fn=run_training, inputs=[identity, base, resume, *form.components], outputs=[status, preview, job_id])
    stop.click(fn=lambda j: cancel(ctx, j, idle="Nothing is training.", cancelling="Cancelling… (resumable)"),
               inputs=[job_id], outputs=[status])
