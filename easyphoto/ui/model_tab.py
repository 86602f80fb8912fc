"""The "Digital model" section of the Try-On tab (issue 14): a garment photo (mannequin, half-body, or a model
wearing it) → a model wearing exactly that garment, or the same garment in another outfit, scene or pose.

Upload → **Preview pose** shows the skeleton the model mode would use (found by mediapipe or given as OpenPose JSON,
completed from body proportions, drawn on the canvas outpainting would extend to); the JSON is editable in place,
and a joint is moved by picking it and clicking on the preview → mask by parsing, an uploaded mask or clicks on the
photo → mode, model presets, identity → **Generate**: results with how well each kept the garment.

Flows are plain functions of the context and the controls' values (the tests call them without a browser); every
refusal becomes Markdown text, never a traceback. No `from __future__ import annotations`: gradio reads the
`gr.SelectData` annotation of event handlers as a real object.
"""

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto.config import DigitalModelConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.ui.config_controls import ConfigForm, field_names, values_to_config
from easyphoto.ui.job_updates import cancel, cannot, submit_and_follow
from easyphoto.ui.train_tab import upload_paths
from easyphoto.ui.tryon_tab import (
    add_click,
    overlay,
    score_text,
    scored_images_text,
    segment_clicks,
    trained_garments,
)

PREFIX = "easyphoto_model"
MODEL_FIELDS = field_names(DigitalModelConfig)
NONE = ""  # the dropdowns' "no garment / no identity" choice
EDITOR_LINK = ("Masks by clicks in the browser: the *Click-to-mask editor* below decodes each click in this page; "
               "press *Send mask to EasyPhoto* there, then *Use the editor's mask* here ([the editor on its own]"
               "(/easyphoto/v1/segment/editor)). Inside the WebUI the editor needs its API (`--api`); clicks on "
               "the photo here work without it.")


def _photo(ctx: AppContext, photo) -> Image.Image:
    from easyphoto.imageops import load_photo

    paths = upload_paths([photo] if photo else [])
    if not paths:
        raise EasyPhotoError("Upload the garment photo first.", hint="A mannequin or half-body shot wearing the garment, "
                             "or a photo of a model wearing it.")
    return load_photo(paths[0], max_megapixels=ctx.settings.max_upload_megapixels).image


def _config(values: Sequence) -> DigitalModelConfig:
    return values_to_config(DigitalModelConfig, MODEL_FIELDS, values)


def pose_preview_flow(ctx: AppContext, photo, skeleton_text: str, values: Sequence) -> tuple:
    """(the skeleton drawn on the extended canvas, the OpenPose JSON text, the padding, status); on a refusal
    (None, the JSON unchanged, [0, 0, 0, 0], why)."""
    from easyphoto.tryon.model_run import pose_preview

    try:
        preview = pose_preview(_photo(ctx, photo), _config(values), (skeleton_text or "").strip() or None)
    except EasyPhotoError as exc:
        return None, skeleton_text, [0, 0, 0, 0], cannot("preview the pose", exc)
    except ValueError as exc:
        return None, skeleton_text, [0, 0, 0, 0], f"**Invalid settings:** {exc}"
    placed = ", ".join(preview["completed_joints"]) or "none"
    left, top, right, bottom = preview["padding"]
    extended = f"; the canvas grows by {left}/{top}/{right}/{bottom} px (left/top/right/bottom) for it" \
        if any(preview["padding"]) else ""
    text = (f"**Pose**: joints placed by completion: {placed}{extended}. Edit the JSON, or pick a joint and click on "
            "the skeleton to move it; **Generate** uses this pose.")
    return preview["image"], json.dumps(preview["skeleton"]), preview["padding"], text


def move_joint_flow(ctx: AppContext, photo, skeleton_text: str, padding: Sequence[int], joint: str, x: float,
                    y: float, values: Sequence) -> tuple:
    """Move `joint` to the clicked point of the preview (extended-canvas pixels), then preview again."""
    from easyphoto.pose.openpose import KEYPOINTS
    from easyphoto.pose.skeleton import skeleton_from_json, skeleton_to_json

    if not (skeleton_text or "").strip():
        return None, skeleton_text, padding, "**Preview the pose first**: then pick a joint and click where it goes."
    try:
        bodies, size = skeleton_from_json(skeleton_text)
    except EasyPhotoError as exc:
        return None, skeleton_text, padding, cannot("move the joint", exc)
    if joint not in KEYPOINTS:
        return None, skeleton_text, padding, f"**Pick the joint to move** (one of {', '.join(KEYPOINTS)})."
    body = np.asarray(bodies[0], np.float32).copy()
    body[KEYPOINTS.index(joint)] = (x - padding[0], y - padding[1], 1.0)
    return pose_preview_flow(ctx, photo, json.dumps(skeleton_to_json([body], size)), values)


