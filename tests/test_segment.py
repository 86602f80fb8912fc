"""The segmentation capability: clothes parsing (SegFormer, 18 ATR labels) and point/box masks (SAM ONNX pair), on
the kit's tiny models with the real architectures and file layouts (tests/kit/tiny_segment.py) and real photos.

Random weights: parsing labels and SAM masks mean nothing, so the tests check what the code does with them: sizes,
label order (a rigged classifier), which prompts reach the decoder, caching, merging and the errors."""

import json
import shutil
import subprocess
import sys
import weakref

import numpy as np
import pytest
from PIL import Image

from easyphoto import segment, weights
from easyphoto.errors import EasyPhotoError, MissingWeights
from easyphoto.segment import (
    ATR_LABELS,
    GARMENT_CATEGORIES,
    LabelSetMismatch,
    Point,
    SamOnnxSegmenter,
    SegformerParser,
    SegmentInputError,
    UnsupportedSamModel,
)
from easyphoto.segment.sam import choose_mask, resized_shape
from easyphoto.store import Paths
from tests.conftest import require_module

require_module("torch")
require_module("transformers")
require_module("onnxruntime")


def small_rgb(path, width: int) -> np.ndarray:
    """A real photo, shrunk (the models' cost does not depend on it; the per-pixel work does)."""
    image = Image.open(path).convert("RGB")
    height = round(image.height * width / image.width)
    return np.asarray(image.resize((width, height), Image.BILINEAR))


@pytest.fixture(scope="module")
def astronaut(photo_astronaut) -> np.ndarray:
    return small_rgb(photo_astronaut, 120)[:, :, :]


@pytest.fixture(scope="module")
def portrait(photos_same_man) -> np.ndarray:
    return small_rgb(photos_same_man[0], 90)


@pytest.fixture(scope="module")
def parser(tiny_segment) -> SegformerParser:
    return SegformerParser(tiny_segment.segformer)


@pytest.fixture(scope="module")
def sam(tiny_segment) -> SamOnnxSegmenter:
    return SamOnnxSegmenter(tiny_segment.sam_encoder_hwc, tiny_segment.sam_decoder)


# ---------------------------------------------------------------------------------------------- parsing


def test_parser_and_segmenter_implement_the_protocols(parser, sam):
    assert isinstance(parser, segment.ClothesParser) and isinstance(sam, segment.PointSegmenter)


def test_parsing_is_one_atr_label_per_pixel_at_the_image_size(parser, astronaut):
    image = astronaut[:77, :101]  # odd, non-square: (H, W) must not be swapped
    parsing = parser.parse(image)
    assert parsing.labels.shape == (77, 101) and parsing.labels.dtype == np.uint8
    assert parsing.labels.max() < len(ATR_LABELS)
    fractions = parsing.fractions()
    assert set(fractions) <= set(ATR_LABELS) and sum(fractions.values()) == pytest.approx(1.0)
    for category in GARMENT_CATEGORIES:
        mask = parsing.category_mask(category)
        assert mask.shape == (77, 101) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    union = np.zeros((77, 101), bool)
    for name in ATR_LABELS:
        union |= parsing.mask(name) > 0
    assert union.all()  # every pixel has exactly one of the 18 labels


@pytest.fixture(scope="module")
def rigged(tiny_segment) -> SegformerParser:
    """The colour-rigged tiny SegFormer: red-dominant pixels → upper_clothes, blue-dominant → pants."""
    return SegformerParser(tiny_segment.segformer_rigged)


def test_rigged_labels_come_out_in_atr_order_and_the_right_orientation(rigged):
    """Logit 4 must read as upper_clothes and 6 as pants; a red top band and a blue bottom band must stay on top
    and bottom of a wide image (no H/W swap in the resize back)."""
    image = np.zeros((40, 100, 3), np.uint8)
    image[:20, :, 0] = 255
    image[20:, :, 2] = 255
    parsing = rigged.parse(image)
    assert parsing.labels.shape == (40, 100)
    assert (parsing.category_mask("upper")[:18] == 255).all() and not parsing.category_mask("upper")[22:].any()
    assert (parsing.mask("pants")[22:] == 255).all() and (parsing.category_mask("lower")[22:] == 255).all()
    assert parsing.fractions() == pytest.approx({"upper_clothes": 0.5, "pants": 0.5}, abs=0.03)


