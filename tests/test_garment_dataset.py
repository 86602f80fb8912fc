"""The garment dataset (issue 13): real photos cut out onto white around their garment mask, 512² crops, captions
the trainer reads, a reason for every dropped photo, caption editing, and the WD14-class tagger."""

import csv
import shutil
import typing

import numpy as np
import pytest
from PIL import Image

from easyphoto.context import standalone_context
from easyphoto.errors import Cancelled, EasyPhotoError, MissingWeights, NotFound
from easyphoto.segment.types import GARMENT_CATEGORIES, LABEL_INDEX, Parsing, Point
from easyphoto.store import read_json
from easyphoto.tryon import garments
from easyphoto.tryon import tagger as tagging
from easyphoto.tryon.dataset import (
    CATEGORY_WORDS,
    MAX_CAPTION_CHARS,
    DatasetModels,
    GarmentCategory,
    GarmentDatasetConfig,
    InvalidCaption,
    build_dataset,
    build_garment_dataset,
    captions,
    compose_caption,
    dataset_out_of_date,
    set_caption,
)

SUIT_BOX = (30, 300, 280, 512)  # x0, y0, x1, y1: the astronaut's orange suit, roughly (the photo is 512×512)
OBAMA_SUIT_BOX = (120, 560, 800, 1137)  # his dark suit in obama.jpg (910×1137)
MASKS_ONLY = GarmentDatasetConfig(mask_source="mask", tagger=False)


@pytest.fixture
def ctx(tmp_path):
    return standalone_context(tmp_path)


def box_mask(width: int, height: int, box) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 255
    return mask


@pytest.fixture
def suit(ctx, photo_astronaut, photos_same_man):
    """A garment 'suit' with two real photos, each with an uploaded mask of the suit."""
    garments.add_photos(ctx, "suit", [photo_astronaut, photos_same_man[0]])
    garments.add_mask(ctx, "suit", "astronaut.png", box_mask(512, 512, SUIT_BOX))
    garments.add_mask(ctx, "suit", "obama.jpg", box_mask(910, 1137, OBAMA_SUIT_BOX))
    return ctx.garments.get("suit")


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def read_dataset(dataset_dir):
    from easyphoto.train.trainer import read_dataset as trainer_reads

    return [(item.image.relative_to(dataset_dir).as_posix(), item.caption) for item in trainer_reads(dataset_dir)]


# ---------------------------------------------------------------------------------------------- the dataset


def test_uploaded_masks_make_white_backed_512_crops_the_trainer_reads(ctx, suit, photo_astronaut):
    report = build_garment_dataset(ctx, "suit", MASKS_ONLY)
    assert [(d.file, d.kept, d.mask_source) for d in report.decisions] == [
        ("astronaut.png", True, "uploaded"), ("obama.jpg", True, "uploaded")]
    assert read_dataset(suit.dataset) == [("train/0.png", "suit_garment, top"), ("train/1.png", "suit_garment, top")]
    for number in (0, 1):
        pixels, mask = rgb(suit.dataset / "train" / f"{number}.png"), np.asarray(Image.open(suit.dataset / "masks" /
                                                                                            f"{number}.png"))
        assert pixels.shape == (512, 512, 3) and mask.shape == (512, 512) and set(np.unique(mask)) == {0, 255}
        assert (pixels[mask == 0] == 255).all()  # everything outside the garment is pure white
        assert (pixels[mask > 0] < 250).any(axis=1).mean() > 0.9  # and the garment is not
    astronaut = rgb(suit.dataset / "train" / "0.png")[np.asarray(Image.open(suit.dataset / "masks" / "0.png")) > 0]
    original = rgb(photo_astronaut)[box_mask(512, 512, SUIT_BOX) > 0]
    assert np.abs(astronaut.mean(axis=0) - original.mean(axis=0)).max() < 6  # the suit's own (orange) colour
    assert astronaut[:, 0].mean() - astronaut[:, 2].mean() > 60


