"""Garment try-on (easyphoto.tryon): the mask, the depth estimator and the two-pass pipeline, on the tiny diffusers
backend (the kit's tiny SD 1.5, its tiny ControlNets, a tiny depth ControlNet and a tiny DPT-hybrid) and inside the
WebUI host double (both flavours), on a real photo of a person (Biden, arms crossed: mediapipe finds both wrists).

The clothes parsing is a label array built here from the photo's pose (torso = upper clothes, a face disc, hair
above it, arms along the limbs): a hand-made parsing, handed to the pipeline the way a real parser's would be."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import TryOnConfig
from easyphoto.generation import GenerationError, GenerationInterrupted, LoraRef
from easyphoto.imageops import dilate, load_photo, to_array
from easyphoto.segment.types import GARMENT_CATEGORIES, LABEL_INDEX, Parsing
from easyphoto.tryon import masks
from easyphoto.tryon.pipeline import GarmentAssets, MaskInput, TryOnPipeline, boundary_band, paste_garment
from tests.conftest import require_module

cv2 = require_module("cv2")
FAST = {"first_steps": 4, "second_steps": 4, "short_side": 256, "seed": 42, "mask_dilation": 4, "color_weight": 0.5}
R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST, R_HIP, L_HIP, NOSE = 2, 3, 4, 5, 6, 7, 8, 11, 0


# ---------------------------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def person(photo_other_person):
    """(pixels, key points) of the kit's photo of Biden at a quarter size (242×551)."""
    from easyphoto.pose.openpose import body_keypoints_from_mediapipe

    image = load_photo(photo_other_person).image
    pixels = to_array(image.resize((image.width // 4, image.height // 4), Image.LANCZOS))
    keypoints = body_keypoints_from_mediapipe(pixels)
    assert keypoints is not None and keypoints[[R_WRIST, L_WRIST], 2].all()
    return pixels, keypoints


def person_parsing(shape, keypoints) -> Parsing:
    """ATR labels from the pose: upper clothes over the torso, pants below the hips, a face disc at the nose with
    hair above it, sleeves along shoulder → elbow → wrist (upper clothes, over the torso, as crossed arms are) and
    the bare hand at the wrist (ATR labels skin of the arms and hands as left_arm / right_arm)."""
    labels = np.zeros(shape, np.uint8)
    k = keypoints[:, :2].astype(int)
    shoulders = abs(k[L_SHOULDER, 0] - k[R_SHOULDER, 0])
    torso = np.array([k[R_SHOULDER], k[L_SHOULDER], k[L_HIP], k[R_HIP]], np.int32)
    cv2.fillConvexPoly(labels, torso, LABEL_INDEX["upper_clothes"])
    labels[max(k[R_HIP, 1], k[L_HIP, 1]):, min(k[R_HIP, 0], k[L_HIP, 0]):max(k[R_HIP, 0], k[L_HIP, 0])] = \
        LABEL_INDEX["pants"]
    radius = max(shoulders // 4, 4)
    cv2.circle(labels, tuple(k[NOSE] - [0, radius]), radius, LABEL_INDEX["hair"], -1)
    cv2.circle(labels, tuple(k[NOSE]), radius, LABEL_INDEX["face"], -1)
    for name, chain in (("right_arm", (R_SHOULDER, R_ELBOW, R_WRIST)), ("left_arm", (L_SHOULDER, L_ELBOW, L_WRIST))):
        sleeve = k[list(chain)].astype(np.int32)
        cv2.polylines(labels, [sleeve], False, LABEL_INDEX["upper_clothes"], max(shoulders // 5, 2))  # ATR: sleeves
        cv2.circle(labels, tuple(sleeve[-1]), max(shoulders // 10, 2), LABEL_INDEX[name], -1)  # bare skin: the hand
    return Parsing(labels)


@pytest.fixture(scope="module")
def parsing(person):
    pixels, keypoints = person
    return person_parsing(pixels.shape[:2], keypoints)


def tiny_lora(tiny_sd_dir, path):
    from diffusers import UNet2DConditionModel

    from easyphoto.sd import lora as L
    from tests.kit.lora import random_lora

    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    return L.save_lora(path, random_lora([("unet", unet, L.UNET_TARGETS)], rank=4, scale=0.2, seed=5))


def suit_assets(tiny_sd_dir, folder, photo_astronaut) -> GarmentAssets:
    """A garment LoRA (random, kohya format) and its reference: the astronaut's suit, an ellipse mask."""
    path = tiny_lora(tiny_sd_dir, folder / "suit.safetensors")
    reference = to_array(load_photo(photo_astronaut).image)[250:506, 100:356].copy()
    mask = np.zeros(reference.shape[:2], np.uint8)
    cv2.ellipse(mask, (128, 128), (110, 120), 0, 0, 360, 255, -1)
    return GarmentAssets("suit", LoraRef("suit", 0.8, path), "easyphoto, 1thing, white suit", "upper", reference, mask)


@pytest.fixture(scope="module")
def garment(tmp_path_factory, tiny_sd_dir, photo_astronaut):
    return suit_assets(tiny_sd_dir, tmp_path_factory.mktemp("garment"), photo_astronaut)


@pytest.fixture(scope="module")
def depth_estimator(kit_root):
    from easyphoto.tryon.depth import DepthEstimator
    from tests.kit.tiny_depth import tiny_dpt_dir

    estimator = DepthEstimator(tiny_dpt_dir(kit_root))
    yield estimator
    estimator.unload()


@pytest.fixture(scope="module")
def diffusers_paths(tiny_controlnet_dirs, kit_root):
    from tests.kit.tiny_depth import tiny_depth_controlnet_dir

    return {**{k: tiny_controlnet_dirs[k] for k in ("canny", "openpose", "color")},
            "depth": tiny_depth_controlnet_dir(kit_root)}


@pytest.fixture(scope="module")
def generator(tiny_sd_dir, diffusers_paths):
    from easyphoto.backends.diffusers import DiffusersGenerator
    from tests.kit.tiny_sd import torch_threads

    gen = DiffusersGenerator(tiny_sd_dir, controlnet_paths=diffusers_paths)
    with torch_threads(1):
        yield gen
    gen.unload()


# ---------------------------------------------------------------------------------------------- config and masks


def test_the_config_offers_exactly_the_garment_categories_and_the_references_defaults():
    spec = {f.name: f for f in TryOnConfig.field_specs()}
    assert spec["category"].choices == tuple(GARMENT_CATEGORIES)
    config = TryOnConfig()
    # the reference's try-on: 50 × 0.70, canny 1.0 + depth 1.0 (+ colour 0.5 on its pasted garment: off by default,
    # so openpose + canny + depth fit a WebUI's 3 ControlNet units), refine 30 × 0.7, LoRA 0.8
    assert (config.first_steps, config.first_denoising_strength, config.second_steps,
            config.second_denoising_strength) == (50, 0.70, 30, 0.70)
    assert (config.canny_weight, config.depth_weight, config.color_weight, config.lora_weight) == (1.0, 1.0, 0.0, 0.8)
    with pytest.raises(ValueError, match="second_steps 1 × second_denoising_strength 0.5"):
        TryOnConfig(second_steps=1, second_denoising_strength=0.5)
    with pytest.raises(ValueError, match="at least one of canny_weight"):
        TryOnConfig(canny_weight=0, openpose_weight=0, depth_weight=0)
    assert TryOnConfig.from_dict(config.to_dict()) == config


def test_mask_exact_arrays_grown_minus_face_and_a_hand():
    labels = np.zeros((12, 12), np.uint8)
    labels[4:10, 2:10] = LABEL_INDEX["upper_clothes"]
    labels[1:4, 4:8] = LABEL_INDEX["face"]
    keypoints = np.zeros((18, 3), np.float32)
    keypoints[[R_ELBOW, R_WRIST]] = [(9, 2, 1), (9, 6, 1)]  # forearm 4 px downwards: hand disc at (9, 7.4), r 1.8
    result = masks.tryon_mask((12, 12), "upper", parsing=Parsing(labels), keypoints=keypoints, dilation=1)
    expected = np.zeros((12, 12), np.uint8)
    expected[3:11, 1:11] = 255  # grown by 1 (elliptic 3×3 kernel: a cross, so the corners stay out)
    expected[[3, 3, 10, 10], [1, 10, 1, 10]] = 0
    expected[1:4, 4:8] = 0  # face
    hand = np.zeros((12, 12), np.uint8)
    cv2.circle(hand, (9, 7), 2, 255, -1)
    expected[hand > 0] = 0
    assert np.array_equal(result.mask, expected)
    assert result.protected == {"face": 4, "right hand": int(np.count_nonzero(hand[3:11, 1:11]))}
    assert np.array_equal(result.garment, labels.astype(bool) * (labels == LABEL_INDEX["upper_clothes"]) * 255)
    assert result.notes == []  # the parsing protects the face; the visible right wrist, its hand


def test_mask_errors_name_the_cause(person, parsing):
    pixels, keypoints = person
    shape = pixels.shape[:2]
    with pytest.raises(masks.CategoryNotFound, match="no 'dress' garment.*it shows: hair, upper_clothes, pants, face"):
        masks.tryon_mask(shape, "dress", parsing=parsing, keypoints=keypoints)
    with pytest.raises(masks.EmptyTryOnMask, match="no pixel is marked"):
        masks.tryon_mask(shape, "upper", given=np.zeros(shape, np.uint8), keypoints=keypoints)
    with pytest.raises(masks.NoPersonFound, match="No person"):
        masks.tryon_mask(shape, "upper", parsing=Parsing(np.zeros(shape, np.uint8)), given=np.full(shape, 255, np.uint8))
    with pytest.raises(masks.EmptyTryOnMask, match="protected regions"):
        face_only = np.where(parsing.labels == LABEL_INDEX["face"], 255, 0).astype(np.uint8)
        masks.tryon_mask(shape, "upper", parsing=parsing, given=face_only, keypoints=keypoints)
    unchecked = masks.tryon_mask(shape, "upper", parsing=parsing, keypoints=None)
    assert any("hands not protected: no pose was found" in note for note in unchecked.notes)
    assert "right hand" not in unchecked.protected


def test_hand_discs_cover_the_wrists_of_the_real_photo(person, parsing):
    pixels, keypoints = person
    result = masks.tryon_mask(pixels.shape[:2], "upper", parsing=parsing, keypoints=keypoints, dilation=4)
    assert result.protected["right hand"] > 0 and result.protected["left hand"] > 0
    for wrist in (R_WRIST, L_WRIST):
        x, y = keypoints[wrist, :2].astype(int)
        assert result.mask[y, x] == 0  # the wrist itself is never repainted
    assert result.notes == []


def test_paste_garment_turns_scales_and_moves_the_reference_onto_the_mask():
    reference = np.zeros((80, 80, 3), np.uint8)
    reference[..., 0] = 200
    ref_mask = np.zeros((80, 80), np.uint8)
    cv2.ellipse(ref_mask, (40, 40), (30, 12), 10, 0, 360, 255, -1)
    target = np.zeros((120, 160), np.uint8)
    cv2.ellipse(target, (90, 60), (45, 18), 25, 0, 360, 255, -1)  # 1.5× larger, 15° more turned, elsewhere
    pixels = np.full((120, 160, 3), 30, np.uint8)
    pasted, turn, scale, iou = paste_garment(pixels, target, reference, ref_mask)
    assert turn == pytest.approx(15, abs=2) and scale == pytest.approx(1.5, abs=0.08) and iou > 0.85
    assert np.array_equal(pasted[target == 0], pixels[target == 0])  # nothing outside the mask
    assert (pasted[target > 0, 0] == 200).mean() > 0.9


def test_boundary_band_is_the_inside_edge():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 255
    band = boundary_band(mask, 2)
    assert band[5, 5] == 255 and band[6, 10] == 255 and band[10, 10] == 0 and band[4, 10] == 0
    assert not (band > mask).any()


# ---------------------------------------------------------------------------------------------- depth


def test_depth_estimator_loads_offline_from_the_models_folder(tmp_path, kit_root, person):
    from easyphoto.store import Paths
    from easyphoto.tryon import depth
    from tests.kit.tiny_depth import tiny_dpt_dir

    paths = Paths.standalone(tmp_path)
    assert depth.load_depth(paths) is None  # optional: absent weights are no error
    shutil.copytree(tiny_dpt_dir(kit_root), depth.depth_dir(paths))
    estimator = depth.load_depth(paths, device="cpu")
    assert estimator is depth.load_depth(paths, device="cpu")  # cached
    pixels = person[0]
    first = estimator(pixels)
    assert first.size == (pixels.shape[1], pixels.shape[0]) and first.mode == "RGB"
    values = np.asarray(first)
    assert values.min() == 0 and values.max() == 255  # stretched like the annotator's output
    estimator.unload()
    assert np.array_equal(np.asarray(estimator(pixels)), values)  # loads again, same map
    depth.unload()


# ---------------------------------------------------------------------------------------------- diffusers


def test_tryon_repaints_only_the_mask_keeps_face_and_hands_and_is_seed_deterministic(
        generator, garment, person, parsing, depth_estimator):
    pixels, _ = person
    pipeline = TryOnPipeline(generator, TryOnConfig(**FAST), depth=depth_estimator)
    generator.counter.reset()
    first = pipeline.render(Image.fromarray(pixels), garment, MaskInput(parsing=parsing))
    counts = {"unet": dict(generator.counter.unet), "controlnet": dict(generator.counter.controlnet)}
    again = pipeline.render(pixels, garment, MaskInput(parsing=parsing))
    out = to_array(first.image)
    assert out.shape == pixels.shape and np.array_equal(out, to_array(again.image)) and first.seed == 42
    changed = np.any(out != pixels, axis=-1)
    inside = first.mask > 0
    assert not changed[~inside].any()  # outside the mask: the photo's own pixels, exactly
    assert changed[inside].mean() > 0.5
    assert not changed[parsing.labels == LABEL_INDEX["face"]].any()
    assert first.protected["right hand"] > 0 and first.protected["left hand"] > 0
    assert first.controls == {"pass 1": ["openpose", "canny", "depth", "color"], "pass 2": ["canny", "depth"]}
    # 4 × 0.7 → 2 sampling steps per pass; 4 ControlNets in pass 1, 2 in pass 2
    assert counts == {"unet": {"pass 1": 2, "pass 2": 2}, "controlnet": {"pass 1": 8, "pass 2": 4}}
    assert first.fidelity is not None and 0.0 <= first.fidelity.score <= 1.0
    assert first.fidelity.describe() in first.infotext and "Seed: 42" in first.infotext
    assert "<lora:suit:0.8>" in first.infotext and first.prompt.startswith("easyphoto, 1thing, white suit")
    other = pipeline.render(pixels, garment, MaskInput(parsing=parsing), seed=43)
    assert not np.array_equal(to_array(other.image), out)


def test_a_drawn_mask_with_the_garment_pasted_and_no_depth_model(tiny_sd_dir, diffusers_paths, garment, person,
                                                                   parsing, depth_estimator):
    from easyphoto.backends.diffusers import DiffusersGenerator

    pixels, _ = person
    without_depth = DiffusersGenerator(tiny_sd_dir, controlnet_paths={k: v for k, v in diffusers_paths.items()
                                                                      if k != "depth"})
    drawn = np.zeros(pixels.shape[:2], np.uint8)
    drawn[60:420, 60:200] = 255  # a block from the head to below the arms: face, hair and a hand are cut out
    config = TryOnConfig(**FAST, mask_source="mask", paste_garment=True, second_pass=False)
    result = TryOnPipeline(without_depth, config, depth=depth_estimator).render(
        pixels, garment, MaskInput(mask=drawn, parsing=parsing))
    assert result.controls == {"pass 1": ["openpose", "canny", "color"]}
    assert any(n.startswith("depth control skipped") for n in result.notes)
    assert any(n.startswith("garment pasted: turned") for n in result.notes)
    out = to_array(result.image)
    assert not np.any(out != pixels, axis=-1)[result.mask == 0].any() and (result.mask <= dilate(drawn, 4)).all()
    assert result.protected["face"] > 0 and result.protected["hair"] > 0 and result.protected["left hand"] > 0
    assert (result.mask[parsing.labels == LABEL_INDEX["face"]] == 0).all()


def test_bad_input_fails_before_any_generation(generator, tiny_sd_dir, diffusers_paths, garment, person, parsing,
                                               photo_astronaut):
    from easyphoto.backends.diffusers import DiffusersGenerator

    pixels, _ = person
    pipeline = TryOnPipeline(generator, TryOnConfig(**FAST))
    generator.counter.reset()
    with pytest.raises(masks.EmptyTryOnMask):
        TryOnPipeline(generator, TryOnConfig(**FAST, mask_source="points")).render(
            pixels, garment, MaskInput(mask=np.zeros(pixels.shape[:2], np.uint8), parsing=parsing))
    with pytest.raises(masks.CategoryNotFound, match="it shows"):
        TryOnPipeline(generator, TryOnConfig(**FAST, category="skirt")).render(pixels, garment, MaskInput(parsing=parsing))
    blank = np.full((256, 192, 3), 128, np.uint8)  # mediapipe finds nobody; the parsing neither
    with pytest.raises(masks.NoPersonFound):
        pipeline.render(blank, garment, MaskInput(mask=np.full((256, 192), 255, np.uint8),
                                                  parsing=Parsing(np.zeros((256, 192), np.uint8))))
    with pytest.raises(masks.TryOnInputError, match="needs a clothes parsing"):
        pipeline.render(pixels, garment, MaskInput())
    with pytest.raises(GenerationInterrupted):
        pipeline.render(pixels, garment, MaskInput(parsing=parsing), should_stop=lambda: True)
    assert generator.counter.totals() == {"unet": 0, "controlnet": 0}
    no_colour = DiffusersGenerator(tiny_sd_dir, controlnet_paths={k: v for k, v in diffusers_paths.items()
                                                                  if k != "color"})
    with pytest.raises(GenerationError, match="Missing ControlNet models for color"):
        TryOnPipeline(no_colour, TryOnConfig(**FAST)).render(pixels, garment, MaskInput(parsing=parsing))
    assert no_colour.counter.totals() == {"unet": 0, "controlnet": 0} and no_colour._base_model is None


# ---------------------------------------------------------------------------------------------- WebUI double

BIG = b"\0" * 0x100000  # the legacy model hash reads from offset 1 MiB: distinct bytes after it, distinct hashes


@pytest.fixture(scope="module", params=["a1111", "forge"])
def host(request, tmp_path_factory):
    from easyphoto.generation import CONTROLNET_MODELS
    from tests.host.harness import WebUIHost

    host = WebUIHost(tmp_path_factory.mktemp(f"tryon-{request.param}"), flavour=request.param)
    folder = host.root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    for stem in CONTROLNET_MODELS.values():
        (folder / f"{stem}.pth").write_bytes(BIG + stem.encode())
    host.start()
    yield host
    host.stop()


def _get(unit, name):
    value = unit.get(name) if isinstance(unit, dict) else getattr(unit, name)
    return getattr(value, "value", value)


def test_webui_passes_send_the_configured_units_steps_sampler_and_seed(host, garment, person, parsing,
                                                                       depth_estimator):
    """The reference's set (canny 1.0 + depth 1.0 + colour 0.5, then canny + depth) on the host's 3 units."""
    from modules import processing, sd_models

    from easyphoto.backends import webui
    from easyphoto.backends.webui.controlnet import controlnet_script

    pixels, _ = person
    gen = webui.make_context().make_generator({"base": "ignored"})
    config = TryOnConfig(seed=7, short_side=256, sampler="Euler a", control_mode="control", openpose_weight=0,
                         color_weight=0.5)
    host.calls.clear()
    result = TryOnPipeline(gen, config, depth=depth_estimator).render(pixels, garment, MaskInput(parsing=parsing))
    first, second = processing.calls
    folder = host.root / "models" / "ControlNet"
    names = {stem: f"{stem} [{sd_models.model_hash(str(folder / f'{stem}.pth'))}]" for stem in (
        "control_v11p_sd15_canny", "control_v11f1p_sd15_depth", "control_sd15_random_color")}
    expected = [(first, 50, 0.70, list(names), [1.0, 1.0, 0.5]),
                (second, 30, 0.70, ["control_v11p_sd15_canny", "control_v11f1p_sd15_depth"], [1.0, 1.0])]
    for call, steps, strength, stems, weights in expected:
        fields = call.fields
        assert call.kind == "img2img" and (fields["steps"], fields["denoising_strength"]) == (steps, strength)
        assert (fields["sampler_name"], fields["seed"], fields["cfg_scale"]) == ("Euler a", 7, 7.0)
        assert "<lora:suit:0.8>" in fields["prompt"] and min(fields["width"], fields["height"]) == 256
        script = controlnet_script(call.p.scripts)
        units = [u for u in call.script_args[script.args_from:script.args_to] if _get(u, "enabled")]
        assert [_get(u, "model") for u in units] == [names[s] for s in stems]
        assert [_get(u, "weight") for u in units] == weights
        assert {_get(u, "control_mode") for u in units} == {"ControlNet is more important"}
    assert host.errors == [] and result.seed == 7 and result.notes == []
    assert not np.any(to_array(result.image) != pixels, axis=-1)[result.mask == 0].any()
    from modules import infotext_utils

    parsed = infotext_utils.parse_generation_parameters(result.infotext)  # what PNG Info and "Send to" read
    assert (str(parsed["Steps"]), parsed["Sampler"], str(parsed["Seed"])) == ("50", "Euler a", "7")
    assert "<lora:suit:0.8>" in parsed["Prompt"] and parsed["EasyPhoto fidelity"] == result.fidelity.describe()
    assert parsed["EasyPhoto controls"] == "pass 1=canny+depth+color; pass 2=canny+depth"

    # with openpose on (the default) the 3 units go to openpose + canny + colour and depth waits for a 4th unit
    host.calls.clear()
    posed = TryOnPipeline(gen, config.updated(openpose_weight=0.5, second_pass=False),
                          depth=depth_estimator).render(pixels, garment, MaskInput(parsing=parsing))
    assert posed.controls == {"pass 1": ["openpose", "canny", "color"]} and len(processing.calls) == 1
    assert any("depth control skipped: the backend runs 3 ControlNet units" in note for note in posed.notes)

    # the defaults (openpose 0.5, colour off) fill the 3 units with openpose + canny + depth
    host.calls.clear()
    default = TryOnPipeline(gen, TryOnConfig(seed=7, short_side=256, second_pass=False),
                            depth=depth_estimator).render(pixels, garment, MaskInput(parsing=parsing))
    assert default.controls == {"pass 1": ["openpose", "canny", "depth"]} and default.notes == []

    # a batch: seeds 7, 8 in order, progress to the end, one pass each here
    host.calls.clear()
    reported = []
    batch = TryOnPipeline(gen, config.updated(batch_size=2, second_pass=False), depth=depth_estimator).render_batch(
        pixels, garment, MaskInput(parsing=parsing), progress=lambda fraction, message: reported.append(fraction))
    assert [r.seed for r in batch] == [7, 8] and [c.fields["seed"] for c in processing.calls] == [7, 8]
    assert reported[-1] == 1.0 and reported == sorted(reported)
    for made in batch:
        assert not np.any(to_array(made.image) != pixels, axis=-1)[made.mask == 0].any()


def test_webui_missing_depth_model_is_skipped_and_a_missing_colour_model_fails_first(host, garment, person, parsing,
                                                                                     depth_estimator):
    from modules import processing

    from easyphoto.backends import webui

    pixels, _ = person
    gen = webui.make_context().make_generator({"base": "ignored"})
    folder = host.root / "models" / "ControlNet"
    moved = []
    try:
        for stem in ("control_v11f1p_sd15_depth", "control_sd15_random_color"):
            (folder / f"{stem}.pth").rename(folder.parent / f"{stem}.pth")
            moved.append(stem)
        host.calls.clear()  # both ControlNet doubles list their folder on every look-up, as the hosts do
        with pytest.raises(GenerationError, match="color"):
            TryOnPipeline(gen, TryOnConfig(seed=7, short_side=256, color_weight=0.5), depth=depth_estimator).render(
                pixels, garment, MaskInput(parsing=parsing))
        assert processing.calls == []  # nothing was generated
        result = TryOnPipeline(gen, TryOnConfig(seed=7, short_side=256, color_weight=0, first_steps=4,
                                                second_steps=4), depth=depth_estimator).render(
            pixels, garment, MaskInput(parsing=parsing))
        assert result.controls == {"pass 1": ["openpose", "canny"], "pass 2": ["canny"]}
        assert len(processing.calls) == 2
        assert any(note.startswith("depth control skipped: control_v11f1p_sd15_depth") for note in result.notes)
    finally:
        for stem in moved:
            (folder.parent / f"{stem}.pth").rename(folder / f"{stem}.pth")