def test_rigged_labels_follow_the_colour_of_real_photos(rigged, astronaut, portrait):
    """On real photos the label map agrees with the colour rule computed from the photo's own pixels (away from the
    rule's edges: the model sees a 512² resize sampled every 4 pixels, then its logits are upsampled)."""
    from tests.kit.tiny_segment import colour_rule

    for image in (astronaut, portrait):
        labels, expected = rigged.parse(image).labels, colour_rule(image)
        assert labels.shape == image.shape[:2]
        assert (labels == expected).mean() > 0.9
        assert len(np.unique(expected)) > 1  # both rules present: the photo exercises both labels


def test_the_random_model_labels_depend_on_the_photo(parser, astronaut):
    """Not a constant stand-in: several labels in one photo, and another crop of it is labelled differently."""
    whole, flipped = parser.parse(astronaut), parser.parse(np.ascontiguousarray(astronaut[::-1]))
    assert len(whole.fractions()) > 1 and not np.array_equal(whole.labels[::-1], flipped.labels)


def _copy_with_labels(source, target, id2label):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config["id2label"] = {str(i): name for i, name in enumerate(id2label)}
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_a_model_with_another_label_set_is_refused(tiny_segment, tmp_path):
    names = [json.loads((tiny_segment.segformer / "config.json").read_text())["id2label"][str(i)] for i in range(18)]
    swapped = names[:4] + [names[5], names[4]] + names[6:]
    with pytest.raises(LabelSetMismatch, match="label 4 is 'Skirt' where the ATR order has 'upper_clothes'"):
        SegformerParser(_copy_with_labels(tiny_segment.segformer, tmp_path / "swapped", swapped))
    with pytest.raises(LabelSetMismatch, match="it predicts 19 labels") as info:
        SegformerParser(_copy_with_labels(tiny_segment.segformer, tmp_path / "more", names + ["Glove"]))
    assert "mattmdjaga/segformer_b2_clothes" in info.value.hint


def test_load_parser_refuses_another_label_set_in_place(tiny_segment, tmp_path):
    paths = Paths.standalone(tmp_path / "data", tmp_path / "models")
    from tests.kit.tiny_segment import install_tiny_segment

    install_tiny_segment(paths, tiny_segment, segmenter=False)
    config = weights.get("segformer-clothes-config").path(paths)
    data = json.loads(config.read_text())
    data["id2label"]["11"] = "Torso"
    config.write_text(json.dumps(data))
    with pytest.raises(LabelSetMismatch, match="label 11 is 'Torso'"):
        segment.load_parser(paths)


def test_a_bad_image_is_refused_before_the_model_loads(tiny_segment):
    fresh = SegformerParser(tiny_segment.segformer)
    for bad, words in [(np.zeros((8, 8), np.uint8), "shape"), (np.zeros((8, 8, 4), np.uint8), "shape"),
                       (np.zeros((8, 8, 3), np.float32), "float32"), (np.zeros((0, 8, 3), np.uint8), "empty"),
                       ("photo.jpg", "numpy array")]:
        with pytest.raises(SegmentInputError, match=words):
            fresh.parse(bad)
    assert not fresh.loaded


def test_a_damaged_weights_file_is_an_error_that_says_what_to_do(tiny_segment, tmp_path, portrait):
    folder = shutil.copytree(tiny_segment.segformer, tmp_path / "parser")
    weights_file = folder / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:5000])  # an interrupted copy
    with pytest.raises(EasyPhotoError, match="Cannot load the clothes parser") as info:
        SegformerParser(folder).parse(portrait)
    assert "models verify --group tryon" in info.value.hint


