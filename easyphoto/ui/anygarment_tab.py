"""The "Any garment (no training)" section of the Try-On tab (issue 15): a garment photo (or a stored garment's) on a
person photo through a zero-shot backend — Leffa (MIT), CatVTON or OOTDiffusion (CC BY-NC-SA: non-commercial only,
behind the opt-in setting).

The backend's licence, its note, whether its files are on disk and whether the settings allow it are shown next to
the backend choice from the start, and again on every change: before anything is downloaded or generated. The
region to repaint is the category's automatic silhouette (mask source 'parsing'), clicks on the person photo
('points'), or a mask file / the click-to-mask editor's mask ('mask'). **Generate** submits a `tryon_any` job and
follows it; every refusal becomes Markdown text, never a traceback.

Flows are plain functions of the context and the controls' values (the tests call them without a browser). No
`from __future__ import annotations`: gradio reads the `gr.SelectData` annotation of event handlers as a real object.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image

from easyphoto.config import AnyGarmentConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.ui.config_controls import ConfigForm, field_names, values_to_config
from easyphoto.ui.job_updates import cancel, cannot, submit_and_follow
from easyphoto.ui.model_tab import editor_frame_flow
from easyphoto.ui.train_tab import upload_paths
from easyphoto.ui.tryon_tab import person_click_flow, person_view, score_text, scored_images_text

PREFIX = "easyphoto_any"
ANY_FIELDS = field_names(AnyGarmentConfig)  # the form's components, in this order
NONE = ""  # the stored-garment dropdown's "no stored garment" choice
SETTING_WORDS = ("\"Allow non-commercial try-on models\" (Settings → EasyPhoto; standalone: settings.json "
                 "\"allow_noncommercial_tryon\": true)")


# ---------------------------------------------------------------------------------------------- the licence


def licence_text(ctx: AppContext, backend: str) -> str:
    """Markdown: the backend's licence and note, its defaults, its files, and whether the settings allow it."""
    from easyphoto.tryon.backend_status import backend_status

    try:
        status = backend_status(ctx, backend)
    except EasyPhotoError as exc:
        return cannot("show the backend", exc)
    variants = ", ".join(status["variants"])
    lines = [f"**Licence — {status['licence_line']}**", status["note"],
             f"Defaults: {status['steps']} steps, guidance {status['guidance']:g}; variants {variants} "
             f"(default {status['default_variant']}).", _files_line(ctx, status)]
    if not status["commercial_use"]:
        lines.append("**Allowed by your settings** (non-commercial use only)." if status["allowed"] else
                     f"**Not allowed by your settings**: if your use is non-commercial, turn on {SETTING_WORDS}; "
                     "otherwise use Leffa (MIT).")
    return "\n\n".join(line for line in lines if line)


def _files_line(ctx: AppContext, status: dict) -> str:
    missing = status["missing_files"]
    if not missing:
        return "Files: on disk."
    how = (f"offline mode: put them by hand (Models tab, group `{status['group']}`, lists where)" if ctx.offline else
           f"downloaded by the first Generate, or now from the Models tab (group `{status['group']}`)")
    return f"Files: {len(missing)} not on disk yet — {how}."


# ---------------------------------------------------------------------------------------------- inputs


def stored_garments(ctx: AppContext) -> list[str]:
    """Every stored garment, trained or not: its first photo (cut out by its mask) is the garment."""
    return ctx.garments.list()


def _photo(ctx: AppContext, file, what: str) -> tuple[Path, Image.Image]:
    from easyphoto.imageops import load_photo

    paths = upload_paths([file] if file else [])
    if not paths:
        raise EasyPhotoError(f"Upload the {what} first.")
    return paths[0], load_photo(paths[0], max_megapixels=ctx.settings.max_upload_megapixels).image