def photo_click_flow(ctx: AppContext, photo, clicks, x: float, y: float, positive: bool) -> tuple:
    """One more click on the photo (mask source 'points'): the photo with the kept garment's mask and the dots."""
    from easyphoto.imageops import to_array

    clicks = add_click(clicks, x, y, positive)
    try:
        image = _photo(ctx, photo)
    except EasyPhotoError as exc:
        return None, [], cannot("record the click", exc)
    mask, why = segment_clicks(ctx, to_array(image), clicks)
    return overlay(image, mask, clicks=clicks), clicks, f"{len(clicks)} click(s). {why}".strip()


def editor_frame_flow(ctx: AppContext, photo) -> str:
    """HTML of the click-to-mask editor showing this photo (handed over under its pixel key), or a prompt."""
    from easyphoto.imageops import to_array
    from easyphoto.segment.editor_store import store_photo

    if not photo:
        return "<p>Upload the garment photo: the editor opens it here.</p>"
    try:
        key = store_photo(ctx.paths, to_array(_photo(ctx, photo)))
    except EasyPhotoError as exc:
        return f"<p>{cannot('open the editor', exc)}</p>"
    return (f'<iframe src="/easyphoto/v1/segment/editor?photo={key}" title="click-to-mask editor" '
            'style="width: 100%; height: 720px; border: 0"></iframe>')


def pose_frame_flow(ctx: AppContext, photo, skeleton_text: str) -> str:
    """HTML of the pose editor for this photo's previewed skeleton (both handed over under the photo's key)."""
    from easyphoto.imageops import to_array
    from easyphoto.segment.editor_store import store_photo, store_pose

    if not photo or not (skeleton_text or "").strip():
        return "<p>Press <b>Preview pose</b>: the pose opens here, and its joints can be dragged.</p>"
    try:
        key = store_photo(ctx.paths, to_array(_photo(ctx, photo)))
        store_pose(ctx.paths, key, skeleton_text)
    except EasyPhotoError as exc:
        return f"<p>{cannot('open the pose editor', exc)}</p>"
    return (f'<iframe src="/easyphoto/v1/segment/pose-editor?photo={key}" title="pose editor" '
            'style="width: 100%; height: 760px; border: 0"></iframe>')


def edited_pose_flow(ctx: AppContext, photo, values: Sequence) -> tuple:
    """The pose the editor sent back for this photo, previewed (as pose_preview_flow); a prompt when none came."""
    from easyphoto.imageops import to_array
    from easyphoto.segment.editor_store import pose_file
    from easyphoto.segment.sam import pixel_key

    try:
        found = pose_file(ctx.paths, pixel_key(to_array(_photo(ctx, photo))))
    except EasyPhotoError as exc:
        return None, "", [0, 0, 0, 0], cannot("take the edited pose", exc)
    if found is None:
        return None, "", [0, 0, 0, 0], "**No edited pose for this photo yet**: drag the joints, then *Send pose*."
    return pose_preview_flow(ctx, photo, found.read_text(encoding="utf-8"), values)


def editor_mask_flow(ctx: AppContext, photo) -> tuple:
    """(the mask the editor sent for this photo as the kept garment's mask file, mask source 'mask', status); the
    mask unchanged and why when there is none."""
    import gradio as gr

    from easyphoto.imageops import to_array
    from easyphoto.segment.editor_store import mask_file
    from easyphoto.segment.sam import pixel_key

    try:
        found = mask_file(ctx.paths, pixel_key(to_array(_photo(ctx, photo))))
    except EasyPhotoError as exc:
        return gr.update(), gr.update(), cannot("take the editor's mask", exc)
    if found is None:
        return gr.update(), gr.update(), ("**No mask from the editor for this photo yet**: click on the garment in "
                                          "the editor, then press *Send mask to EasyPhoto*.")
    return str(found), "mask", "The editor's mask is the kept garment's mask (mask source 'mask')."


def model_params(ctx: AppContext, photo, choices: dict, skeleton_text: str, mask_file, clicks, values: Sequence):
    """The checked DigitalModelParams of the controls (`choices`: garment, outfit, identity, base)."""
    from easyphoto.job_params import DigitalModelParams
    from easyphoto.tryon.model_run import check_request

    config = _config(values)
    photo_path = upload_paths([photo] if photo else [])
    if photo_path:
        _photo(ctx, photo)  # an unreadable photo is said now
    masks = upload_paths([mask_file] if mask_file else [])
    outfit_photo = upload_paths([choices["outfit_image"]] if choices.get("outfit_image") else [])
    params = DigitalModelParams.checked({
        "person": str(photo_path[0]) if photo_path else None, "garment_id": choices.get("garment") or None,
        "outfit_id": choices.get("outfit") or None, "identity_id": choices.get("identity") or None,
        "outfit_image": str(outfit_photo[0]) if outfit_photo else None,
        "mask": str(masks[0]) if masks and config.mask_source == "mask" else None,
        "points": [tuple(c) for c in clicks or []] if config.mask_source == "points" else [],
        "skeleton": (skeleton_text or "").strip() or None, "config": config.to_dict(),
        "base": (choices.get("base") or "").strip() or None})
    check_request(ctx, params)
    return params