def test_unload_frees_the_weights_and_the_next_parse_reloads(tiny_segment, astronaut):
    import gc

    fresh = SegformerParser(tiny_segment.segformer)
    first = fresh.parse(astronaut)
    assert fresh.loaded
    model = weakref.ref(fresh._model)
    fresh.unload()
    gc.collect()
    assert not fresh.loaded and model() is None
    assert np.array_equal(fresh.parse(astronaut).labels, first.labels)


def test_load_parser_finds_the_manifest_files_and_caches_the_parser(tiny_segment_paths, astronaut):
    parser = segment.load_parser(tiny_segment_paths)
    assert parser is segment.load_parser(tiny_segment_paths)
    assert parser.folder == weights.get("segformer-clothes-weights").path(tiny_segment_paths).parent
    assert parser.parse(astronaut).labels.shape == astronaut.shape[:2]
    segment.unload()
    assert not parser.loaded


def test_a_missing_parser_file_names_it_and_how_to_fetch_it(tiny_segment, tmp_path):
    paths = Paths.standalone(tmp_path / "data", tmp_path / "models")
    from tests.kit.tiny_segment import install_tiny_segment

    install_tiny_segment(paths, tiny_segment, segmenter=False)
    weights.get("segformer-clothes-weights").path(paths).unlink()
    with pytest.raises(MissingWeights) as info:
        segment.load_parser(paths)
    error = info.value
    assert [m["id"] for m in error.missing] == ["segformer-clothes-weights"]
    assert str(weights.get("segformer-clothes-weights").path(paths)) in error.message
    assert "huggingface.co/mattmdjaga/segformer_b2_clothes" in error.message
    assert "EasyPhoto → Models (group tryon)" in error.hint
    assert "python -m easyphoto models fetch --group tryon" in error.hint


def test_missing_models_load_nothing_heavy(tmp_path):
    """With no files, both loaders fail on the disk check alone: torch, transformers and onnxruntime stay unimported."""
    code = (
        "import sys\nfrom easyphoto import segment\nfrom easyphoto.errors import EasyPhotoError, MissingWeights\n"
        "from easyphoto.store import Paths\npaths = Paths.standalone(sys.argv[1], sys.argv[1] + '/models')\n"
        "for load in (segment.load_parser, segment.load_segmenter):\n"
        "    try:\n        load(paths)\n    except MissingWeights as exc:\n"
        "        print(sorted(m['id'] for m in exc.missing))\n"
        "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "['segformer-clothes-config', 'segformer-clothes-preprocessor', 'segformer-clothes-weights']",
        "['mobilesam-decoder', 'mobilesam-encoder']",
        "[]",
    ]


# ---------------------------------------------------------------------------------------------- SAM


def test_a_click_gives_a_binary_mask_of_the_image_size(sam, astronaut):
    mask = sam.segment(astronaut, [Point(60, 50)])
    assert mask.shape == astronaut.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}  # random weights still split the image


def test_a_negative_point_changes_the_mask(sam, astronaut):
    positive = sam.segment(astronaut, [Point(60, 50)])
    with_negative = sam.segment(astronaut, [Point(60, 50), Point(20, 100, positive=False)])
    as_positive = sam.segment(astronaut, [Point(60, 50), Point(20, 100)])
    assert not np.array_equal(positive, with_negative)
    assert not np.array_equal(with_negative, as_positive)  # the label reaches the decoder, not only the position


def test_a_box_prompt_and_points_with_a_box(sam, astronaut):
    height, width = astronaut.shape[:2]
    box = sam.segment(astronaut, [], boxes=[(10, 10, 80, 90)])
    other = sam.segment(astronaut, [], boxes=[(30, 40, width, height)])
    both = sam.segment(astronaut, [Point(50, 50, positive=False)], boxes=[(10, 10, 80, 90)])
    for mask in (box, other, both):
        assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
    assert not np.array_equal(box, other) and not np.array_equal(box, both)


