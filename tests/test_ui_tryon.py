"""The Try-On tab (issue 13) on the installed gradio (3.41 in the A1111 set, 4.44 in the Forge set): it builds inside
build_ui, and its flows — garment photos, uploaded masks and clicks, the dataset job, caption edits, the mask preview
and the refusals of training and try-on — run on real kit photos without a browser."""

import re

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import TrainConfig, TryOnConfig
from easyphoto.context import standalone_context
from easyphoto.tryon.dataset import GarmentDatasetConfig, captions
from easyphoto.tryon.garments import photo_prompts
from easyphoto.ui import tabs
from easyphoto.ui import tryon_tab as tt
from easyphoto.ui.config_controls import ConfigForm
from tests.conftest import require_module  # skips locally, fails under CI

gr = require_module("gradio", reason="the Python 3.10 check runs without gradio")

SUIT_BOX = (30, 300, 280, 512)  # x0, y0, x1, y1: the astronaut's orange suit (the photo is 512×512)
OBAMA_SUIT_BOX = (120, 560, 800, 1137)  # his dark suit in obama.jpg (910×1137)


@pytest.fixture
def ctx(tmp_path):
    yield standalone_context(tmp_path / "data", tmp_path / "models")
    from easyphoto import operations

    operations.shutdown_all()


def mask_file(folder, name: str, size: tuple[int, int], box) -> str:
    """A mask PNG as a user uploads it: the box white on black."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 255
    path = folder / name
    Image.fromarray(mask, "L").save(path)
    return str(path)


def defaults(model) -> list:
    """The controls' values of a form left as it is (what its components hold)."""
    with gr.Blocks():
        form = ConfigForm(model, "x")
        form.render(gr)
    return [c.value for c in form.components]


def values_of(model, **changed) -> list:
    values = defaults(model)
    names = list(tt.field_names(model))
    for name, value in changed.items():
        values[names.index(name)] = value
    return values


# ---------------------------------------------------------------------------------------------- the tab


def test_the_tab_builds_between_portrait_and_models_with_every_config_field(tmp_path):
    blocks = tabs.build_ui(standalone_context(tmp_path))
    assert [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)] == ["Train", "Portrait", "Try-On",
                                                                                   "Models"]
    by_id = {getattr(b, "elem_id", None): b for b in blocks.blocks.values()}
    for prefix, model in (("easyphoto_tryon_dataset", GarmentDatasetConfig), ("easyphoto_tryon_train", TrainConfig),
                          ("easyphoto_tryon", TryOnConfig)):
        assert {f"{prefix}_{name}" for name in tt.field_names(model)} <= set(by_id), model.__name__
    for elem_id in ("easyphoto_tryon_garment_view", "easyphoto_tryon_dataset_build", "easyphoto_tryon_caption_save",
                    "easyphoto_tryon_train_start", "easyphoto_tryon_preview_mask", "easyphoto_tryon_start",
                    "easyphoto_tryon_results", "easyphoto_tryon_view"):
        assert elem_id in by_id
    # the garment LoRA's groups are shown, the face-photo ones are not (they hold their defaults)
    hidden = [b for b in blocks.blocks.values() if isinstance(b, gr.Column) and b.visible is False]
    assert len(hidden) == 1
    hidden_ids = {getattr(child, "elem_id", None) for child in hidden[0].children}
    assert hidden_ids == {"easyphoto_tryon_train_group_photo_selection", "easyphoto_tryon_train_group_dataset"}
    assert by_id["easyphoto_tryon_train_rank"].value == TrainConfig().rank
    assert by_id["easyphoto_tryon_mask_source"].value == "parsing"


# ---------------------------------------------------------------------------------------------- garments