def test_the_crop_is_a_square_around_the_mask_padded_white_past_the_photo(ctx, suit):
    report = build_garment_dataset(ctx, "suit", MASKS_ONLY)
    # mask 250×212 → side 250 × (1 + 2 × 0.1) = 300, centred on the mask: it passes the photo's bottom edge by 44 px
    assert report.decisions[0].crop == (5, 256, 305, 556)
    mask = np.asarray(Image.open(suit.dataset / "masks" / "0.png"))
    ys, xs = np.nonzero(mask)
    scale = 512 / 300  # the mask at (30-5, 300-256) … (280-5, 512-256) in the crop, scaled to 512
    assert abs(xs.min() - 25 * scale) <= 1.5 and abs(xs.max() + 1 - 275 * scale) <= 1.5
    assert abs(ys.min() - 44 * scale) <= 1.5 and abs(ys.max() + 1 - 256 * scale) <= 1.5
    pixels = rgb(suit.dataset / "train" / "0.png")
    assert (pixels[440:] == 255).all()  # the part below the photo's edge


def test_every_photo_is_reported_with_the_reason_it_was_dropped(ctx, suit, photos_same_man):
    shutil.copyfile(suit.photos / "astronaut.png", suit.photos / "zz-copy.png")  # a copy made by hand
    jpeg = photos_same_man[1].read_bytes()
    (suit.photos / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # damaged on disk after the upload
    garments.add_photos(ctx, "suit", [photos_same_man[1], photos_same_man[2]])
    garments.add_mask(ctx, "suit", "obama2.jpg", box_mask(626, 1200, (300, 600, 310, 610)))  # 100 px of 751,200
    report = build_garment_dataset(ctx, "suit", MASKS_ONLY)
    reasons = {d.file: d.reason for d in report.decisions}
    assert reasons["astronaut.png"] == "" and reasons["obama.jpg"] == ""
    assert reasons["zz-copy.png"] == "duplicate of astronaut.png (the same file)"
    assert reasons["broken.jpg"].startswith("unreadable: broken.jpg: ") and "truncated" in reasons["broken.jpg"]
    assert reasons["obama2.jpg"] == "mask too small (the garment covers 0.0% of the photo; at least 2.0%)"
    assert reasons["obama3.jpg"] == "no uploaded mask (the mask source is 'mask': uploaded masks only)"
    saved = read_json(suit.report)
    assert (saved["kept"], saved["total"]) == (2, 6)
    assert {p["file"]: p["reason"] for p in saved["photos"]} == reasons
    assert len(read_dataset(suit.dataset)) == 2


class StandInParser:
    """Stands in for the clothes-parsing model (easyphoto.segment.parsing, tested by its own suite): it returns a
    Parsing with a label layout known to the test, chosen by the photo's size, and records which photos it saw."""

    name = "stand-in parser"

    def __init__(self, layouts: dict[tuple[int, int], dict[str, tuple]]):
        self.layouts, self.seen = layouts, []

    def parse(self, image: np.ndarray) -> Parsing:
        self.seen.append(image.shape[:2])
        labels = np.zeros(image.shape[:2], np.uint8)
        for label, (x0, y0, x1, y1) in self.layouts.get(image.shape[:2], {}).items():
            labels[y0:y1, x0:x1] = LABEL_INDEX[label]
        return Parsing(labels)

    def unload(self) -> None:
        pass


def test_the_parser_finds_the_category_and_an_uploaded_mask_wins(ctx, photo_astronaut, photos_same_man):
    garments.add_photos(ctx, "suit", [photo_astronaut, photos_same_man[0], photos_same_man[1]])
    layout = ctx.garments.get("suit")
    parser = StandInParser({(512, 512): {"upper_clothes": SUIT_BOX, "face": (180, 80, 280, 180)},
                            (1137, 910): {"face": (300, 100, 600, 500)},
                            (1200, 626): {"dress": (0, 400, 626, 1200), "hat": (200, 0, 400, 100)}})
    models = DatasetModels(parser=parser)
    report = build_dataset(layout, GarmentDatasetConfig(tagger=False), models)
    reasons = {d.file: (d.mask_source, d.reason) for d in report.decisions}
    assert reasons == {
        "astronaut.png": ("parsing", ""),
        "obama.jpg": ("parsing", "no garment of the category 'upper' found (the clothes parser found no garment)"),
        "obama2.jpg": ("parsing", "no garment of the category 'upper' found (the clothes parser found dress 67%, "
                                  "hat 3%)"),
    }
    computed = np.asarray(Image.open(layout.computed_masks / "astronaut.png.png"))
    assert np.array_equal(computed, box_mask(512, 512, SUIT_BOX))  # kept for review
    garments.add_mask(ctx, "suit", "obama.jpg", box_mask(910, 1137, OBAMA_SUIT_BOX))
    parser.seen.clear()
    report = build_dataset(layout, GarmentDatasetConfig(tagger=False), models)
    assert [(d.file, d.kept, d.mask_source) for d in report.decisions][:2] == [
        ("astronaut.png", True, "parsing"), ("obama.jpg", True, "uploaded")]
    assert (1137, 910) not in parser.seen  # the uploaded mask was used; the parser never saw that photo
    dress = build_dataset(layout, GarmentDatasetConfig(category="dress", tagger=False), models)
    assert [d.file for d in dress.kept] == ["obama.jpg", "obama2.jpg"]
    assert read_dataset(layout.dataset)[1][1] == "suit_garment, dress"


class StandInSegmenter:
    """Stands in for the point segmenter (easyphoto.segment.sam, tested by its own suite): the mask is the first box
    it is given, and it records the clicks it received."""

    name = "stand-in segmenter"

    def __init__(self):
        self.calls = []

    def segment(self, image, points, boxes=None):
        self.calls.append((points, boxes))
        x0, y0, x1, y1 = (int(v) for v in boxes[0])
        return box_mask(image.shape[1], image.shape[0], (x0, y0, x1, y1))

    def unload(self) -> None:
        pass


def test_clicks_go_to_the_point_segmenter(ctx, photo_astronaut, photos_same_man):
    garments.add_photos(ctx, "suit", [photo_astronaut, photos_same_man[0]])
    garments.set_points(ctx, "suit", "astronaut.png", [Point(150, 400)], boxes=[SUIT_BOX])
    segmenter = StandInSegmenter()
    layout = ctx.garments.get("suit")
    report = build_dataset(layout, GarmentDatasetConfig(mask_source="points", tagger=False),
                           DatasetModels(segmenter=segmenter))
    assert segmenter.calls == [([Point(150.0, 400.0)], [tuple(float(v) for v in SUIT_BOX)])]
    assert [(d.file, d.kept, d.mask_source, d.reason) for d in report.decisions] == [
        ("astronaut.png", True, "points", ""), ("obama.jpg", False, None, "no clicks on this photo (the mask "
                                                                            "source is 'points')")]
    assert report.decisions[0].crop == (5, 256, 305, 556)


def test_inputs_are_checked_before_any_model_or_file_is_touched(ctx, suit, photo_astronaut):
    garments.add_photos(ctx, "coat", [photo_astronaut])
    coat = ctx.garments.get("coat")
    with pytest.raises(EasyPhotoError, match="need the clothes parser"):
        build_dataset(coat, GarmentDatasetConfig(tagger=False), DatasetModels())
    with pytest.raises(EasyPhotoError, match="No photo of 'coat' has an uploaded mask"):
        build_garment_dataset(ctx, "coat", MASKS_ONLY)
    with pytest.raises(EasyPhotoError, match="No photo of 'coat' has clicks or a mask"):
        build_garment_dataset(ctx, "coat", GarmentDatasetConfig(mask_source="points"))
    with pytest.raises(MissingWeights):  # the parser is loaded only now, when a photo without a mask needs it
        build_garment_dataset(ctx, "coat", GarmentDatasetConfig(tagger=False))
    assert not coat.report.exists() and not (coat.dataset / "metadata.jsonl").exists()
    report = build_dataset(suit, GarmentDatasetConfig(tagger=False), DatasetModels())  # masks cover every photo
    assert len(report.kept) == 2


def test_nothing_kept_keeps_the_previous_dataset_and_says_why(ctx, suit):
    build_garment_dataset(ctx, "suit", MASKS_ONLY)
    before = (suit.dataset / "metadata.jsonl").read_bytes()
    with pytest.raises(EasyPhotoError, match="No photo of 'suit' was kept") as caught:
        build_garment_dataset(ctx, "suit", MASKS_ONLY.updated(min_garment_fraction=0.5))
    assert "report says why" in caught.value.hint
    assert (suit.dataset / "metadata.jsonl").read_bytes() == before
    assert all(p["reason"].startswith("mask too small") for p in read_json(suit.report)["photos"])
    assert not suit.dataset.with_name("dataset.partial").exists()


def test_progress_is_reported_and_a_cancel_keeps_the_previous_dataset(ctx, suit):
    build_garment_dataset(ctx, "suit", MASKS_ONLY)
    before = {p.name: p.read_bytes() for p in (suit.dataset / "train").iterdir()}
    calls = []
    with pytest.raises(Cancelled, match="stopped"):
        build_garment_dataset(ctx, "suit", MASKS_ONLY.updated(resolution=256), progress=lambda *a: calls.append(a),
                              should_stop=lambda: len(calls) > 1)
    assert calls == [(0, 2, "astronaut.png"), (1, 2, "obama.jpg")]
    assert {p.name: p.read_bytes() for p in (suit.dataset / "train").iterdir()} == before
    assert not suit.dataset.with_name("dataset.partial").exists()

    def cancel_from_progress(index, total, name):  # how the job layer cancels: its progress callback raises
        raise Cancelled("The job was cancelled.")

    with pytest.raises(Cancelled, match="job was cancelled"):
        build_garment_dataset(ctx, "suit", MASKS_ONLY, progress=cancel_from_progress)
    assert {p.name: p.read_bytes() for p in (suit.dataset / "train").iterdir()} == before


def test_the_dataset_knows_when_it_is_out_of_date(ctx, suit, photos_same_man):
    assert dataset_out_of_date(suit, MASKS_ONLY) == ["there is no dataset yet"]
    build_garment_dataset(ctx, "suit", MASKS_ONLY)
    assert dataset_out_of_date(suit, MASKS_ONLY) == []
    set_caption(suit, "train/0.png", "suit_garment, top, orange")
    assert dataset_out_of_date(suit, MASKS_ONLY) == []  # caption edits are made on this dataset
    assert dataset_out_of_date(suit, MASKS_ONLY.updated(category="dress")) == ["category 'upper' → 'dress'"]
    assert dataset_out_of_date(suit, MASKS_ONLY.updated(trigger="ep_suit")) == ["trigger 'suit_garment' → 'ep_suit'"]
    garments.add_mask(ctx, "suit", "obama.jpg", box_mask(910, 1137, (100, 600, 800, 1137)))
    assert dataset_out_of_date(suit, MASKS_ONLY) == ["uploaded masks changed since it was made"]
    garments.add_photos(ctx, "suit", [photos_same_man[1]])
    assert dataset_out_of_date(suit, MASKS_ONLY)[0] == "photos changed since it was made"
    garments.set_points(ctx, "suit", "astronaut.png", [Point(150, 400)])
    assert "clicks changed since it was made" not in dataset_out_of_date(suit, MASKS_ONLY)  # not what masks came from
    assert "clicks changed since it was made" in dataset_out_of_date(suit, MASKS_ONLY.updated(mask_source="points"))


# ---------------------------------------------------------------------------------------------- captions


def test_captions_are_edited_one_image_at_a_time(ctx, suit):
    with pytest.raises(NotFound, match="no dataset yet"):
        captions(suit)
    build_garment_dataset(ctx, "suit", MASKS_ONLY.updated(trigger="ep_suit"))
    assert captions(suit) == [("train/0.png", "ep_suit, top"), ("train/1.png", "ep_suit, top")]
    assert set_caption(suit, "train/1.png", "  ep_suit, top,\n navy   suit ") == "ep_suit, top, navy suit"
    assert read_dataset(suit.dataset) == [("train/0.png", "ep_suit, top"), ("train/1.png", "ep_suit, top, navy suit")]
    with pytest.raises(InvalidCaption, match="empty") as caught:
        set_caption(suit, "train/0.png", " \n ")
    assert "ep_suit" in caught.value.hint and caught.value.http_status == 422
    with pytest.raises(InvalidCaption, match=f"{MAX_CAPTION_CHARS + 1} characters"):
        set_caption(suit, "train/0.png", "x" * (MAX_CAPTION_CHARS + 1))
    with pytest.raises(NotFound, match="no image 'train/7.png'"):
        set_caption(suit, "train/7.png", "ep_suit")
    assert captions(suit)[0] == ("train/0.png", "ep_suit, top")  # refused edits change nothing
    assert not [p for p in suit.dataset.iterdir() if p.name.startswith(".")]  # no temp file left


def test_compose_caption_cleans_and_limits_tags():
    tags = ["long_sleeves", "white background", "top", "long sleeves", "orange, bright", "zipper", "belt"]
    assert compose_caption("ep_suit", "upper", tags, max_tags=3) == "ep_suit, top, long sleeves, orange bright, zipper"
    assert compose_caption("ep_suit", "lower") == "ep_suit, bottoms"
    long = compose_caption("t", "dress", [f"tag{i:03d}" + "x" * 40 for i in range(50)], max_tags=50)
    assert len(long) <= MAX_CAPTION_CHARS and long.startswith("t, dress, tag000")


def test_the_config_offers_the_segmentation_categories_and_refuses_a_bad_trigger():
    assert set(typing.get_args(GarmentCategory)) == set(GARMENT_CATEGORIES) == set(CATEGORY_WORDS)
    specs = {spec.name: spec for spec in GarmentDatasetConfig.field_specs()}
    assert specs["mask_source"].choices == ("parsing", "points", "mask") and specs["resolution"].default == 512
    assert specs["category"].group == "Garment" and specs["background"].choices == ("white",)
    with pytest.raises(ValueError, match="without commas"):
        GarmentDatasetConfig(trigger="suit, red")
    with pytest.raises(ValueError):
        GarmentDatasetConfig(min_garment_fraction=1.5)
    assert GarmentDatasetConfig.from_dict(GarmentDatasetConfig(trigger="x").to_dict()).trigger_for("g") == "x"


# ---------------------------------------------------------------------------------------------- the tagger

# A tiny graph with the WD14 taggers' signature: NHWC float32 448² BGR in, one sigmoid per CSV row out. Its "knowledge"
# is colour: the mean of each channel over the (padded) image, weighted per tag.
TAGS = [("general", 9, {}, 6.0), ("sensitive", 9, {}, -6.0),
        ("orange_garment", 0, {"R": 0.1, "B": -0.1}, -3.0), ("blue_garment", 0, {"B": 0.1, "R": -0.1}, -3.0),
        ("white_background", 0, {"B": 0.1 / 3, "G": 0.1 / 3, "R": 0.1 / 3}, -15.0),
        ("some_character", 4, {}, 6.0)]


def tiny_tagger(folder, tags=TAGS, outputs=None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros((3, len(tags)), np.float32)
    for column, (_, _, channels, _) in enumerate(tags):
        for channel, weight in channels.items():
            weights["BGR".index(channel), column] = weight
    bias = np.array([b for *_, b in tags], np.float32)
    width = outputs or len(tags)
    weights, bias = np.resize(weights, (3, width)), np.resize(bias, (width,))
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input_1:0"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["logits"]), helper.make_node("Add", ["logits", "b"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["predictions_sigmoid"])],
        "tiny_wd14", [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["batch", 448, 448, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    with open(folder / "selected_tags.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["tag_id", "name", "category", "count"])
        writer.writerows([i, name, category, 1000 - i] for i, (name, category, _, _) in enumerate(tags))
    return folder / "model.onnx", folder / "selected_tags.csv"


def test_the_input_is_padded_square_on_white_in_bgr():
    image = np.zeros((10, 20, 4), np.uint8)
    image[:, :10] = (255, 0, 0, 255)  # opaque red on the left
    tensor = tagging.to_model_input(Image.fromarray(image, "RGBA"), 448)  # the right half is transparent
    assert tensor.shape == (1, 448, 448, 3) and tensor.dtype == np.float32
    assert (tensor[0, :100] == 255).all() and (tensor[0, -100:] == 255).all()  # padding above and below
    assert tensor[0, 224, 100].tolist() == [0.0, 0.0, 255.0]  # red, in BGR order
    assert tensor[0, 224, 400].tolist() == [255.0, 255.0, 255.0]  # transparent → white


def test_tags_are_general_tags_above_the_threshold_with_spaces(tmp_path):
    wd = tagging.WD14Tagger(*tiny_tagger(tmp_path / "wd"))
    orange = Image.new("RGB", (64, 64), (240, 120, 20))
    assert wd.tags(orange) == ["orange garment"]  # "general" and "some_character" score ~1 but are not general tags
    assert wd.tags(Image.new("RGB", (64, 64), (20, 40, 220))) == ["blue garment"]
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    assert wd.tags(white) == ["white background"]
    probabilities = wd.probabilities(orange)
    assert set(probabilities) == {"orange_garment", "blue_garment", "white_background"}
    assert wd.tags(orange, threshold=0.99) == ["orange garment"] and wd.tags(orange, limit=0) == []
    wd.unload()
    assert wd._session is None and wd(white) == ["white background"]  # starts again on the next use


def test_a_csv_that_does_not_match_the_model_is_an_error(tmp_path):
    model, _ = tiny_tagger(tmp_path / "a", outputs=len(TAGS) + 2)
    with pytest.raises(tagging.TaggerError, match=f"predicts {len(TAGS) + 2} tags but selected_tags.csv lists"):
        tagging.WD14Tagger(model, tmp_path / "a" / "selected_tags.csv").tags(Image.new("RGB", (8, 8)))
    (tmp_path / "bad.csv").write_text("id,label\n0,x\n")
    with pytest.raises(tagging.TaggerError, match="no 'name' and 'category' columns"):
        tagging.read_tags(tmp_path / "bad.csv")


def test_load_tagger_finds_the_files_in_the_models_folder_or_returns_none(ctx):
    assert tagging.load_tagger(ctx.paths) is None
    folder = ctx.paths.models_root / tagging.TAGGER_SUBDIR
    assert folder == ctx.paths.models_root / "tagger" / "wd-v1-4-moat-tagger-v2"
    tiny_tagger(folder)
    first = tagging.load_tagger(ctx.paths)
    assert isinstance(first, tagging.WD14Tagger) and tagging.load_tagger(ctx.paths) is first


def test_the_tagger_adds_its_tags_to_the_captions_when_present(ctx, suit):
    tiny_tagger(ctx.paths.models_root / tagging.TAGGER_SUBDIR)
    report = build_garment_dataset(ctx, "suit", GarmentDatasetConfig(mask_source="mask"))
    assert report.tagger == "wd14" and read_json(suit.report)["tagger"] == "wd14"
    # the orange suit is tagged orange, the dark one is not; every crop scores "white background", never captioned
    assert captions(suit) == [("train/0.png", "suit_garment, top, orange garment"), ("train/1.png", "suit_garment, top")]
    assert tagging.load_tagger(ctx.paths)._session is None  # unloaded after the build
    plain = build_garment_dataset(ctx, "suit", MASKS_ONLY)
    assert plain.tagger is None and captions(suit)[0] == ("train/0.png", "suit_garment, top")
