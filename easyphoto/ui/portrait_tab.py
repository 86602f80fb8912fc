"""The Portrait sub-tab: identities + templates (gallery, uploads) + PortraitConfig → portraits with likeness scores.

Faces of a template are numbered left to right; clicking a face in the preview adds its number, so several people
can be placed explicitly (identity 1 → first number, identity 2 → second, ...).

No `from __future__ import annotations` here: gradio finds the `gr.SelectData` parameter of event handlers by
evaluating their annotations, which must therefore be real objects.
"""


from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from easyphoto.config import CompareConfig, PortraitConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.ui.config_controls import ConfigForm, field_names, values_to_config
from easyphoto.ui.job_updates import cancel, failure_text, follow, submit_and_follow

PREFIX = "easyphoto_portrait"
PORTRAIT_FIELDS = field_names(PortraitConfig)  # every field: the form's components and portrait_flow's values
COMPARE_FIELDS = field_names(CompareConfig)


def trained_identities(ctx: AppContext) -> list[str]:
    """Identities that have an identity.json (a finished training) or a reference face from “Check photos” (enough
    for the training-free identity modes); the portrait job re-checks what its mode needs."""
    return [i for i in ctx.identities.list() if ctx.identities.layout(i).identity_json.is_file()
            or (ctx.identities.layout(i).root / "reference.jpg").is_file()]


def gallery_items(ctx: AppContext) -> list[tuple[str, str]]:
    from easyphoto.portrait import templates

    return [(str(t.path), t.name) for t in templates.list_templates(ctx.paths)]