def test_photos_masks_dataset_and_caption_edits(ctx, tmp_path, photo_astronaut, photos_same_man):
    text, names = tt.add_photos_flow(ctx, " ", [str(photo_astronaut)])
    assert text.startswith("**Cannot add the photos:** Enter a garment id first.") and names == []
    text, names = tt.add_photos_flow(ctx, "suit", [str(photo_astronaut), *map(str, photos_same_man[:2])])
    assert text.startswith("Uploads: 3 photos added.") and names == ["astronaut.png", "obama.jpg", "obama2.jpg"]
    [(_, summary, _)] = list(tt.dataset_flow(ctx, "suit", values_of(GarmentDatasetConfig, mask_source="mask")))
    assert summary.startswith("**Cannot build the dataset:** No photo of 'suit' has an uploaded mask")

    wrong = mask_file(tmp_path, "wrong.png", (300, 100), (0, 0, 50, 50))
    image, text = tt.upload_mask_flow(ctx, "suit", "astronaut.png", wrong)
    assert image is None and text.startswith("**Cannot store the mask:** The mask is 300×100 but astronaut.png")
    image, text = tt.upload_mask_flow(ctx, "suit", "astronaut.png", mask_file(tmp_path, "a.png", (512, 512), SUIT_BOX))
    assert text == "Mask stored for `astronaut.png` (20% of the photo)."
    shown = np.asarray(image).astype(int)
    photo = np.asarray(Image.open(photo_astronaut).convert("RGB")).astype(int)
    tinted = (shown != photo).any(axis=2)
    assert tinted[SUIT_BOX[1]:SUIT_BOX[3], SUIT_BOX[0]:SUIT_BOX[2]].mean() > 0.99 and tinted.mean() < 0.21
    tt.upload_mask_flow(ctx, "suit", "obama.jpg", mask_file(tmp_path, "o.png", (910, 1137), OBAMA_SUIT_BOX))
    _, clicks, text = tt.show_photo_flow(ctx, "suit", "astronaut.png")
    assert clicks == [] and "has an uploaded mask" in text

    [(gallery, summary, job)] = list(tt.dataset_flow(ctx, "nobody", values_of(GarmentDatasetConfig)))
    assert summary.startswith("**Cannot build the dataset:** No garment named 'nobody'") and (gallery, job) == ([], "")
    *_, (gallery, summary, job) = tt.dataset_flow(ctx, "suit", values_of(GarmentDatasetConfig, mask_source="mask",
                                                                          tagger=False))
    assert summary.startswith("**2 of 3 photos kept** for `suit`") and job == ""
    assert "- `obama2.jpg`: " in summary
    layout = ctx.garments.get("suit")
    assert gallery[:2] == [(str(layout.dataset / "train/0.png"), "train/0.png (astronaut.png): suit_garment, top"),
                           (str(layout.dataset / "train/1.png"), "train/1.png (obama.jpg): suit_garment, top")]
    assert gallery[2][1].startswith("obama2.jpg: ✗ dropped · ") and isinstance(gallery[2][0], Image.Image)

    assert (tt.garment_category(ctx, "suit"), tt.garment_category(ctx, "ghost")) == ("upper", None)
    assert tt.caption_files(ctx, "suit") == ["train/0.png", "train/1.png"]
    assert tt.caption_of(ctx, "suit", "train/1.png") == "suit_garment, top"
    stored, status = tt.save_caption_flow(ctx, "suit", "train/1.png", "suit_garment,  top, orange  zipper")
    assert stored == "suit_garment, top, orange zipper" and status.startswith("Caption of `train/1.png` saved.")
    assert captions(layout)[1] == ("train/1.png", "suit_garment, top, orange zipper")
    _, status = tt.save_caption_flow(ctx, "suit", "train/0.png", "   ")
    assert status == ("**Cannot save the caption:** The caption for train/0.png is empty. Keep at least the trigger "
                      "word (suit_garment).")
    assert captions(layout)[0] == ("train/0.png", "suit_garment, top")


