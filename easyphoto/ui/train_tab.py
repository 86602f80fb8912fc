"""Train tab, step 1: upload photos and check them (kept/dropped with the reason) before any training starts.

The LoRA training step arrives with the trainer; until then the tab says so below the check.
"""

from __future__ import annotations

from pathlib import Path

from easyphoto.config import TrainConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.store import suggest_identity_id
from easyphoto.train import prepare


def upload_paths(files) -> list[Path]:
    """gradio 3 hands tempfile wrappers (.name), gradio 4 plain paths."""
    return [Path(getattr(f, "name", f)) for f in (files or [])]


def check_photos_action(ctx: AppContext, identity_id: str, files) -> tuple[list, str]:
    """Gallery items and a summary for the identity, after adding any new uploads. Errors become the summary."""
    try:
        identity_id = (identity_id or "").strip()
        if not identity_id:
            raise EasyPhotoError("Enter an identity id first.", hint="For example 'alice' or 'bob_2024'.")
        if files:
            prepare.add_photos(ctx, identity_id, upload_paths(files))
        report = prepare.check_photos(ctx, identity_id, TrainConfig())
        layout = ctx.identities.get(identity_id)
    except EasyPhotoError as exc:
        return [], f"**Cannot check photos:** {exc.message} {exc.hint}".strip()
    kept = len(report.kept)
    advice = "" if kept >= 5 else " Fewer than 5 photos kept: add more varied photos for a good likeness."
    summary = (
        f"**{kept} of {len(report.decisions)} photos kept** for `{identity_id}`; reference face: "
        f"`{report.reference or 'none'}`; face models: {report.stack.get('name', '?')}.{advice}"
    )
    return prepare.thumbnails(layout, report), summary


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
    check = gr.Button("Check photos", variant="primary", elem_id="easyphoto_train_check")
    summary = gr.Markdown(elem_id="easyphoto_train_summary")
    gallery = gr.Gallery(label="Photo check", columns=5, elem_id="easyphoto_train_gallery")
    check.click(fn=lambda i, f: check_photos_action(ctx, i, f), inputs=[identity, uploads], outputs=[gallery, summary])
    gr.Markdown("Training the LoRA from the kept photos arrives with the trainer.", elem_id="easyphoto_train_coming")
