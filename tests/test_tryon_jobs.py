"""Garment try-on end to end through the job queue (issue 13), on the tiny model: real photos with uploaded masks →
the garment dataset → a garment LoRA trained a few steps in the child process, validated by garment fidelity →
try-on jobs on a real person photo with a drawn mask and with the clothes parser, on the tiny diffusers backend.

One garment is trained for the whole module (the slowest step); each try-on test runs one short job on it. The
clothes parser is the kit's rigged tiny SegFormer (its labels follow each pixel's colour: red-dominant → upper
clothes), the ControlNets and the depth model are the kit's tiny ones placed where a standalone install has them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import TrainConfig, TryOnConfig
from easyphoto.context import standalone_context
from easyphoto.generation import CONTROLNET_MODELS
from easyphoto.imageops import dilate, load_photo
from easyphoto.sd import lora
from easyphoto.store import read_json
from easyphoto.tryon import garments
from easyphoto.tryon.dataset import GarmentDatasetConfig
from tests.conftest import require_module

require_module("cv2")

GARMENT = "suit"
SUIT_BOX = (30, 300, 280, 512)  # x0, y0, x1, y1: the astronaut's suit (the photo is 512×512)
OBAMA_SUIT_BOX = (120, 560, 800, 1137)  # his dark suit in obama.jpg (910×1137)
DATASET = GarmentDatasetConfig(mask_source="mask", tagger=False, resolution=256, category="upper")
TRAIN = TrainConfig(resolution=256, rank=4, network_alpha=4, steps_per_photo=1, max_train_steps=2, validation=True,
                    validation_every=2, seed=3, gradient_accumulation_steps=1, train_text_encoder=False)
FAST = {"first_steps": 4, "second_steps": 4, "short_side": 256, "seed": 42, "mask_dilation": 4}


def box_mask(width: int, height: int, box) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 255
    return mask


def run(ctx, kind: str, params: dict, timeout: float = 900):
    """Submit a job as every front end does and wait for its final record."""
    from easyphoto.operations import job_queue, submit

    record = submit(ctx, kind, params)
    return job_queue(ctx).wait(record.id, timeout=timeout)


def install_models(ctx, tiny_segment, kit_root, tiny_controlnet_dirs) -> None:
    """The rigged clothes parser (no point segmenter), the tiny depth estimator and every ControlNet, where a
    standalone install keeps them."""
    from easyphoto.tryon.depth import depth_dir
    from tests.kit.tiny_depth import tiny_depth_controlnet_dir, tiny_dpt_dir
    from tests.kit.tiny_segment import install_tiny_segment

    install_tiny_segment(ctx.paths, tiny_segment, rigged=True, segmenter=False)
    shutil.copytree(tiny_dpt_dir(kit_root), depth_dir(ctx.paths))
    folder = ctx.paths.controlnet_dir
    folder.mkdir(parents=True, exist_ok=True)
    sources = {**tiny_controlnet_dirs, "depth": tiny_depth_controlnet_dir(kit_root)}
    for kind, stem in CONTROLNET_MODELS.items():
        (folder / stem).symlink_to(sources[kind], target_is_directory=True)


@pytest.fixture(scope="module")
def studio(tmp_path_factory, photo_astronaut, photos_same_man, photo_other_person, tiny_single_file,
           tiny_sd_config_dir, tiny_controlnet_dirs, tiny_segment, kit_root):
    """A data folder with the garment 'suit' built and trained through the jobs, and a person photo (the kit's
    photo of Biden at a quarter size, so the CPU renders it quickly)."""
    from easyphoto.operations import shutdown_all

    root = tmp_path_factory.mktemp("tryon-jobs")
    ctx = standalone_context(root)
    install_models(ctx, tiny_segment, kit_root, tiny_controlnet_dirs)
    garments.add_photos(ctx, GARMENT, [photo_astronaut, photos_same_man[0]])
    garments.add_mask(ctx, GARMENT, "astronaut.png", box_mask(512, 512, SUIT_BOX))
    garments.add_mask(ctx, GARMENT, "obama.jpg", box_mask(910, 1137, OBAMA_SUIT_BOX))
    built = run(ctx, "garment_dataset", {"garment_id": GARMENT, "dataset": DATASET.to_dict()})
    assert built.state.value == "succeeded", built.error
    base = {"base": str(tiny_single_file), "config_dir": str(tiny_sd_config_dir)}
    trained = run(ctx, "garment_train", {"garment_id": GARMENT, "dataset": DATASET.to_dict(),
                                         "config": TRAIN.to_dict(), **base})
    assert trained.state.value == "succeeded", trained.error
    image = load_photo(photo_other_person).image
    person = root / "person.png"
    image.resize((image.width // 4, image.height // 4), Image.LANCZOS).save(person)
    yield {"ctx": ctx, "built": built.result, "trained": trained.result, "base": base, "person": person,
           "root": root}
    shutdown_all()


def tryon_params(studio, out, **config) -> dict:
    return {"garment_id": GARMENT, "person": str(studio["person"]), "out": str(out),
            "config": TryOnConfig(**{**FAST, **config}).to_dict(), **studio["base"]}


def torso_mask(person) -> np.ndarray:
    """A drawn mask over the person's jacket (the middle of the photo, below the face)."""
    width, height = Image.open(person).size
    return box_mask(width, height, (width // 5, height * 2 // 7, width * 4 // 5, height * 3 // 5))


# ---------------------------------------------------------------------------------------------- dataset and training


def test_the_dataset_is_the_masked_garment_on_white_with_captions(studio):
    ctx = studio["ctx"]
    layout = ctx.garments.get(GARMENT)
    assert studio["built"] == {"garment_id": GARMENT, "kept": 2, "total": 2, "tagger": None}
    report = read_json(layout.report)
    assert [(p["file"], p["kept"], p["mask_source"]) for p in report["photos"]] == [
        ("astronaut.png", True, "uploaded"), ("obama.jpg", True, "uploaded")]
    lines = [json.loads(line) for line in (layout.dataset / "metadata.jsonl").read_text().splitlines()]
    assert [line["text"] for line in lines] == ["suit_garment, top"] * 2
    for line in lines:
        crop = np.asarray(Image.open(layout.dataset / line["file_name"]).convert("RGB"))
        mask = np.asarray(Image.open(layout.dataset / "masks" / Path(line["file_name"]).name))
        assert crop.shape == (256, 256, 3) and mask.shape == (256, 256)
        assert (crop[mask == 0] == 255).all() and (mask > 0).any()  # white outside the garment
        assert (crop[mask > 0] < 250).any()  # the garment's own pixels inside


def test_the_garment_lora_is_exported_with_its_metadata_and_fidelity_scores(studio, tiny_single_file):
    ctx = studio["ctx"]
    layout = ctx.garments.get(GARMENT)
    result = studio["trained"]
    assert result["garment_id"] == GARMENT and result["steps"] == 2
    assert result["lora_file"] == str(ctx.paths.lora_dir / f"{GARMENT}.safetensors") == str(layout.lora_file)
    weights, metadata = lora.load_lora(layout.lora_file)
    assert weights and metadata["ss_output_name"] == GARMENT and metadata["ss_steps"] == "2"
    assert metadata["easyphoto_subject"] == "garment" and metadata["easyphoto_garment_category"] == "upper"
    info = read_json(layout.garment_json)
    assert (info["garment_id"], info["category"], info["lora_file"]) == (GARMENT, "upper", result["lora_file"])
    assert info["base_model"]["file"] == tiny_single_file.name and info["training"]["steps"] == 2
    scores = read_json(layout.validation / "scores.json")
    [checkpoint] = [name for name in scores if name.startswith("step-")]
    entry = scores[checkpoint]
    assert entry["step"] == 2 and entry["against"] == "garment photos (garment region redrawn)"
    assert len(entry["images"]) == 2 and all(0.0 <= image["score"] <= 1.0 for image in entry["images"])
    assert entry["score"] == pytest.approx(np.mean([image["score"] for image in entry["images"]]))
    assert all((layout.validation / image["image"]).is_file() for image in entry["images"])


# ---------------------------------------------------------------------------------------------- try-on


def test_tryon_with_a_drawn_mask_repaints_only_the_mask_and_is_seed_deterministic(studio, tmp_path):
    ctx, person = studio["ctx"], studio["person"]
    mask_file = tmp_path / "mask.png"
    Image.fromarray(torso_mask(person), "L").save(mask_file)
    params = {**tryon_params(studio, tmp_path / "a", mask_source="mask"), "mask": str(mask_file)}
    first = run(ctx, "tryon", params)
    assert first.state.value == "succeeded", first.error
    again = run(ctx, "tryon", {**params, "out": str(tmp_path / "b")})
    [made] = first.result["tryons"]
    [remade] = again.result["tryons"]
    assert made["file"].startswith(str(tmp_path / "a")) and len(first.result["images"]) == 1
    assert first.result["backend"] and sum(first.result["evaluations"].values()) > 0
    assert made["seed"] == 42 and 0.0 <= made["fidelity"]["score"] <= 1.0
    output, original = np.asarray(Image.open(made["file"]).convert("RGB")), np.asarray(Image.open(person))
    assert output.shape == original.shape
    drawn = torso_mask(person) > 0
    # the drawn region grown by mask_dilation may change (its blended edge a pixel or two more); beyond, nothing
    untouched = dilate(torso_mask(person), FAST["mask_dilation"] + 2) == 0
    assert (output[untouched] == original[untouched]).all() and not (output[drawn] == original[drawn]).all()
    assert set(made["protected"]) == {"left hand", "right hand"}  # the crossed arms' hands kept out of the mask
    assert np.array_equal(output, np.asarray(Image.open(remade["file"]).convert("RGB")))  # same seed, same image
    with Image.open(made["file"]) as png:
        infotext, saved = png.info["parameters"], json.loads(png.info["easyphoto"])
    assert "EasyPhoto garment: suit" in infotext and "Seed: 42" in infotext
    assert f"{made['fidelity']['score']:.3f}" in infotext  # the fidelity in what PNG Info shows
    assert saved["garment_id"] == GARMENT and saved["fidelity"] == made["fidelity"]


def test_tryon_with_the_clothes_parser(studio, tmp_path):
    from tests.kit.tiny_segment import RIGGED_LABEL, colour_rule

    person = studio["person"]
    record = run(studio["ctx"], "tryon", tryon_params(studio, tmp_path, mask_source="parsing"))
    assert record.state.value == "succeeded", record.error
    [made] = record.result["tryons"]
    output, original = np.asarray(Image.open(made["file"]).convert("RGB")), np.asarray(Image.open(person))
    # the rigged parser's upper clothes are the red-dominant pixels; far from them nothing changes
    upper = np.where(colour_rule(original) == RIGGED_LABEL, 255, 0).astype(np.uint8)
    far = dilate(upper, FAST["mask_dilation"] + 8) == 0
    assert far.any() and (output[far] == original[far]).all() and not np.array_equal(output, original)
    assert 0.0 <= made["fidelity"]["score"] <= 1.0 and made["notes"] == []
    # 4 steps × 0.70 denoise = 2 UNet steps per pass; openpose + canny + depth in pass 1, canny + depth in pass 2
    assert made["controls"] == {"pass 1": ["openpose", "canny", "depth"], "pass 2": ["canny", "depth"]}
    assert record.result["evaluations"] == {"unet": 4, "controlnet": 2 * 3 + 2 * 2}


# ---------------------------------------------------------------------------------------------- digital model


def model_params(studio, out, **config) -> dict:
    from easyphoto.config import DigitalModelConfig

    return {"person": str(studio["person"]), "garment_id": GARMENT, "out": str(out),
            "config": DigitalModelConfig(**{"steps": 4, "short_side": 256, "seed": 42, **config}).to_dict(),
            **studio["base"]}


def test_digital_model_job_keeps_the_garment_and_returns_an_editable_skeleton(studio, tmp_path):
    from easyphoto.pose.skeleton import skeleton_from_json

    ctx, person = studio["ctx"], studio["person"]
    mask_file = tmp_path / "mask.png"
    Image.fromarray(torso_mask(person), "L").save(mask_file)
    record = run(ctx, "digital_model", {**model_params(studio, tmp_path, mask_source="mask"), "mask": str(mask_file)})
    assert record.state.value == "succeeded", record.error
    [made] = record.result["results"]
    assert made["mode"] == "model" and made["garment_kept"]["score"] > 0.99 and made["seed"] == 42
    left, top, right, bottom = made["padding"]
    output, original = np.asarray(Image.open(made["file"]).convert("RGB")), np.asarray(Image.open(person))
    height, width = original.shape[:2]
    assert output.shape == (height + top + bottom, width + left + right, 3)
    kept = torso_mask(person) > 0
    assert np.array_equal(output[top:top + height, left:left + width][kept], original[kept])
    bodies, size = skeleton_from_json(made["skeleton"])  # the pose used, as JSON the user can edit and send back
    assert size == (width, height) and bodies[0][:, 2].all()
    with Image.open(made["file"]) as png:
        assert "EasyPhoto digital model: model" in png.info["parameters"] and "<lora:suit:0.8>" in png.info["parameters"]
        assert json.loads(png.info["easyphoto"])["garment_kept"] == made["garment_kept"]


def test_pose_swap_job_draws_a_gallery_pose_and_scores_the_garment(studio, tmp_path):
    from easyphoto.pose.gallery import pose_gallery

    params = {**model_params(studio, tmp_path, mode="pose", pose_name=pose_gallery()[0]), "person": None}
    record = run(studio["ctx"], "digital_model", params)
    assert record.state.value == "succeeded", record.error
    [made] = record.result["results"]
    assert Image.open(made["file"]).size == (512, 768) and made["mode"] == "pose"
    # the rigged parser finds the garment (red-dominant pixels) or says why there is no score
    assert made["garment_kept"] is None or 0.0 <= made["garment_kept"]["score"] <= 1.0


def test_digital_model_bad_input_fails_before_any_generation(studio, tmp_path):
    ctx, out = studio["ctx"], tmp_path / "out"
    no_garment = run(ctx, "digital_model", {**model_params(studio, out, mode="pose", pose_name="x"), "garment_id": None})
    assert failure(no_garment).startswith("A pose swap needs garment_id")
    unknown_pose = run(ctx, "digital_model", model_params(studio, out, mode="pose", pose_name="moonwalk"))
    assert "moonwalk" in failure(unknown_pose)
    partial = {"canvas_width": 100, "canvas_height": 200, "people": [{"pose_keypoints_2d": [50, 20, 1] + [0] * 51}]}
    missing = run(ctx, "digital_model", {**model_params(studio, out, mode="pose"), "skeleton": json.dumps(partial)})
    assert "right_shoulder" in failure(missing)
    no_outfit = run(ctx, "digital_model", model_params(studio, out, mode="outfit"))
    assert failure(no_outfit).startswith("An outfit swap needs outfit_id")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- bad input


def failure(record) -> str:
    assert record.state.value == "failed" and record.error, record
    return record.error["message"]


def test_bad_input_fails_before_any_generation(studio, tmp_path, photo_astronaut):
    ctx, person = studio["ctx"], studio["person"]
    out = tmp_path / "out"
    absent = run(ctx, "tryon", tryon_params(studio, out, mask_source="parsing", category="hat"))
    assert failure(absent).startswith("The photo shows no 'hat' garment") and "upper_clothes" in failure(absent)
    blank = tmp_path / "blank.png"
    Image.new("L", Image.open(person).size, 0).save(blank)
    empty = run(ctx, "tryon", {**tryon_params(studio, out, mask_source="mask"), "mask": str(blank)})
    assert failure(empty) == "The given try-on mask is empty: no pixel is marked."
    no_sam = run(ctx, "tryon", {**tryon_params(studio, out, mask_source="points"), "points": [[100, 200, True]]})
    assert failure(no_sam).startswith("Point/box masks cannot run") and no_sam.error["error"] == "MissingWeights"
    garments.add_photos(ctx, "untrained", [photo_astronaut])
    untrained = run(ctx, "tryon", {**tryon_params(studio, out), "garment_id": "untrained"})
    assert failure(untrained).startswith("Garment 'untrained' has no trained LoRA yet")
    assert not out.exists()  # nothing was rendered or saved


@pytest.fixture
def without_parser(studio):
    """The clothes parser's files moved away for one test (and back)."""
    from easyphoto.segment.parsing import parser_folder

    folder = parser_folder(studio["ctx"].paths)
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    yield
    aside.rename(folder)


def test_no_person_and_a_missing_parser_fail_before_any_generation(studio, tmp_path, without_parser):
    ctx = studio["ctx"]
    out = tmp_path / "out"
    missing = run(ctx, "tryon", tryon_params(studio, out, mask_source="parsing"))
    assert failure(missing).startswith("Clothes parsing cannot run") and missing.error["error"] == "MissingWeights"
    moon = tmp_path / "moon.png"  # scikit-image's moon: no person in it
    Image.open(_skimage_file("moon.png")).convert("RGB").resize((256, 256)).save(moon)
    mask = tmp_path / "moon-mask.png"
    Image.fromarray(box_mask(256, 256, (64, 64, 192, 192)), "L").save(mask)
    nobody = run(ctx, "tryon", {**tryon_params(studio, out, mask_source="mask"), "person": str(moon),
                                "mask": str(mask)})
    assert "No person was found" in failure(nobody)
    assert not out.exists()


def _skimage_file(name: str):
    from tests.kit.photos import _installed_package_file

    found = _installed_package_file("skimage", f"data/{name}")
    assert found is not None, f"scikit-image's {name} is missing"
    return found