def any_garment_params(ctx: AppContext, person, garment_photo, garment_id: str, mask_file, clicks,
                       values: Sequence):
    """The checked AnyGarmentParams of the controls: the licence opt-in, a garment (the photo, else the stored
    one), the person photo and the mask source's input are all said now, before any job."""
    from easyphoto.job_params import AnyGarmentParams
    from easyphoto.tryon.run import mask_input
    from easyphoto.tryon.zeroshot.run import check_request

    config = values_to_config(AnyGarmentConfig, ANY_FIELDS, values)
    person_path, image = _photo(ctx, person, "person photo")
    garment_path = _photo(ctx, garment_photo, "garment photo")[0] if garment_photo else None
    masks = upload_paths([mask_file] if mask_file else [])
    params = AnyGarmentParams.checked({
        "person": str(person_path), "garment_image": str(garment_path) if garment_path else None,
        "garment_id": (garment_id or "").strip() or None,
        "mask": str(masks[0]) if masks and config.mask_source == "mask" else None,
        "points": [tuple(c) for c in clicks or []] if config.mask_source == "points" else [],
        "config": config.to_dict()}, "tryon_any")
    check_request(ctx, params)
    mask_input(ctx, params, image.size)  # a missing or misfit mask, no clicks: said before the job
    return params


def editor_mask_flow(ctx: AppContext, person) -> tuple:
    """(the mask the click-to-mask editor sent for this person photo as the mask file, mask source 'mask', status);
    the controls unchanged and why when there is none."""
    import gradio as gr

    from easyphoto.imageops import to_array
    from easyphoto.segment.editor_store import mask_file
    from easyphoto.segment.sam import pixel_key

    try:
        found = mask_file(ctx.paths, pixel_key(to_array(_photo(ctx, person, "person photo")[1])))
    except EasyPhotoError as exc:
        return gr.update(), gr.update(), cannot("take the editor's mask", exc)
    if found is None:
        return gr.update(), gr.update(), ("**No mask from the editor for this photo yet**: click on the garment to "
                                          "replace in the editor, then press *Send mask to EasyPhoto*.")
    return str(found), "mask", "The editor's mask is the region to repaint (mask source 'mask')."


def editor_frame(ctx: AppContext, person) -> str:
    if not person:
        return "<p>Upload the person photo: the editor opens it here.</p>"
    return editor_frame_flow(ctx, person)


# ---------------------------------------------------------------------------------------------- generate


def any_garment_flow(ctx: AppContext, person, garment_photo, garment_id: str, mask_file, clicks,
                     values: Sequence) -> Iterator[tuple]:
    """Yields (status, gallery, job id) while the tryon_any job runs; then the images with their licence and
    garment fidelity."""
    yield from submit_and_follow(
        ctx, "tryon_any", lambda: any_garment_params(ctx, person, garment_photo, garment_id, mask_file, clicks,
                                                     values),
        "try on", "try-on ", "Try-on", lambda result: (result_text(result), result_gallery(result)))


def caption(tryon: dict) -> str:
    fidelity = tryon.get("fidelity")
    score = f"garment fidelity {fidelity['score']:.2f}" if fidelity else "no fidelity score"
    licence = tryon.get("licence") or {}
    return f"{Path(tryon['file']).name} · {licence.get('backend', '?')} · seed {tryon.get('seed')} · {score}"


def result_gallery(result: dict) -> list[tuple[str, str]]:
    return [(t["file"], caption(t)) for t in result.get("tryons", [])]


def result_text(result: dict) -> str:
    """Markdown: the backend and licence the images were made under, then each image with its fidelity."""
    licence = result.get("licence") or {}
    use = "commercial use allowed" if licence.get("commercial_use") else "non-commercial use only"
    head = (f"Made with **{result.get('backend')}** ({result.get('variant')}): {licence.get('licence')} — {use}; "
            "stored in each image's metadata.") if licence else ""
    body = scored_images_text(result.get("tryons", []), "try-on image(s)", lambda t: score_text(
        t.get("fidelity"), "fidelity", "no fidelity score"))
    return f"{head}\n\n{body}" if head else body


# ---------------------------------------------------------------------------------------------- the section