def test_clicks_on_a_garment_photo_are_saved_and_segmented(ctx, tiny_segment, photo_astronaut):
    from tests.kit.tiny_segment import install_tiny_segment

    tt.add_photos_flow(ctx, "suit", [str(photo_astronaut)])
    image, clicks, text = tt.click_photo_flow(ctx, "suit", "astronaut.png", [], 150, 400, False)
    assert clicks == [[150.0, 400.0, False]] and "(not saved yet)" in text and "positive click" in text
    image, clicks, text = tt.click_photo_flow(ctx, "suit", "astronaut.png", clicks, 160, 420, True)
    assert [(p.x, p.y, p.positive) for p in photo_prompts(ctx.garments.get("suit"))["astronaut.png"].points] == [
        (150.0, 400.0, False), (160.0, 420.0, True)]
    assert "2 click(s) on `astronaut.png` saved. The clicks are recorded, but no mask can be shown:" in text
    assert "Models" in text  # where to get the point segmenter
    assert tuple(np.asarray(image)[420, 160]) == tt.POSITIVE_DOT

    install_tiny_segment(ctx.paths, tiny_segment, parser=False)
    image, clicks, text = tt.click_photo_flow(ctx, "suit", "astronaut.png", clicks, 100, 350, True)
    assert text == "3 click(s) on `astronaut.png` saved." and len(clicks) == 3
    from easyphoto.segment import Point, load_segmenter

    pixels = np.asarray(Image.open(photo_astronaut).convert("RGB"))
    mask = load_segmenter(ctx.paths).segment(pixels, [Point(x, y, p) for x, y, p in clicks]) > 0
    assert 0 < mask.mean() < 1  # the tiny SAM's mask is the overlay's red: inside it the photo is tinted
    changed = (np.asarray(image).astype(int) != pixels.astype(int)).any(axis=2)
    assert changed[mask].mean() > 0.99
    again, recorded, text = tt.show_photo_flow(ctx, "suit", "astronaut.png")  # picking the photo again
    assert recorded == clicks and text == "`astronaut.png`: 3 click(s) recorded."
    assert np.array_equal(np.asarray(again), np.asarray(image))
    image, clicks, text = tt.clear_clicks_flow(ctx, "suit", "astronaut.png")
    assert clicks == [] and "astronaut.png" not in photo_prompts(ctx.garments.get("suit"))


# ---------------------------------------------------------------------------------------------- mask preview


def test_mask_preview_shows_what_the_parsing_would_repaint(ctx, tiny_segment, photo_astronaut):
    from tests.kit.tiny_segment import colour_rule, install_tiny_segment

    values = values_of(TryOnConfig, mask_dilation=0, protect_face=False, protect_hands=False)
    image, text = tt.mask_preview_flow(ctx, str(photo_astronaut), None, [], values, pose=None)
    assert image is None and text.startswith("**Cannot preview the mask:** Clothes parsing")
    assert "Models" in text  # how to get the parser

    install_tiny_segment(ctx.paths, tiny_segment, rigged=True)
    image, text = tt.mask_preview_flow(ctx, str(photo_astronaut), None, [], values, pose=None)
    pixels = np.asarray(Image.open(photo_astronaut).convert("RGB"))
    repainted = (np.asarray(image).astype(int) != pixels.astype(int)).any(axis=2)
    expected = colour_rule(pixels) == 4  # the rigged parser's upper_clothes
    assert (repainted == expected).mean() > 0.9
    said = re.match(r"\*\*Mask preview\*\* \(parsing, upper\): ([0-9.]+)% of the photo is repainted", text)
    assert said and abs(float(said[1]) - 100 * repainted.mean()) < 0.2, text

    clicks = [[200.0, 400.0, True], [250.0, 450.0, True]]
    points = values_of(TryOnConfig, mask_source="points", mask_dilation=0, protect_hands=False)
    image, text = tt.mask_preview_flow(ctx, str(photo_astronaut), None, clicks, points, pose=None)
    from easyphoto.segment import Point, load_segmenter

    segmented = load_segmenter(ctx.paths).segment(pixels, [Point(x, y, p) for x, y, p in clicks]) > 0
    assert text.startswith("**Mask preview** (points, upper):"), text
    repainted = (np.asarray(image).astype(int) != pixels.astype(int)).any(axis=2)
    assert repainted[segmented].mean() > 0.99  # the clicked region is what would be repainted

    dress = values_of(TryOnConfig, category="dress")
    image, text = tt.mask_preview_flow(ctx, str(photo_astronaut), None, [], dress, pose=None)
    assert image is None and text.startswith("**Cannot preview the mask:** The photo shows no 'dress' garment")
    assert "it shows: " in text and "upper_clothes" in text and "Pick the category the person wears" in text