def test_several_boxes_are_merged_by_union(sam, astronaut):
    boxes = [(5, 5, 60, 70), (50, 60, 115, 118)]
    one, two = (sam.segment(astronaut, [], boxes=[b]) for b in boxes)
    merged = sam.segment(astronaut, [], boxes=boxes)
    assert np.array_equal(merged, np.maximum(one, two))
    assert not np.array_equal(merged, one) and not np.array_equal(merged, two)


def test_the_encoder_runs_once_per_image(tiny_segment, astronaut, portrait):
    fresh = SamOnnxSegmenter(tiny_segment.sam_encoder_hwc, tiny_segment.sam_decoder, cache_size=2)
    fresh.segment(astronaut, [Point(10, 10)])
    assert fresh.cache_info().encoder_runs == 1
    fresh.segment(astronaut.copy(), [Point(30, 40), Point(5, 5, positive=False)])  # same pixels, another array
    embedding = fresh.embed(astronaut)
    info = fresh.cache_info()
    assert (info.encoder_runs, info.hits, info.misses, info.size) == (1, 2, 1, 1)
    fresh.segment(portrait, [Point(10, 10)])
    assert fresh.cache_info().encoder_runs == 2
    fresh.segment(astronaut, [Point(10, 10)])  # a hit: the astronaut is now the most recently used
    fresh.segment(astronaut[:, ::-1], [Point(10, 10)])  # a third image evicts the least recently used: portrait
    fresh.segment(astronaut, [Point(10, 10)])
    assert fresh.cache_info().encoder_runs == 3
    fresh.segment(portrait, [Point(10, 10)])
    assert fresh.cache_info().encoder_runs == 4 and fresh.cache_info().size == 2
    assert embedding.shape == (1, 32, 64, 64)


def test_both_encoder_layouts_give_the_same_embedding(tiny_segment, portrait):
    """Our resize, normalisation and padding for an NCHW export equal what the in-graph preprocessing does."""
    nchw = SamOnnxSegmenter(tiny_segment.sam_encoder_nchw, tiny_segment.sam_decoder)
    hwc = SamOnnxSegmenter(tiny_segment.sam_encoder_hwc, tiny_segment.sam_decoder)
    a, b = nchw.embed(portrait), hwc.embed(portrait)
    assert np.allclose(a, b, atol=1e-4)
    assert np.array_equal(nchw.segment(portrait, [Point(40, 40)]), hwc.segment(portrait, [Point(40, 40)]))


@pytest.mark.parametrize("points, boxes, words", [
    ([Point(120, 10)], None, r"points\[0\] \(120, 10\) is outside the 120×"),
    ([Point(-1, 10)], None, "outside"),
    ([Point(float("nan"), 3)], None, "finite"),
    ([(3, 4)], None, "must be a Point"),
    ([], None, "no prompt"),
    ([], [], "no prompt"),
    ([Point(3, 4, positive=False)], None, "only negative points"),
    ([], [(1, 2, 3)], r"boxes\[0\] must be 4 finite numbers"),
    ([], [(50, 10, 20, 40)], "empty or inverted"),
    ([], [(10, 10, 10, 40)], "empty or inverted"),
    ([], [(0, 0, 121, 40)], "reaches outside"),
    ([], [(0, 0, float("inf"), 40)], "finite"),
    ([Point(3, 4)], "box", "boxes must be a list"),
    ([], [np.array([[1, 2], [3, 4]])], "4 finite numbers"),
])
def test_bad_prompts_are_refused_before_the_encoder_runs(tiny_segment, astronaut, points, boxes, words):
    fresh = SamOnnxSegmenter(tiny_segment.sam_encoder_hwc, tiny_segment.sam_decoder)
    with pytest.raises(SegmentInputError, match=words):
        fresh.segment(astronaut, points, boxes)
    assert not fresh.loaded and fresh.cache_info().encoder_runs == 0