def model_flow(ctx: AppContext, photo, choices: dict, skeleton_text: str, mask_file, clicks,
               values: Sequence) -> Iterator[tuple]:
    """Yields (status, gallery, job id) while the digital_model job runs; then the images with their scores."""
    from easyphoto.tryon.run import mask_input

    def checked():
        params = model_params(ctx, photo, choices, skeleton_text, mask_file, clicks, values)
        if params.person and params.config.mode != "pose":
            mask_input(ctx, params, _photo(ctx, photo).size)  # a missing or misfit mask, no clicks: now
        return params

    yield from submit_and_follow(ctx, "digital_model", checked, "generate the digital model", "", "Digital model",
                                 lambda result: (result_text(result), result_gallery(result)))


def kept_caption(result: dict) -> str:
    kept = result.get("garment_kept")
    score = f"garment kept {kept['score']:.2f}" if kept else "garment kept: not scored"
    return f"{Path(result['file']).name} · {result.get('mode')} · seed {result.get('seed')} · {score}"


def result_gallery(result: dict) -> list[tuple[str, str]]:
    return [(r["file"], kept_caption(r)) for r in result.get("results", [])]


def result_text(result: dict) -> str:
    return scored_images_text(result.get("results", []), "image(s)", lambda item: score_text(
        item.get("garment_kept"), "garment kept", "garment kept: not scored"))


def trained_identities(ctx: AppContext) -> list[str]:
    from easyphoto.ui.portrait_tab import trained_identities as identities

    return identities(ctx)


# ---------------------------------------------------------------------------------------------- the section


def build_model_section(gr, ctx: AppContext) -> None:
    from easyphoto.pose.openpose import KEYPOINTS

    gr.Markdown("### Digital model\nA mannequin or half-body shot becomes a model wearing exactly that garment; on a "
                "photo of a model wearing it, swap the outfit, the scene or the pose. The garment's pixels are kept "
                "(modes model, outfit, scene) and each result says how well.", elem_id=f"{PREFIX}_section")
    c: dict = {}
    with gr.Row():
        c["garment"] = gr.Dropdown(label="Garment LoRA (optional; needed for a pose swap)",
                                   choices=[NONE, *trained_garments(ctx)], value=NONE, elem_id=f"{PREFIX}_garment")
        c["outfit"] = gr.Dropdown(label="Outfit garment (outfit swap)", choices=[NONE, *trained_garments(ctx)],
                                  value=NONE, elem_id=f"{PREFIX}_outfit")
        c["identity"] = gr.Dropdown(label="Identity as the model (optional)", choices=[NONE, *trained_identities(ctx)],
                                    value=NONE, elem_id=f"{PREFIX}_identity")
        c["refresh"] = gr.Button("↻ Refresh", elem_id=f"{PREFIX}_refresh")
    with gr.Row():
        with gr.Column():
            c["photo"] = gr.Image(label="Garment photo", type="filepath", elem_id=f"{PREFIX}_photo")
            c["outfit_image"] = gr.Image(label="Outfit garment photo (outfit swap with outfit_backend leffa, catvton "
                                         "or ootd: no training)", type="filepath", elem_id=f"{PREFIX}_outfit_image")
            c["mask_file"] = gr.File(label="Kept garment mask (mask source 'mask': white = the garment)",
                                     file_types=["image"], elem_id=f"{PREFIX}_mask")
            gr.Markdown(EDITOR_LINK, elem_id=f"{PREFIX}_editor_link")
            c["use_editor"] = gr.Button("Use the editor's mask", elem_id=f"{PREFIX}_use_editor")
            c["positive"] = gr.Checkbox(label="Clicks mark the garment (off: what is not)", value=True,
                                        elem_id=f"{PREFIX}_positive")
        c["view"] = gr.Image(label="Click on the garment (mask source 'points')", interactive=False, type="pil",
                             elem_id=f"{PREFIX}_view")
        with gr.Column():
            c["pose"] = gr.Image(label="Pose (click to move the picked joint)", interactive=False, type="pil",
                                 elem_id=f"{PREFIX}_pose")
            c["joint"] = gr.Dropdown(label="Joint to move", choices=list(KEYPOINTS), value="left_wrist",
                                     elem_id=f"{PREFIX}_joint")
    with gr.Accordion("Click-to-mask editor (clicks decoded in this page)", open=False, elem_id=f"{PREFIX}_editor"):
        c["editor"] = gr.HTML(editor_frame_flow(ctx, None), elem_id=f"{PREFIX}_editor_frame")
    with gr.Accordion("Pose editor (drag the joints)", open=False, elem_id=f"{PREFIX}_pose_editor"):
        c["pose_frame"] = gr.HTML(pose_frame_flow(ctx, None, ""), elem_id=f"{PREFIX}_pose_frame")
        c["use_pose"] = gr.Button("Use the edited pose", elem_id=f"{PREFIX}_use_pose")
    c["skeleton"] = gr.Textbox(label="Skeleton (OpenPose JSON; empty: found in the photo)", lines=3,
                               elem_id=f"{PREFIX}_skeleton")
    c["clicks"], c["padding"], c["job_id"] = gr.State([]), gr.State([0, 0, 0, 0]), gr.State("")
    c["base"] = gr.Textbox(label="Base model (standalone only)", visible=ctx.host.flavour == "standalone",
                           elem_id=f"{PREFIX}_base")
    c["form"] = ConfigForm(DigitalModelConfig, PREFIX)
    with gr.Accordion("Digital model settings", open=True, elem_id=f"{PREFIX}_settings"):
        c["form"].render(gr, folded=True)
    with gr.Row():
        c["preview"] = gr.Button("Preview pose", elem_id=f"{PREFIX}_preview_pose")
        c["start"] = gr.Button("Generate", variant="primary", elem_id=f"{PREFIX}_start")
        c["stop"] = gr.Button("Cancel", elem_id=f"{PREFIX}_stop")
    c["status"] = gr.Markdown(elem_id=f"{PREFIX}_status")
    c["results"] = gr.Gallery(label="Results (garment kept under each)", columns=3, elem_id=f"{PREFIX}_results")
    _wire(gr, ctx, c)