def test_mask_preview_of_an_uploaded_mask_and_its_refusals(ctx, tmp_path, photo_astronaut):
    from skimage import data

    values = values_of(TryOnConfig, mask_source="mask", mask_dilation=0)
    upper = mask_file(tmp_path, "m.png", (512, 512), SUIT_BOX)
    image, text = tt.mask_preview_flow(ctx, str(photo_astronaut), None, [], values)
    assert image is None and text.startswith("**Cannot preview the mask:** mask_source is 'mask' but no mask was given")
    small = mask_file(tmp_path, "s.png", (100, 100), (0, 0, 50, 50))
    _, text = tt.mask_preview_flow(ctx, str(photo_astronaut), small, [], values)
    assert text.startswith("**Cannot preview the mask:** The mask is 100×100, the person photo 512×512.")
    image, text = tt.mask_preview_flow(ctx, str(photo_astronaut), upper, [], values)
    assert text.startswith("**Mask preview** (mask, upper):") and "no clothes parser installed" in text
    shown = np.asarray(image).astype(int)
    photo = np.asarray(Image.open(photo_astronaut).convert("RGB")).astype(int)
    assert (shown != photo).any(axis=2)[SUIT_BOX[1]:SUIT_BOX[3], SUIT_BOX[0]:SUIT_BOX[2]].mean() > 0.9

    coffee = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(coffee)  # a cup of coffee: mediapipe's pose finds nobody, no parser
    _, text = tt.mask_preview_flow(ctx, str(coffee), mask_file(tmp_path, "c.png", (600, 400), (100, 100, 300, 300)),
                                   [], values)
    assert text.startswith("**Cannot preview the mask:** No person was found in the photo")
    _, text = tt.mask_preview_flow(ctx, None, None, [], values)
    assert text.startswith("**Cannot preview the mask:** Upload the person photo first.")
    _, text = tt.mask_preview_flow(ctx, str(photo_astronaut), None, [], values_of(TryOnConfig, mask_source="points"))
    assert text.startswith("**Cannot preview the mask:** mask_source is 'points' but no click or box was given.")
    _, text = tt.mask_preview_flow(ctx, str(photo_astronaut), None, [], values_of(TryOnConfig, first_steps=0.5))
    assert text.startswith("**Invalid try-on settings:**") and "first_steps" in text


# ---------------------------------------------------------------------------------------------- refusals


def test_training_and_try_on_refuse_before_any_job(ctx, photo_astronaut):
    tt.add_photos_flow(ctx, "suit", [str(photo_astronaut)])
    dataset, train = defaults(GarmentDatasetConfig), defaults(TrainConfig)
    [(status, _, job)] = list(tt.garment_train_flow(ctx, "suit", "", False, dataset, train))
    assert status.startswith("**Cannot train the garment:**") and "base" in status and job == ""
    [(status, _, _)] = list(tt.garment_train_flow(ctx, "ghost", "", False, dataset, train))
    assert status.startswith("**Cannot train the garment:** No garment named 'ghost'")

    values = defaults(TryOnConfig)
    [(status, shown, job)] = list(tt.tryon_flow(ctx, "", str(photo_astronaut), None, [], "", values))
    assert status.startswith("**Cannot try on:** Pick a trained garment first.") and shown == [] and job == ""
    [(status, _, _)] = list(tt.tryon_flow(ctx, "suit", str(photo_astronaut), None, [], "", values))
    assert status.startswith("**Cannot try on:** Garment 'suit' has no trained LoRA yet")
    assert "Train it first in EasyPhoto → Try-On → Garments" in status
    [(status, _, _)] = list(tt.tryon_flow(ctx, "ghost", str(photo_astronaut), None, [], "", values))
    assert status.startswith("**Cannot try on:** No garment named 'ghost'")
    assert tt.trained_garments(ctx) == []
    from easyphoto.operations import job_queue

    assert job_queue(ctx).list() == []  # nothing was submitted