def build_anygarment_section(gr, ctx: AppContext) -> None:
    gr.Markdown("### Any garment (no training)\nA garment photo (a product shot on white works best) or a stored "
                "garment, put on a person photo by a zero-shot try-on model. Check the licence before you use the "
                "results.", elem_id=f"{PREFIX}_section")
    c: dict = {"form": ConfigForm(AnyGarmentConfig, PREFIX)}
    with gr.Row():
        with gr.Column():
            c["form"].render(gr, ["Backend"])
        c["licence"] = gr.Markdown(licence_text(ctx, AnyGarmentConfig().backend), elem_id=f"{PREFIX}_licence")
    with gr.Row():
        with gr.Column():
            c["person"] = gr.Image(label="Person photo", type="filepath", elem_id=f"{PREFIX}_person")
            c["mask_file"] = gr.File(label="Mask (mask source 'mask': white = the region to repaint)",
                                     file_types=["image"], elem_id=f"{PREFIX}_mask")
            c["use_editor"] = gr.Button("Use the editor's mask", elem_id=f"{PREFIX}_use_editor")
            c["positive"] = gr.Checkbox(label="Clicks mark the garment (off: what is not)", value=True,
                                        elem_id=f"{PREFIX}_positive")
        c["view"] = gr.Image(label="Click on the garment to replace (mask source 'points')", interactive=False,
                             type="pil", elem_id=f"{PREFIX}_view")
        with gr.Column():
            c["garment_photo"] = gr.Image(label="Garment photo", type="filepath", elem_id=f"{PREFIX}_garment_photo")
            c["garment"] = gr.Dropdown(label="…or a stored garment (used when no photo is uploaded)",
                                       choices=[NONE, *stored_garments(ctx)], value=NONE, elem_id=f"{PREFIX}_garment")
            c["refresh"] = gr.Button("↻ Refresh", elem_id=f"{PREFIX}_refresh")
    with gr.Accordion("Click-to-mask editor (clicks decoded in this page)", open=False, elem_id=f"{PREFIX}_editor"):
        c["editor"] = gr.HTML(editor_frame(ctx, None), elem_id=f"{PREFIX}_editor_frame")
    with gr.Accordion("Any-garment settings", open=True, elem_id=f"{PREFIX}_settings"):
        c["form"].render(gr, folded=True)
    with gr.Row():
        c["start"] = gr.Button("Generate", variant="primary", elem_id=f"{PREFIX}_start")
        c["stop"] = gr.Button("Cancel", elem_id=f"{PREFIX}_stop")
    c["clicks"], c["job_id"] = gr.State([]), gr.State("")
    c["status"] = gr.Markdown(elem_id=f"{PREFIX}_status")
    c["results"] = gr.Gallery(label="Try-on images (backend and garment fidelity under each)", columns=3,
                              elem_id=f"{PREFIX}_results")
    _wire(gr, ctx, c)


def _wire(gr, ctx: AppContext, c: dict) -> None:
    values = c["form"].components
    backend = values[ANY_FIELDS.index("backend")]
    source = values[ANY_FIELDS.index("mask_source")]
    backend.change(fn=lambda name: licence_text(ctx, name), inputs=[backend], outputs=[c["licence"]])

    def refreshed(name):  # files fetched from the Models tab, or the opt-in turned on, since the tab was built
        return gr.update(choices=[NONE, *stored_garments(ctx)]), licence_text(ctx, name)

    c["refresh"].click(fn=refreshed, inputs=[backend], outputs=[c["garment"], c["licence"]])

    def person_changed(person):
        return (*person_view(ctx, person), editor_frame(ctx, person))

    c["person"].change(fn=person_changed, inputs=[c["person"]],
                       outputs=[c["view"], c["clicks"], c["status"], c["editor"]])

    def clicked(person, recorded, is_positive, evt: gr.SelectData):
        return person_click_flow(ctx, person, recorded, evt.index[0], evt.index[1], is_positive)

    c["view"].select(fn=clicked, inputs=[c["person"], c["clicks"], c["positive"]],
                     outputs=[c["view"], c["clicks"], c["status"]])
    c["use_editor"].click(fn=lambda p: editor_mask_flow(ctx, p), inputs=[c["person"]],
                          outputs=[c["mask_file"], source, c["status"]])

    def run(person, garment_photo, garment_id, mask, recorded, *form_values):
        yield from any_garment_flow(ctx, person, garment_photo, garment_id, mask, recorded, form_values)

    c["start"].click(fn=run, inputs=[c["person"], c["garment_photo"], c["garment"], c["mask_file"], c["clicks"],
                                     *values], outputs=[c["status"], c["results"], c["job_id"]])
    c["stop"].click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[c["job_id"]],
                    outputs=[c["status"]])