def _wire(gr, ctx: AppContext, c: dict) -> None:
    values = c["form"].components

    def refreshed():
        garments = [NONE, *trained_garments(ctx)]
        return (gr.update(choices=garments), gr.update(choices=garments),
                gr.update(choices=[NONE, *trained_identities(ctx)]))

    c["refresh"].click(fn=refreshed, outputs=[c["garment"], c["outfit"], c["identity"]])
    c["photo"].change(fn=lambda p: (None, [], "", [0, 0, 0, 0], editor_frame_flow(ctx, p)), inputs=[c["photo"]],
                      outputs=[c["view"], c["clicks"], c["skeleton"], c["padding"], c["editor"]])
    source = c["form"].components[MODEL_FIELDS.index("mask_source")]
    c["use_editor"].click(fn=lambda p: editor_mask_flow(ctx, p), inputs=[c["photo"]],
                          outputs=[c["mask_file"], source, c["status"]])

    def clicked(photo, recorded, is_positive, evt: gr.SelectData):
        return photo_click_flow(ctx, photo, recorded, evt.index[0], evt.index[1], is_positive)

    c["view"].select(fn=clicked, inputs=[c["photo"], c["clicks"], c["positive"]],
                     outputs=[c["view"], c["clicks"], c["status"]])
    pose_outputs = [c["pose"], c["skeleton"], c["padding"], c["status"]]
    def previewed(photo, skeleton, *form_values):
        shown = pose_preview_flow(ctx, photo, skeleton, form_values)
        return (*shown, pose_frame_flow(ctx, photo, shown[1]))

    c["preview"].click(fn=previewed, inputs=[c["photo"], c["skeleton"], *values],
                       outputs=[*pose_outputs, c["pose_frame"]])
    c["use_pose"].click(fn=lambda p, *v: edited_pose_flow(ctx, p, v), inputs=[c["photo"], *values],
                        outputs=pose_outputs)

    # gradio inserts the SelectData at its parameter's position among the inputs: before the form's values
    def moved(photo, skeleton, padding, joint, evt: gr.SelectData, *form_values):
        return move_joint_flow(ctx, photo, skeleton, padding, joint, evt.index[0], evt.index[1], form_values)

    c["pose"].select(fn=moved, inputs=[c["photo"], c["skeleton"], c["padding"], c["joint"], *values],
                     outputs=pose_outputs)

    def run(photo, garment, outfit, outfit_image, identity, base, skeleton, mask, recorded, *form_values):
        choices = {"garment": garment, "outfit": outfit, "outfit_image": outfit_image, "identity": identity,
                   "base": base}
        yield from model_flow(ctx, photo, choices, skeleton, mask, recorded, form_values)

    c["start"].click(fn=run, inputs=[c["photo"], c["garment"], c["outfit"], c["outfit_image"], c["identity"],
                                     c["base"], c["skeleton"], c["mask_file"], c["clicks"], *values],
                     outputs=[c["status"], c["results"], c["job_id"]])
    c["stop"].click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[c["job_id"]],
                    outputs=[c["status"]])