def test_person_clicks_and_result_captions(ctx, photo_astronaut):
    image, clicks, text = tt.person_click_flow(ctx, None, [], 10, 10, True)
    assert image is None and clicks == [] and text.startswith("**Cannot record the click:** Upload the person photo")
    image, clicks, text = tt.person_click_flow(ctx, str(photo_astronaut), [], 200, 400, True)
    assert clicks == [[200.0, 400.0, True]] and "no mask can be shown" in text
    assert tuple(np.asarray(image)[400, 200]) == tt.POSITIVE_DOT
    result = {"tryons": [{"file": "/o/00001-tryon-suit.png", "seed": 7, "notes": ["depth control skipped"],
                          "fidelity": {"score": 0.81234, "colour": 0.9, "structure": 0.7}},
                         {"file": "/o/00002-tryon-suit.png", "seed": 8, "notes": [], "fidelity": None}]}
    assert tt.tryon_gallery(result) == [
        ("/o/00001-tryon-suit.png", "00001-tryon-suit.png · seed 7 · garment fidelity 0.81"),
        ("/o/00002-tryon-suit.png", "00002-tryon-suit.png · seed 8 · no fidelity score (no garment reference)")]
    assert tt.tryon_result_text(result).splitlines()[1:] == [
        "- `00001-tryon-suit.png`: fidelity 0.81 (colour 0.90, structure 0.70) — depth control skipped",
        "- `00002-tryon-suit.png`: no fidelity score"]


def test_a_try_on_job_that_fails_says_why_in_the_tab(ctx, tmp_path, photo_astronaut, photos_same_man):
    """A garment with a dataset and a garment.json naming a LoRA file (as a training leaves them), on a standalone
    install without the SD 1.5 base and the clothes parser: the job is submitted, followed, and its failure shown
    as text (whichever of the two the job finds missing first)."""
    from easyphoto.operations import job_queue
    from easyphoto.store import atomic_write_json

    tt.add_photos_flow(ctx, "suit", [str(photo_astronaut)])
    tt.upload_mask_flow(ctx, "suit", "astronaut.png", mask_file(tmp_path, "a.png", (512, 512), SUIT_BOX))
    *_, (_, summary, _) = tt.dataset_flow(ctx, "suit", values_of(GarmentDatasetConfig, mask_source="mask",
                                                                  tagger=False))
    assert summary.startswith("**1 of 1 photos kept**")
    layout = ctx.garments.get("suit")
    layout.lora_file.parent.mkdir(parents=True, exist_ok=True)
    layout.lora_file.write_bytes(b"never read: the job stops before it loads the LoRA")
    atomic_write_json(layout.garment_json, {"garment_id": "suit", "category": "upper",
                                            "lora_file": str(layout.lora_file)})
    assert tt.trained_garments(ctx) == ["suit"]
    *progress, (status, shown, job) = tt.tryon_flow(ctx, "suit", str(photo_astronaut), None, [], "",
                                                    defaults(TryOnConfig))
    assert status.startswith(("**Try-on failed:** No base model", "**Try-on failed:** Clothes parsing cannot run"))
    assert (shown, job) == ([], "")
    [record] = [r for r in job_queue(ctx).list() if r.kind == "tryon"]
    assert record.state.value == "failed" and all(j == record.id for *_, j in progress)
