"""The Try-On sub-tab (issue 13): 1. a garment's photos, masks and clicks → its dataset (captions editable) → its
LoRA; 2. a trained garment on a person photo, with a preview of the mask that would be repainted.

Every flow is a plain function of the context and the controls' values (the tests call them without a browser);
the work is done by easyphoto.tryon.* and the job queue, and every refusal becomes Markdown text
("**Cannot ...:** message hint"), never a traceback. The dataset, the training and the try-on run as jobs (one
GPU user at a time, cancellable, kept in the job history); the tab follows them.

No `from __future__ import annotations` here: gradio finds the `gr.SelectData` parameter of event handlers by
evaluating their annotations, which must therefore be real objects.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from easyphoto.config import TrainConfig, TryOnConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError, InvalidRequest
from easyphoto.store import GarmentLayout, read_json, suggest_identity_id
from easyphoto.tryon.dataset import GarmentDatasetConfig
from easyphoto.ui.config_controls import ConfigForm, field_names, values_to_config
from easyphoto.ui.job_updates import cancel, cannot, failure_text, follow, submit_and_follow
from easyphoto.ui.train_tab import upload_items, upload_paths

PREFIX = "easyphoto_tryon"
DATASET_FIELDS = field_names(GarmentDatasetConfig)  # the dataset form's components, in this order
TRAIN_FIELDS = field_names(TrainConfig)  # the training form's components (every field; some hidden)
TRYON_FIELDS = field_names(TryOnConfig)  # the try-on form's components
# TrainConfig groups that shape a garment LoRA. "Photo selection" and "Dataset" are about face photos (the garment
# dataset has its own settings): they are built hidden, holding their defaults, so the form stays the whole config.
GARMENT_TRAIN_GROUPS = ["LoRA", "Training", "Speed and memory", "Validation"]
REPAINT_COLOUR = (255, 60, 60)  # the mask that would be repainted / the garment's mask
PROTECTED_COLOUR = (60, 120, 255)  # grown garment pixels kept out of the mask (face, hair, hands)
POSITIVE_DOT, NEGATIVE_DOT = (40, 220, 40), (250, 40, 40)
OVERLAY_ALPHA = 0.45
_DEFAULT_POSE = object()  # mask_preview_flow's default: the pipeline's own (mediapipe when installed)


def dataset_config(values: Sequence) -> GarmentDatasetConfig:
    """The dataset form's values as a config (an empty trigger is None: the garment id's default)."""
    return values_to_config(GarmentDatasetConfig, DATASET_FIELDS, values)


def _garment_id(text: str | None) -> str:
    garment_id = (text or "").strip()
    if not garment_id:
        raise EasyPhotoError("Enter a garment id first.", hint="For example 'red_dress' (lowercase letters, digits, "
                             "'_' or '-').")
    return garment_id


# ---------------------------------------------------------------------------------------------- overlays


def overlay(image: Image.Image, mask: np.ndarray | None = None, protected: np.ndarray | None = None,
            clicks: Sequence[Sequence] = ()) -> Image.Image:
    """The photo with `mask` tinted red, `protected` blue and each click [x, y, positive] as a green / red dot."""
    pixels = np.asarray(image.convert("RGB"), np.float32)
    for region, colour in ((mask, REPAINT_COLOUR), (protected, PROTECTED_COLOUR)):
        if region is not None and np.asarray(region).shape == pixels.shape[:2]:
            inside = np.asarray(region) > 0
            pixels[inside] = (1 - OVERLAY_ALPHA) * pixels[inside] + OVERLAY_ALPHA * np.array(colour, np.float32)
    shown = Image.fromarray(pixels.round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(shown)
    radius = max(4, min(shown.size) // 80)
    for x, y, positive in clicks:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=POSITIVE_DOT if positive else NEGATIVE_DOT,
                     outline=(255, 255, 255), width=max(1, radius // 3))
    return shown


def add_click(clicks: Sequence | None, x: float, y: float, positive: bool) -> list[list]:
    return [*[list(c) for c in clicks or []], [float(x), float(y), bool(positive)]]


def segment_clicks(ctx: AppContext, pixels: np.ndarray, clicks: Sequence[Sequence]) -> tuple[np.ndarray | None, str]:
    """(the point segmenter's mask of the clicks, "") or (None, why not: how to install it, or the input error)."""
    from easyphoto.segment import Point, load_segmenter

    if not any(positive for _, _, positive in clicks):
        return None, "Click on the garment at least once (a positive click) to see its mask."
    try:
        segmenter = load_segmenter(ctx.paths)  # cached: every click on one photo reuses its image embedding
        return segmenter.segment(pixels, [Point(float(x), float(y), bool(p)) for x, y, p in clicks]), ""
    except EasyPhotoError as exc:
        return None, f"The clicks are recorded, but no mask can be shown: {exc.message} {exc.hint}".strip()


# ---------------------------------------------------------------------------------------------- garment photos


def garment_photo_names(ctx: AppContext, garment_id: str) -> list[str]:
    """The garment's stored photos by name; [] for an unknown or invalid id."""
    from easyphoto.store import photo_files

    try:
        return [p.name for p in photo_files(ctx.garments.get((garment_id or "").strip()).photos)]
    except EasyPhotoError:
        return []


def add_photos_flow(ctx: AppContext, garment_id: str, files) -> tuple[str, list[str]]:
    """(status, the garment's photo names): stores the uploads, creating the garment when it is new."""
    from easyphoto.tryon import garments

    try:
        garment_id = _garment_id(garment_id)
        if not files:
            raise EasyPhotoError("Choose photos of the garment to add.", hint="10–30 photos, from several sides.")
        added = garments.add_photos(ctx, garment_id, upload_items(files))
    except EasyPhotoError as exc:
        return cannot("add the photos", exc), garment_photo_names(ctx, garment_id)
    names = garment_photo_names(ctx, garment_id)
    return (f"Uploads: {added.summary()}. `{garment_id}` has {len(names)} photo(s). Pick a photo to give it a mask "
            "(upload one, or click on the garment), or build the dataset with the clothes parser."), names


def _photo(ctx: AppContext, garment_id: str, photo: str) -> tuple[Image.Image, GarmentLayout]:
    from easyphoto.imageops import load_photo
    from easyphoto.store import find_photo

    if not photo:
        raise EasyPhotoError("Pick one of the garment's photos first.")
    layout = ctx.garments.get(_garment_id(garment_id))
    path = find_photo(layout, photo)
    return load_photo(path, max_megapixels=ctx.settings.max_upload_megapixels).image, layout


def show_photo_flow(ctx: AppContext, garment_id: str, photo: str) -> tuple[Image.Image | None, list, str]:
    """(the photo with its uploaded mask tinted, or its recorded clicks; the clicks; what its mask comes from)."""
    from easyphoto.tryon.garments import photo_prompts, read_mask

    if not photo:
        return None, [], ""
    try:
        image, layout = _photo(ctx, garment_id, photo)
    except EasyPhotoError as exc:
        return None, [], cannot("show the photo", exc)
    mask_file = layout.masks / f"{photo}.png"
    prompts = photo_prompts(layout).get(photo)
    clicks = [[p.x, p.y, p.positive] for p in prompts.points] if prompts else []
    if mask_file.is_file():
        return overlay(image, read_mask(mask_file), clicks=clicks), clicks, (
            f"`{photo}` has an uploaded mask (red): it is used whatever the mask source.")
    if not clicks:
        return overlay(image), clicks, (f"`{photo}` has no mask: upload one, or click on the garment (mask source "
                                        "'points'); with mask source 'parsing' the clothes parser finds it.")
    from easyphoto.imageops import to_array

    mask, why = segment_clicks(ctx, to_array(image), clicks)
    return overlay(image, mask, clicks=clicks), clicks, f"`{photo}`: {len(clicks)} click(s) recorded. {why}".strip()


def upload_mask_flow(ctx: AppContext, garment_id: str, photo: str, mask_file) -> tuple[Image.Image | None, str]:
    """Store an uploaded mask for one photo (white or opaque = the garment); (the photo with it tinted, status)."""
    from easyphoto.tryon import garments

    try:
        paths = upload_paths([mask_file] if mask_file else [])
        if not paths:
            raise EasyPhotoError("Choose the mask image to upload.", hint="The garment white (or opaque) on black "
                                 "(or transparent), the photo's size or its aspect ratio.")
        image, _ = _photo(ctx, garment_id, photo)
        stored = garments.add_mask(ctx, garment_id.strip(), photo, paths[0])
    except EasyPhotoError as exc:
        return None, cannot("store the mask", exc)
    mask = garments.read_mask(stored)
    return overlay(image, mask), f"Mask stored for `{photo}` ({np.count_nonzero(mask) / mask.size:.0%} of the photo)."


def click_photo_flow(ctx: AppContext, garment_id: str, photo: str, clicks, x: float, y: float,
                     positive: bool) -> tuple[Image.Image | None, list, str]:
    """Record one more click on a garment photo (set_points) and show the point segmenter's mask of all of them."""
    from easyphoto.imageops import to_array
    from easyphoto.segment import Point
    from easyphoto.tryon import garments

    clicks = add_click(clicks, x, y, positive)
    try:
        image, _ = _photo(ctx, garment_id, photo)
        if any(p for _, _, p in clicks):  # all-negative clicks are refused by set_points: wait for a positive one
            garments.set_points(ctx, garment_id.strip(), photo, [Point(cx, cy, p) for cx, cy, p in clicks])
    except EasyPhotoError as exc:
        return None, clicks[:-1], cannot("record the click", exc)
    mask, why = segment_clicks(ctx, to_array(image), clicks)
    saved = f"{len(clicks)} click(s) on `{photo}`" + (" saved" if any(p for _, _, p in clicks) else " (not saved yet)")
    return overlay(image, mask, clicks=clicks), clicks, f"{saved}. {why}".strip()


def clear_clicks_flow(ctx: AppContext, garment_id: str, photo: str) -> tuple[Image.Image | None, list, str]:
    from easyphoto.tryon import garments

    try:
        image, _ = _photo(ctx, garment_id, photo)
        garments.set_points(ctx, garment_id.strip(), photo, [])
    except EasyPhotoError as exc:
        return None, [], cannot("clear the clicks", exc)
    return overlay(image), [], f"Clicks of `{photo}` cleared."


# ---------------------------------------------------------------------------------------------- dataset, captions


def dataset_flow(ctx: AppContext, garment_id: str, values: Sequence = ()) -> Iterator[tuple]:
    """Yields (gallery, summary, job id) while the garment_dataset job runs; `values` in DATASET_FIELDS order."""
    from easyphoto.operations import submit
    from easyphoto.tryon.dataset import collect_inputs

    try:
        garment_id = _garment_id(garment_id)
        config = dataset_config(values) if values else GarmentDatasetConfig()
        collect_inputs(ctx.garments.get(garment_id), config)  # no photos / no masks for the source: said now
        job = submit(ctx, "garment_dataset", {"garment_id": garment_id, "dataset": config.to_dict()})
    except EasyPhotoError as exc:
        yield [], cannot("build the dataset", exc), ""
        return
    except ValueError as exc:  # InvalidSettings names the field
        yield [], f"**Invalid dataset settings:** {exc}", ""
        return
    for record in follow(ctx, job.id):
        if record.is_final:
            break
        p = record.progress
        step = f" ({p.step}/{p.total})" if p.total else ""
        yield _unchanged(), f"{record.state.value.capitalize()}: {p.phase or 'waiting'}{step} {p.message}".strip(), job.id
    if record.state.value != "succeeded":
        yield [], failure_text("Garment dataset", record), ""
        return
    yield (*dataset_gallery(ctx, garment_id), "")


def _unchanged():
    import gradio as gr

    return gr.update()


def dataset_gallery(ctx: AppContext, garment_id: str) -> tuple[list, str]:
    """(gallery: each kept crop with its caption, each dropped photo with its reason; summary) of the last build."""
    from easyphoto.tryon.dataset import captions
    from easyphoto.tryon.garments import thumbnails

    layout = ctx.garments.get(garment_id)
    if not layout.report.is_file():
        return [], f"`{garment_id}` has no dataset yet: press **Build dataset**."
    report = read_json(layout.report)
    texts = dict(captions(layout)) if (layout.dataset / "metadata.jsonl").is_file() else {}
    items, dropped = [], []
    for photo in report.get("photos", []):
        image = photo.get("image")
        if photo.get("kept") and image and (layout.dataset / image).is_file():
            items.append((str(layout.dataset / image), f"{image} ({photo['file']}): {texts.get(image, '')}"))
        else:
            items.extend(thumbnails(layout, {"photos": [photo]}))
            dropped.append(f"- `{photo['file']}`: {photo.get('reason') or 'dropped'}")
    summary = (f"**{report.get('kept', 0)} of {report.get('total', 0)} photos kept** for `{garment_id}`; captions by "
               f"{report.get('tagger') or 'the trigger and category words (no tagger)'}.")
    if report.get("stale"):
        summary += f" Note: {report['stale']}"
    return items, summary + ("\n\nDropped:\n" + "\n".join(dropped) if dropped else "")


def caption_files(ctx: AppContext, garment_id: str) -> list[str]:
    """The dataset's training images (train/0.png, ...); [] when there is none."""
    from easyphoto.tryon.dataset import captions

    try:
        return [name for name, _ in captions(ctx.garments.get((garment_id or "").strip()))]
    except EasyPhotoError:
        return []


def caption_of(ctx: AppContext, garment_id: str, file_name: str) -> str:
    from easyphoto.tryon.dataset import captions

    try:
        return dict(captions(ctx.garments.get((garment_id or "").strip()))).get(file_name or "", "")
    except EasyPhotoError:
        return ""


def save_caption_flow(ctx: AppContext, garment_id: str, file_name: str, text: str) -> tuple[str, str]:
    """(the caption as stored, status)."""
    from easyphoto.operations import job_queue, refuse_while_busy
    from easyphoto.tryon.dataset import set_caption

    try:
        if not file_name:
            raise EasyPhotoError("Pick the training image whose caption to edit.", hint="Build the dataset first.")
        layout = ctx.garments.get(_garment_id(garment_id))
        refuse_while_busy(job_queue(ctx), layout.garment_id, "then edit the caption", phase="dataset")
        stored = set_caption(layout, file_name, text)
    except EasyPhotoError as exc:
        return text, cannot("save the caption", exc)
    return stored, f"Caption of `{file_name}` saved. A rebuild of the dataset makes the captions again."


# ---------------------------------------------------------------------------------------------- garment LoRA


def garment_train_flow(ctx: AppContext, garment_id: str, base: str, resume: bool, dataset_values: Sequence,
                       train_values: Sequence) -> Iterator[tuple]:
    """Yields (status, latest validation image, job id) while the garment_train job runs (the dataset is rebuilt
    first when it is missing or out of date)."""
    from easyphoto.job_params import GarmentTrainParams
    from easyphoto.operations import submit
    from easyphoto.train.runner import base_model

    try:
        garment_id = _garment_id(garment_id)
        ctx.garments.get(garment_id)
        dataset = dataset_config(dataset_values)
        config = values_to_config(TrainConfig, TRAIN_FIELDS, train_values)
        params = GarmentTrainParams.checked({"garment_id": garment_id, "dataset": dataset.to_dict(),
                                             "config": config.to_dict(), "base": (base or "").strip() or None,
                                             "resume": bool(resume)})
        base_model(ctx, params)  # no base model: said now, not by a failed job
        job = submit(ctx, "garment_train", params)
    except EasyPhotoError as exc:
        yield cannot("train the garment", exc), None, ""
        return
    except ValueError as exc:
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
        yield failure_text("Garment training", record), record.progress.preview, ""
        return
    result = record.result or {}
    yield (f"**Trained garment `{garment_id}`** ({result.get('steps')} steps): `{result.get('lora_file')}`. "
           "Pick it under **Try on** (press ↻)."), record.progress.preview, ""


# ---------------------------------------------------------------------------------------------- try-on


def trained_garments(ctx: AppContext) -> list[str]:
    """Garments with a garment.json (a finished training); the try-on re-checks the LoRA file."""
    return [g for g in ctx.garments.list() if ctx.garments.layout(g).garment_json.is_file()]


def garment_category(ctx: AppContext, garment_id: str) -> str | None:
    """The category a trained garment was cut out as (what the try-on should repaint), None when unknown."""
    try:
        layout = ctx.garments.get(garment_id or "")
    except EasyPhotoError:
        return None
    info = read_json(layout.garment_json) if layout.garment_json.is_file() else {}
    record = layout.dataset / "dataset.json"
    settings = (read_json(record).get("settings") or {}) if record.is_file() else {}
    return info.get("category") or settings.get("category")


def _person(ctx: AppContext, person) -> Image.Image:
    from easyphoto.imageops import load_photo

    paths = upload_paths([person] if person else [])
    if not paths:
        raise EasyPhotoError("Upload the person photo first.", hint="A photo of a person wearing the garment to "
                             "replace, facing the camera.")
    return load_photo(paths[0], max_megapixels=ctx.settings.max_upload_megapixels).image


def person_click_flow(ctx: AppContext, person, clicks, x: float, y: float,
                      positive: bool) -> tuple[Image.Image | None, list, str]:
    """One more click on the person photo (mask source 'points'); the photo with the segmenter's mask and the dots."""
    from easyphoto.imageops import to_array

    clicks = add_click(clicks, x, y, positive)
    try:
        image = _person(ctx, person)
    except EasyPhotoError as exc:
        return None, [], cannot("record the click", exc)
    mask, why = segment_clicks(ctx, to_array(image), clicks)
    return overlay(image, mask, clicks=clicks), clicks, f"{len(clicks)} click(s). {why}".strip()


def person_view(ctx: AppContext, person) -> tuple[Image.Image | None, list, str]:
    """A newly uploaded person photo: shown for clicking, earlier clicks forgotten."""
    try:
        return (overlay(_person(ctx, person)), [], "") if person else (None, [], "")
    except EasyPhotoError as exc:
        return None, [], cannot("read the person photo", exc)


def _tryon_params(ctx: AppContext, garment_id: str, person, mask_file, clicks, values: Sequence, base: str = ""):
    """The checked TryOnParams of the controls, and the person photo (read: an unreadable one is said now)."""
    from easyphoto.job_params import TryOnParams

    config = values_to_config(TryOnConfig, TRYON_FIELDS, values)
    image = _person(ctx, person)
    masks = upload_paths([mask_file] if mask_file else [])
    params = TryOnParams.checked({
        "garment_id": garment_id or "preview", "person": str(upload_paths([person])[0]),
        "mask": str(masks[0]) if masks and config.mask_source == "mask" else None,
        "points": [tuple(c) for c in clicks or []] if config.mask_source == "points" else [],
        "config": config.to_dict(), "base": (base or "").strip() or None})
    return params, image


def _given_mask(ctx: AppContext, params, image: Image.Image, pixels: np.ndarray):
    """run.mask_input's checks (a mask of the photo's size, clicks for 'points'), then the clicks segmented."""
    from easyphoto.tryon.pipeline import MaskInput
    from easyphoto.tryon.run import mask_input

    given = mask_input(ctx, params, image.size)
    if params.config.mask_source != "points":
        return given
    mask, why = segment_clicks(ctx, pixels, params.points)
    if mask is None:
        raise InvalidRequest(why, phase="tryon")
    return MaskInput(mask=mask)


def mask_preview_flow(ctx: AppContext, person, mask_file, clicks, values: Sequence,
                      pose=_DEFAULT_POSE) -> tuple[Image.Image | None, str]:
    """(the person photo with the mask a try-on would repaint in red and the protected pixels in blue, text),
    without generating anything: TryOnPipeline.prepare on the parsing / the clicks / the uploaded mask."""
    from easyphoto.imageops import dilate, to_array
    from easyphoto.tryon.pipeline import TryOnPipeline
    from easyphoto.tryon.run import clothes_parser

    try:
        params, image = _tryon_params(ctx, "", person, mask_file, clicks, values)
        pixels = to_array(image)
        given = _given_mask(ctx, params, image, pixels)
        parser, note = clothes_parser(ctx, params.config.mask_source)
        extra = {} if pose is _DEFAULT_POSE else {"pose": pose}
        result, _ = TryOnPipeline(None, params.config, parser=parser, **extra).prepare(pixels, given)
    except EasyPhotoError as exc:
        return None, cannot("preview the mask", exc)
    except ValueError as exc:
        return None, f"**Invalid try-on settings:** {exc}"
    protected = (dilate(result.garment, params.config.mask_dilation) > 0) & (result.mask == 0)
    shown = overlay(image, result.mask, protected, params.points)
    kept = ", ".join(f"{name} {pixels_} px" for name, pixels_ in result.protected.items()) or "nothing"
    notes = [*result.notes, *([note] if note else [])]
    text = (f"**Mask preview** ({params.config.mask_source}, {params.config.category}): "
            f"{np.count_nonzero(result.mask) / result.mask.size:.1%} of the photo is repainted (red); kept out of "
            f"it (blue): {kept}." + "".join(f"\n- {n}" for n in notes))
    return shown, text


def tryon_flow(ctx: AppContext, garment_id: str, person, mask_file, clicks, base: str,
               values: Sequence) -> Iterator[tuple]:
    """Yields (status, gallery, job id) while the tryon job runs; the results with their garment fidelity."""
    from easyphoto.tryon.run import mask_input, require_trained_garment

    def checked():
        if not garment_id:
            raise EasyPhotoError("Pick a trained garment first.", hint="Train one under Garments, then press ↻.")
        require_trained_garment(ctx, garment_id)
        params, image = _tryon_params(ctx, garment_id, person, mask_file, clicks, values, base)
        mask_input(ctx, params, image.size)  # a missing or misfit mask, no clicks: said before the job
        return params

    yield from submit_and_follow(ctx, "tryon", checked, "try on", "try-on ", "Try-on",
                                 lambda result: (tryon_result_text(result), tryon_gallery(result)))


def fidelity_caption(tryon: dict) -> str:
    fidelity = tryon.get("fidelity")
    score = f"garment fidelity {fidelity['score']:.2f}" if fidelity else "no fidelity score (no garment reference)"
    return f"{Path(tryon['file']).name} · seed {tryon.get('seed')} · {score}"


def tryon_gallery(result: dict) -> list[tuple[str, str]]:
    return [(t["file"], fidelity_caption(t)) for t in result.get("tryons", [])]


def tryon_result_text(result: dict) -> str:
    return scored_images_text(result.get("tryons", []), "try-on image(s)", lambda t: score_text(
        t.get("fidelity"), "fidelity", "no fidelity score"))


def score_text(score: dict | None, label: str, absent: str) -> str:
    """'fidelity 0.81 (colour 0.90, structure 0.70)', or `absent`."""
    if not score:
        return absent
    return f"{label} {score['score']:.2f} (colour {score['colour']:.2f}, structure {score['structure']:.2f})"


def scored_images_text(items: list[dict], noun: str, detail) -> str:
    """Markdown: how many images were saved where, then each with `detail(item)` and its notes."""
    if not items:
        return f"**No {noun.replace('(s)', '')} made.**"
    lines = [f"**{len(items)} {noun}** saved in `{Path(items[0]['file']).parent}`."]
    for item in items:
        notes = "; ".join(item.get("notes") or [])
        lines.append(f"- `{Path(item['file']).name}`: {detail(item)}" + (f" — {notes}" if notes else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the tab


def build_tryon_tab(gr, ctx: AppContext) -> None:
    gr.Markdown("**Garments**: a garment's photos (with a mask per photo, clicks, or the clothes parser) become its "
                "dataset and its LoRA. **Try on**: a trained garment repaints that garment on a person photo.",
                elem_id="easyphoto_tryon_intro")
    dataset_form = ConfigForm(GarmentDatasetConfig, f"{PREFIX}_dataset")
    garment = _build_garment_photos(gr, ctx)
    _build_dataset_step(gr, ctx, garment, dataset_form)
    _build_training_step(gr, ctx, garment, dataset_form)
    _build_tryon_section(gr, ctx)


def _build_garment_photos(gr, ctx: AppContext):
    gr.Markdown("### Garments", elem_id="easyphoto_tryon_garments")
    with gr.Row():
        garment = gr.Textbox(label="Garment id", placeholder="e.g. red_dress", elem_id=f"{PREFIX}_garment_id",
                             info="lowercase letters, digits, '_' or '-' (not an identity's id)")
        suggestion = gr.Textbox(label="Suggested id for a name", elem_id=f"{PREFIX}_garment_suggest",
                                placeholder="type a name to get a valid id")
    suggestion.change(fn=lambda name: suggest_identity_id(name) if name else "", inputs=[suggestion],
                      outputs=[garment])
    with gr.Row():
        uploads = gr.File(label="Garment photos", file_count="multiple", file_types=["image"],
                          elem_id=f"{PREFIX}_garment_uploads")
        add = gr.Button("Add photos", elem_id=f"{PREFIX}_garment_add")
    status = gr.Markdown(elem_id=f"{PREFIX}_garment_status")
    with gr.Row():
        with gr.Column():
            photo = gr.Dropdown(label="Photo", choices=[], elem_id=f"{PREFIX}_garment_photo")
            mask_file = gr.File(label="Its mask (white or opaque = the garment)", file_types=["image"],
                                elem_id=f"{PREFIX}_garment_mask")
            with gr.Row():
                save_mask = gr.Button("Store mask", elem_id=f"{PREFIX}_garment_store_mask")
                positive = gr.Checkbox(label="Clicks mark the garment (off: what is not the garment)", value=True,
                                       elem_id=f"{PREFIX}_garment_positive")
                clear = gr.Button("Clear clicks", elem_id=f"{PREFIX}_garment_clear_clicks")
        view = gr.Image(label="The photo (click on the garment)", interactive=False, type="pil",
                        elem_id=f"{PREFIX}_garment_view")
    clicks = gr.State([])

    def added(garment_id, files):
        text, names = add_photos_flow(ctx, garment_id, files)
        return text, gr.update(choices=names, value=None)

    add.click(fn=added, inputs=[garment, uploads], outputs=[status, photo])
    garment.blur(fn=lambda g: gr.update(choices=garment_photo_names(ctx, g), value=None), inputs=[garment],
                 outputs=[photo])
    def shown(garment_id, name):
        image, recorded, text = show_photo_flow(ctx, garment_id, name)
        return image, recorded, text if name else gr.update()  # a list reset after "Add photos" keeps its status

    photo.change(fn=shown, inputs=[garment, photo], outputs=[view, clicks, status])
    save_mask.click(fn=lambda g, p, m: upload_mask_flow(ctx, g, p, m), inputs=[garment, photo, mask_file],
                    outputs=[view, status])
    clear.click(fn=lambda g, p: clear_clicks_flow(ctx, g, p), inputs=[garment, photo], outputs=[view, clicks, status])

    def clicked(garment_id, name, recorded, is_positive, evt: gr.SelectData):
        return click_photo_flow(ctx, garment_id, name, recorded, evt.index[0], evt.index[1], is_positive)

    view.select(fn=clicked, inputs=[garment, photo, clicks, positive], outputs=[view, clicks, status])
    return garment


def _build_dataset_step(gr, ctx: AppContext, garment, form: ConfigForm) -> None:
    gr.Markdown("#### Dataset: each photo cut out onto white around the garment, captioned",
                elem_id=f"{PREFIX}_dataset_step")
    form.render(gr, folded=True)
    with gr.Row():
        build = gr.Button("Build dataset", variant="primary", elem_id=f"{PREFIX}_dataset_build")
        stop = gr.Button("Cancel", elem_id=f"{PREFIX}_dataset_cancel")
    job_id = gr.State("")
    summary = gr.Markdown(elem_id=f"{PREFIX}_dataset_summary")
    gallery = gr.Gallery(label="Kept crops with their captions; dropped photos with the reason", columns=5,
                         elem_id=f"{PREFIX}_dataset_gallery")
    with gr.Row():
        image = gr.Dropdown(label="Training image", choices=[], elem_id=f"{PREFIX}_caption_image")
        caption = gr.Textbox(label="Its caption", elem_id=f"{PREFIX}_caption_text", lines=2)
        save = gr.Button("Save caption", elem_id=f"{PREFIX}_caption_save")

    def run(garment_id, *values):
        yield from dataset_flow(ctx, garment_id, values)

    def refresh_images(garment_id):
        return gr.update(choices=caption_files(ctx, garment_id), value=None)

    build.click(fn=run, inputs=[garment, *form.components], outputs=[gallery, summary, job_id]).then(
        fn=refresh_images, inputs=[garment], outputs=[image])
    garment.blur(fn=refresh_images, inputs=[garment], outputs=[image])
    stop.click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[job_id], outputs=[summary])
    image.change(fn=lambda g, f: caption_of(ctx, g, f), inputs=[garment, image], outputs=[caption])

    def saved(garment_id, file_name, text):
        stored, status = save_caption_flow(ctx, garment_id, file_name, text)
        shown = dataset_gallery(ctx, garment_id.strip())[0] if status.startswith("Caption") else gr.update()
        return stored, status, shown

    save.click(fn=saved, inputs=[garment, image, caption], outputs=[caption, summary, gallery])


def _build_training_step(gr, ctx: AppContext, garment, dataset_form: ConfigForm) -> None:
    gr.Markdown("#### Garment LoRA (the dataset is rebuilt first when it is missing or out of date)",
                elem_id=f"{PREFIX}_train_step")
    base = gr.Textbox(label="Base checkpoint (empty: the WebUI's selected checkpoint; standalone: the SD 1.5 base "
                            "in models/Stable-diffusion)", elem_id=f"{PREFIX}_train_base",
                      placeholder="path to an SD 1.5 .safetensors file or diffusers folder")
    form = ConfigForm(TrainConfig, f"{PREFIX}_train")
    with gr.Accordion("Training settings", open=False, elem_id=f"{PREFIX}_train_settings"):
        form.render(gr, GARMENT_TRAIN_GROUPS)
    with gr.Column(visible=False):  # face-photo settings: their defaults, unseen (see GARMENT_TRAIN_GROUPS)
        form.render(gr)
    with gr.Row():
        start = gr.Button("Train garment LoRA", variant="primary", elem_id=f"{PREFIX}_train_start")
        resume = gr.Checkbox(label="Resume from the last checkpoint", value=False, elem_id=f"{PREFIX}_train_resume")
        stop = gr.Button("Cancel training", elem_id=f"{PREFIX}_train_stop")
    job_id = gr.State("")
    status = gr.Markdown(elem_id=f"{PREFIX}_train_status")
    preview = gr.Image(label="Latest validation image", interactive=False, elem_id=f"{PREFIX}_train_preview")
    dataset_count = len(DATASET_FIELDS)

    def run(garment_id, base_path, resume_flag, *values):
        yield from garment_train_flow(ctx, garment_id, base_path, resume_flag, values[:dataset_count],
                                      values[dataset_count:])

    start.click(fn=run, inputs=[garment, base, resume, *dataset_form.components, *form.components],
                outputs=[status, preview, job_id])
    stop.click(fn=lambda j: cancel(ctx, j, idle="Nothing is training.", cancelling="Cancelling… (resumable)"),
               inputs=[job_id], outputs=[status])


def _build_tryon_section(gr, ctx: AppContext) -> None:
    gr.Markdown("### Try on", elem_id="easyphoto_tryon_section")
    with gr.Row():
        garment = gr.Dropdown(label="Trained garment", choices=trained_garments(ctx), elem_id=f"{PREFIX}_garment")
        refresh = gr.Button("↻ Refresh", elem_id=f"{PREFIX}_refresh")
    with gr.Row():
        with gr.Column():
            person = gr.Image(label="Person photo", type="filepath", elem_id=f"{PREFIX}_person")
            mask_file = gr.File(label="Mask (mask source 'mask': white = the region to repaint)",
                                file_types=["image"], elem_id=f"{PREFIX}_mask")
            positive = gr.Checkbox(label="Clicks mark the garment (off: what is not the garment)", value=True,
                                   elem_id=f"{PREFIX}_positive")
        view = gr.Image(label="Click on the garment (mask source 'points'); the mask preview shows here",
                        interactive=False, type="pil", elem_id=f"{PREFIX}_view")
    clicks = gr.State([])
    base = gr.Textbox(label="Base model (standalone only: the checkpoint the garment was trained on)",
                      visible=ctx.host.flavour == "standalone", elem_id=f"{PREFIX}_base")
    form = ConfigForm(TryOnConfig, PREFIX)
    with gr.Accordion("Try-on settings", open=True, elem_id=f"{PREFIX}_settings"):
        form.render(gr, folded=True)
    with gr.Row():
        preview = gr.Button("Preview mask", elem_id=f"{PREFIX}_preview_mask")
        start = gr.Button("Try on", variant="primary", elem_id=f"{PREFIX}_start")
        stop = gr.Button("Cancel", elem_id=f"{PREFIX}_stop")
    job_id = gr.State("")
    status = gr.Markdown(elem_id=f"{PREFIX}_status")
    results = gr.Gallery(label="Try-on images (garment fidelity under each)", columns=3, elem_id=f"{PREFIX}_results")
    _wire_tryon(gr, ctx, {"garment": garment, "refresh": refresh, "person": person, "mask_file": mask_file,
                          "positive": positive, "view": view, "clicks": clicks, "base": base, "form": form,
                          "preview": preview, "start": start, "stop": stop, "job_id": job_id, "status": status,
                          "results": results})


def _wire_tryon(gr, ctx: AppContext, c: dict) -> None:
    """The try-on section's events; `c`: its components by name."""
    c["refresh"].click(fn=lambda: gr.update(choices=trained_garments(ctx)), outputs=[c["garment"]])
    category = c["form"].components[TRYON_FIELDS.index("category")]

    def picked(garment_id):  # the try-on repaints the garment's own category unless the user changes it after
        found = garment_category(ctx, garment_id)
        return gr.update(value=found) if found else gr.update()

    c["garment"].change(fn=picked, inputs=[c["garment"]], outputs=[category])
    c["person"].change(fn=lambda p: person_view(ctx, p), inputs=[c["person"]],
                       outputs=[c["view"], c["clicks"], c["status"]])

    def clicked(person, recorded, is_positive, evt: gr.SelectData):
        return person_click_flow(ctx, person, recorded, evt.index[0], evt.index[1], is_positive)

    c["view"].select(fn=clicked, inputs=[c["person"], c["clicks"], c["positive"]],
                     outputs=[c["view"], c["clicks"], c["status"]])
    form = c["form"]

    def preview(person, mask, recorded, *values):
        image, text = mask_preview_flow(ctx, person, mask, recorded, values)
        return gr.update() if image is None else image, text  # a refusal keeps the photo there to click on

    c["preview"].click(fn=preview, inputs=[c["person"], c["mask_file"], c["clicks"], *form.components],
                       outputs=[c["view"], c["status"]])

    def run(garment_id, person, mask, recorded, base_path, *values):
        yield from tryon_flow(ctx, garment_id, person, mask, recorded, base_path, values)

    c["start"].click(fn=run, inputs=[c["garment"], c["person"], c["mask_file"], c["clicks"], c["base"],
                                     *form.components], outputs=[c["status"], c["results"], c["job_id"]])
    c["stop"].click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[c["job_id"]],
                    outputs=[c["status"]])