def test_load_segmenter_uses_the_manifest_pair(tiny_segment_paths, portrait):
    segmenter = segment.load_segmenter(tiny_segment_paths)
    assert segmenter is segment.load_segmenter(tiny_segment_paths)
    assert segmenter.encoder_file == weights.get("mobilesam-encoder").path(tiny_segment_paths)
    assert segmenter.segment(portrait, [Point(45, 45)]).shape == portrait.shape[:2]
    segment.unload()
    assert not segmenter.loaded and segmenter.cache_info().size == 0


def test_a_missing_decoder_names_it_and_how_to_fetch_it(tiny_segment, tmp_path):
    paths = Paths.standalone(tmp_path / "data", tmp_path / "models")
    from tests.kit.tiny_segment import install_tiny_segment

    install_tiny_segment(paths, tiny_segment, parser=False)
    weights.get("mobilesam-decoder").path(paths).unlink()
    with pytest.raises(MissingWeights) as info:
        segment.load_segmenter(paths)
    assert [m["id"] for m in info.value.missing] == ["mobilesam-decoder"]
    assert "huggingface.co/Acly/MobileSAM" in info.value.message and "--group tryon" in info.value.hint


def test_files_that_are_not_a_sam_pair_are_refused(tiny_segment, tiny_arcface_onnx, portrait):
    swapped = SamOnnxSegmenter(tiny_segment.sam_encoder_hwc, tiny_segment.sam_encoder_nchw)
    with pytest.raises(UnsupportedSamModel, match="not the SAM prompt decoder export"):
        swapped.segment(portrait, [Point(1, 1)])
    arcface = SamOnnxSegmenter(tiny_arcface_onnx, tiny_segment.sam_decoder)
    with pytest.raises(UnsupportedSamModel, match=r"encoder input \[None, 3, 112, 112\]; SAM encoders take"):
        arcface.embed(portrait)


def test_a_damaged_onnx_file_is_refused_with_what_to_do(tiny_segment, tmp_path, portrait):
    damaged = tmp_path / "mobile_sam_image_encoder.onnx"
    damaged.write_bytes(tiny_segment.sam_encoder_hwc.read_bytes()[:5000])  # an interrupted copy
    with pytest.raises(UnsupportedSamModel, match="ONNX Runtime cannot open") as info:
        SamOnnxSegmenter(damaged, tiny_segment.sam_decoder).segment(portrait, [Point(1, 1)])
    assert "models verify --group tryon" in info.value.hint


def test_an_encoder_and_decoder_of_different_models_are_refused(tiny_segment, tiny_arcface_onnx):
    from easyphoto.segment.sam import _session, check_pair

    decoder = _session(tiny_segment.sam_decoder)
    check_pair(_session(tiny_segment.sam_encoder_nchw), decoder, ("enc", "dec"))  # the kit's pair fits
    with pytest.raises(UnsupportedSamModel, match=r"enc produces embeddings \[None, 512\] but dec takes"):
        check_pair(_session(tiny_arcface_onnx), decoder, ("enc", "dec"))


def test_mask_choice_for_multi_mask_exports():
    """A 4-mask decoder: the first mask for more than 2 prompt points, else the best IoU among the other three."""
    masks = np.stack([np.full((2, 2), float(i)) for i in range(4)])[None]
    scores = np.array([[0.99, 0.2, 0.7, 0.1]])
    assert choose_mask(masks, scores, num_points=2)[0, 0] == 2.0
    assert choose_mask(masks, scores, num_points=3)[0, 0] == 0.0
    assert choose_mask(masks[:, :1], scores[:, :1], num_points=2)[0, 0] == 0.0


def test_resize_follows_sam_longest_side():
    assert resized_shape(1500, 2250) == (683, 1024) and resized_shape(90, 120) == (768, 1024)
    assert resized_shape(1024, 1024) == (1024, 1024)