def parse_face_numbers(text: str) -> list[int] | None:
    """"0, 3" → [0, 3]; empty → None (the largest faces)."""
    parts = [p for p in (text or "").replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    try:
        return [int(p) for p in parts] or None
    except ValueError:
        raise ValueError(f"Face numbers must be whole numbers separated by commas, not {text!r}.") from None


def detect_faces(ctx: AppContext, path: str | None):
    """(preview with numbered boxes, faces left to right) of a template file."""
    from easyphoto.face import stacks
    from easyphoto.imageops import load_photo
    from easyphoto.portrait.template import analyse

    if not path:
        return None, []
    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    analysis = analyse(load_photo(Path(path)).image, Path(path).name, stack.detector)
    return annotate(analysis.image, [f.box for f in analysis.faces]), [list(f.box) for f in analysis.faces]


def annotate(image: Image.Image, boxes: Sequence[Sequence[float]]) -> Image.Image:
    preview = image.copy()
    draw = ImageDraw.Draw(preview)
    width = max(2, min(preview.size) // 200)
    for number, (x0, y0, x1, y1) in enumerate(boxes):
        draw.rectangle((x0, y0, x1, y1), outline=(255, 200, 0), width=width)
        draw.rectangle((x0, y0 - 14 * width, x0 + 12 * width, y0), fill=(255, 200, 0))
        draw.text((x0 + 3 * width, y0 - 13 * width), str(number), fill=(0, 0, 0))
    return preview


def face_at(boxes: Sequence[Sequence[float]], x: float, y: float) -> int | None:
    """The number of the face box containing (x, y); the nearest box centre when several overlap."""
    inside = [i for i, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= x <= x1 and y0 <= y <= y1]
    if not inside:
        return None
    return min(inside, key=lambda i: (x - (boxes[i][0] + boxes[i][2]) / 2) ** 2 + (y - (boxes[i][1] + boxes[i][3]) / 2) ** 2)


def portrait_flow(ctx: AppContext, identity_ids: Sequence[str], face_text: str, template_names: Sequence[str],
                  uploads, base: str, values: Sequence) -> Iterator[tuple]:
    """Yields (status, gallery items, job id) while the portrait job runs; `values` in PORTRAIT_FIELDS order."""
    from easyphoto.operations import submit
    from easyphoto.ui.train_tab import upload_paths

    try:
        identity_ids = [i for i in (identity_ids or []) if i]
        if not identity_ids:
            raise EasyPhotoError("Choose at least one identity.", hint="Train one in the Train tab first.")
        for identity_id in identity_ids:
            ctx.identities.get(identity_id)
        templates = [*(template_names or []), *(str(p) for p in upload_paths(uploads))]
        if not templates:
            raise EasyPhotoError("Choose a template from the gallery or upload one.")
        config = values_to_config(PortraitConfig, PORTRAIT_FIELDS, values)
        params = {"identity_ids": identity_ids, "templates": templates, "face_indices": parse_face_numbers(face_text),
                  "config": config.non_default()}  # an SDXL checkpoint's defaults apply to the rest
        if base and base.strip():
            params["base"] = base.strip()
        job = submit(ctx, "portrait", params)
    except EasyPhotoError as exc:
        yield f"**Cannot make portraits:** {exc.message} {exc.hint}".strip(), [], ""
        return
    except ValueError as exc:  # InvalidSettings and bad face numbers name the field
        yield f"**Invalid portrait settings:** {exc}", [], ""
        return
    for record in follow(ctx, job.id):
        if record.is_final:
            break
        p = record.progress
        shown = [(p.preview, "latest")] if p.preview else []
        yield f"{p.phase or record.state.value}: {p.message}".strip(), shown, job.id
    if record.state.value != "succeeded":
        yield failure_text("Portrait", record), [], ""
        return
    yield result_text(record.result or {}), result_gallery(record.result or {}), ""


def compare_flow(ctx: AppContext, identity_ids: Sequence[str], face_text: str, template_names: Sequence[str],
                 uploads, base: str, compare_values: Sequence, values: Sequence) -> Iterator[tuple]:
    """The "Compare LoRA vs training-free" button: the first chosen identity on the first template, both renders
    with their likeness side by side. Yields (status, gallery items, job id)."""

    def checked() -> dict:
        from easyphoto.job_params import ComparePortraitParams
        from easyphoto.portrait.compare import check_request
        from easyphoto.ui.train_tab import upload_paths

        ids = [i for i in (identity_ids or []) if i]
        templates = [*(template_names or []), *(str(p) for p in upload_paths(uploads))]
        if len(ids) != 1 or not templates:
            raise EasyPhotoError("Compare renders one identity on one template.",
                                 hint="Choose exactly one identity and a template (the first one is used).")
        faces = parse_face_numbers(face_text)
        params = {"identity_id": ids[0], "template": templates[0], "face_index": faces[0] if faces else None,
                  "config": values_to_config(PortraitConfig, PORTRAIT_FIELDS, values).non_default(),
                  "compare": values_to_config(CompareConfig, COMPARE_FIELDS, compare_values).to_dict()}
        if base and base.strip():
            params["base"] = base.strip()
        check_request(ctx, ComparePortraitParams.checked(params, "portrait_compare"))
        return params

    yield from submit_and_follow(ctx, "portrait_compare", checked, "compare", "", "Compare",
                                 lambda result: (compare_text(result), compare_gallery(result)))


def compare_gallery(result: dict) -> list[tuple[str, str]]:
    """Both portraits, LoRA first, each captioned with its mode and likeness (the same scorer for both)."""
    return [(result[side]["file"], f"{result[side]['identity_mode']} · likeness "
                                   f"{_score_text(result[side]['likeness'])}")
            for side in ("lora", "training_free") if side in result]


def compare_text(result: dict) -> str:
    lora, free = result.get("lora") or {}, result.get("training_free") or {}
    text = (f"**LoRA** {_score_text(lora.get('likeness'))} · **{result.get('training_free_mode')}** "
            f"{_score_text(free.get('likeness'))} (FaceID likeness, same template, seed {result.get('seed')})")
    licence = free.get("face_model_licence")
    return f"{text}\n\nFace models: {licence}" if licence else text


def likeness_caption(portrait: dict) -> str:
    scores = ", ".join(f"{f['identity_id']} {_score_text(f['likeness'])}" for f in portrait.get("faces") or [])
    return f"{Path(portrait['file']).name} · FaceID {scores}"


def _score_text(value: float | None) -> str:
    return "no face found" if value is None else f"{value:.2f}"


def result_gallery(result: dict) -> list[tuple[str, str]]:
    return [(p["file"], likeness_caption(p)) for p in result.get("portraits", [])]


def result_text(result: dict) -> str:
    lines = [f"**{len(result.get('portraits', []))} portrait(s)** saved in "
             f"`{Path(result['portraits'][0]['file']).parent}`" if result.get("portraits") else "**No portrait made.**"]
    for failure in result.get("failed", []):
        lines.append(f"- {failure['template']}: {failure['error']['message']}")
    return "\n".join(lines)


def build_portrait_tab(gr, ctx: AppContext) -> None:
    gr.Markdown("Pick trained identities and one or more templates. Faces are numbered left to right; click faces "
                "in the preview to choose them (first identity → first number).", elem_id="easyphoto_portrait_intro")
    with gr.Row():
        identities = gr.Dropdown(choices=trained_identities(ctx), multiselect=True, label="Identities",
                                 elem_id="easyphoto_portrait_identities")
        refresh = gr.Button("↻ Refresh", elem_id="easyphoto_portrait_refresh")
        faces = gr.Textbox(label="Face numbers (empty: the largest faces)", placeholder="e.g. 0, 3",
                           elem_id="easyphoto_portrait_faces")
    with gr.Row():
        with gr.Column():
            items = gallery_items(ctx)  # one folder listing for both components
            gallery = gr.Gallery(value=items, label="Template gallery", columns=4,
                                 elem_id="easyphoto_portrait_gallery")
            chosen = gr.Dropdown(choices=[name for _, name in items], multiselect=True,
                                 label="Templates from the gallery", elem_id="easyphoto_portrait_templates")
            uploads = gr.File(label="Or upload templates (several for a batch)", file_count="multiple",
                              file_types=["image"], elem_id="easyphoto_portrait_uploads")
        with gr.Column():
            preview = gr.Image(label="Faces in the template (click to choose)", interactive=False,
                               elem_id="easyphoto_portrait_preview")
            boxes = gr.State([])
    base = gr.Textbox(label="Base model (standalone only: the checkpoint the identities were trained on)",
                      visible=ctx.host.flavour == "standalone", elem_id="easyphoto_portrait_base")
    form = ConfigForm(PortraitConfig, PREFIX)
    with gr.Accordion("Portrait settings", open=False, elem_id="easyphoto_portrait_settings"):
        form.render(gr)
    compare_form = ConfigForm(CompareConfig, f"{PREFIX}_compare")
    with gr.Accordion("Compare LoRA vs training-free", open=False, elem_id="easyphoto_portrait_compare_settings"):
        compare_form.render(gr)
    with gr.Row():
        start = gr.Button("Generate", variant="primary", elem_id="easyphoto_portrait_start")
        compare = gr.Button("Compare LoRA vs training-free", elem_id="easyphoto_portrait_compare")
        stop = gr.Button("Cancel", elem_id="easyphoto_portrait_stop")
    job_id = gr.State("")
    status = gr.Markdown(elem_id="easyphoto_portrait_status")
    results = gr.Gallery(label="Portraits (FaceID likeness under each)", columns=3, elem_id="easyphoto_portrait_results")
    _wire_selection(gr, ctx, gallery, chosen, preview, boxes, faces)

    def refresh_lists():
        fresh = gallery_items(ctx)
        return gr.update(choices=trained_identities(ctx)), fresh, gr.update(choices=[name for _, name in fresh])

    refresh.click(fn=refresh_lists, outputs=[identities, gallery, chosen])

    def run(ids, face_text, names, files, base_path, *values):
        yield from portrait_flow(ctx, ids, face_text, names, files, base_path, values)

    start.click(fn=run, inputs=[identities, faces, chosen, uploads, base, *form.components],
                outputs=[status, results, job_id])
    _wire_compare(ctx, compare, [identities, faces, chosen, uploads, base], compare_form, form,
                  [status, results, job_id])
    stop.click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[job_id], outputs=[status])
    if ctx.paste_buttons is not None:
        _send_to_webui(gr, ctx, results)


def _wire_compare(ctx, button, choices: list, compare_form, form, outputs: list) -> None:
    """The Compare button: the choices (identities, faces, templates, uploads, base), then both forms' values."""
    count = len(COMPARE_FIELDS)

    def run_compare(ids, face_text, names, files, base_path, *values):
        yield from compare_flow(ctx, ids, face_text, names, files, base_path, values[:count], values[count:])

    button.click(fn=run_compare, inputs=[*choices, *compare_form.components, *form.components], outputs=outputs)


def _wire_selection(gr, ctx, gallery, chosen, preview, boxes, faces) -> None:
    def pick_template(names, evt: gr.SelectData):
        items = gallery_items(ctx)
        name = items[evt.index][1] if 0 <= evt.index < len(items) else None
        picked = list(names or []) + ([name] if name and name not in (names or []) else [])
        image, found = detect_faces(ctx, items[evt.index][0]) if name else (None, [])
        return picked, image, found, ""

    gallery.select(fn=pick_template, inputs=[chosen], outputs=[chosen, preview, boxes, faces])

    def click_face(found, text, evt: gr.SelectData):
        x, y = evt.index[0], evt.index[1]
        number = face_at(found, x, y)
        if number is None:
            return text
        return ", ".join(str(n) for n in [*(parse_face_numbers(text) or []), number])

    preview.select(fn=click_face, inputs=[boxes, faces], outputs=[faces])


def _send_to_webui(gr, ctx, results) -> None:
    """"Send to img2img / inpaint" for the selected portrait (the WebUI reads the PNG's infotext)."""
    selected = gr.Image(visible=False, type="pil", elem_id="easyphoto_portrait_selected")
    infotext = gr.Textbox(visible=False, elem_id="easyphoto_portrait_infotext")

    def select(evt: gr.SelectData, items):
        path = _gallery_path(items[evt.index]) if items and 0 <= evt.index < len(items) else None
        if path is None:
            return None, ""
        with Image.open(path) as image:
            return image.copy(), image.info.get("parameters", "")

    results.select(fn=select, inputs=[results], outputs=[selected, infotext])
    ctx.paste_buttons(selected, infotext)


def _gallery_path(item) -> str | None:
    """Gallery values are (path, caption) pairs, or dicts on gradio 4."""
    if isinstance(item, list | tuple):
        item = item[0]
    if isinstance(item, dict):
        item = (item.get("image") or {}).get("path") or item.get("name")
    return item if isinstance(item, str) else None
