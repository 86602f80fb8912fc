"""`python -m easyphoto garment ...` and `python -m easyphoto tryon` (issue 13), through cli.main as a user runs them:
real photos and drawn masks in, the garment dataset, a short garment training on the tiny model, the garment list,
try-on with a drawn mask and with the clothes parser; and every bad input refused in one line, before any job."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from easyphoto import cli
from easyphoto.context import standalone_context
from easyphoto.imageops import load_photo
from easyphoto.store import read_json
from tests.conftest import require_module
from tests.test_tryon_jobs import OBAMA_SUIT_BOX, SUIT_BOX, box_mask, install_models

require_module("cv2")

TRAIN = {"resolution": 256, "rank": 4, "network_alpha": 4, "steps_per_photo": 1, "max_train_steps": 2,
         "validation": True, "validation_every": 2, "seed": 3, "gradient_accumulation_steps": 1,
         "train_text_encoder": False}
FAST = ["--set", "first_steps=4", "--set", "second_steps=4", "--set", "short_side=256", "--set", "seed=11",
        "--set", "mask_dilation=4"]


def main(capsys, root, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `python -m easyphoto --data-dir ROOT ARGS...`, run in this process."""
    code = cli.main(["--data-dir", str(root), *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def result_json(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


def jobs(root) -> list:
    return sorted((root / "easyphoto" / "jobs").glob("*.json"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, photo_astronaut, photos_same_man, photo_other_person, tiny_single_file,
            tiny_sd_config_dir, tiny_controlnet_dirs, tiny_segment, kit_root):
    """The garment 'suit' added, masked, built, captioned and trained through the CLI; the outputs of each step."""
    root = tmp_path_factory.mktemp("cli-tryon")
    install_models(standalone_context(root), tiny_segment, kit_root, tiny_controlnet_dirs)
    masks = root / "masks"
    masks.mkdir()
    Image.fromarray(box_mask(512, 512, SUIT_BOX), "L").save(masks / "astronaut-mask.png")
    Image.fromarray(box_mask(910, 1137, OBAMA_SUIT_BOX), "L").save(masks / "obama-mask.png")
    steps = {
        "add": _run(root, "garment", "add", "--id", "suit", photo_astronaut, photos_same_man[0],
                    "--mask", f"astronaut.png={masks / 'astronaut-mask.png'}"),
        "mask": _run(root, "garment", "mask", "--id", "suit", "obama.jpg", masks / "obama-mask.png"),
        "dataset": _run(root, "garment", "dataset", "--id", "suit", "--set", "mask_source=mask", "--set",
                        "tagger=false", "--set", "resolution=256"),
        "caption": _run(root, "garment", "captions", "--id", "suit", "--set-caption",
                        "train/0.png=suit_garment, top, orange suit"),
    }
    config = root / "train.json"
    config.write_text(json.dumps(TRAIN))
    steps["train"] = _run(root, "garment", "train", "--id", "suit", "--config", config, "--base", tiny_single_file,
                          "--config-dir", tiny_sd_config_dir)
    steps["list"] = _run(root, "garment", "list", "--json")
    image = load_photo(photo_other_person).image
    person = root / "person.png"
    image.resize((image.width // 4, image.height // 4), Image.LANCZOS).save(person)
    return {"root": root, "steps": steps, "person": person, "base": ["--base", tiny_single_file, "--config-dir",
                                                                       tiny_sd_config_dir]}


def _run(root, *args) -> tuple[int, str, str]:
    """cli.main with stdout and stderr captured by hand (a module fixture has no capsys)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--data-dir", str(root), *map(str, args)])
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------------------- the garment


def test_photos_masks_dataset_and_captions(trained):
    steps, root = trained["steps"], trained["root"]
    for name in ("add", "mask", "dataset", "caption"):
        assert steps[name][0] == 0, (name, steps[name])
    assert steps["add"][1].splitlines() == ["suit: 2 photos added", "suit: mask of astronaut.png stored "
                                            "(astronaut.png.png)"]
    assert "suit: mask of obama.jpg stored" in steps["mask"][1]
    table = steps["dataset"][1]
    assert [line.split()[:3] for line in table.splitlines()[1:3]] == [["astronaut.png", "kept", "uploaded"],
                                                                       ["obama.jpg", "kept", "uploaded"]]
    assert "2 of 2 photos kept" in table and "dataset of garment suit:" in steps["dataset"][2]
    assert "train/0.png  suit_garment, top, orange suit" in steps["caption"][1]
    assert "train/1.png  suit_garment, top" in steps["caption"][1]
    garment = root / "easyphoto" / "garments" / "suit"
    assert (garment / "masks" / "astronaut.png.png").is_file() and (garment / "masks" / "obama.jpg.png").is_file()


def test_train_keeps_the_built_dataset_and_exports_the_lora(trained):
    code, stdout, stderr = trained["steps"]["train"]
    root = trained["root"]
    assert code == 0, stderr[-2000:]
    result = result_json(stdout)
    lora_file = root / "models" / "Lora" / "suit.safetensors"
    assert result["garment_id"] == "suit" and result["lora_file"] == str(lora_file) and lora_file.is_file()
    assert result["steps"] == 2 and "train garment suit:" in stderr
    garment = root / "easyphoto" / "garments" / "suit"
    # the dataset's settings were reused (mask source, resolution), so it was not rebuilt and the edit survived
    lines = [json.loads(line) for line in (garment / "dataset" / "metadata.jsonl").read_text().splitlines()]
    assert lines[0]["text"] == "suit_garment, top, orange suit"
    assert Image.open(garment / "dataset" / lines[0]["file_name"]).size == (256, 256)
    info = read_json(garment / "garment.json")
    assert info["category"] == "upper" and info["lora_file"] == str(lora_file)
    scores = read_json(garment / "validation" / "scores.json")
    assert any(s["score"] is not None for s in scores.values())
    [listed] = json.loads(trained["steps"]["list"][1])
    assert listed["id"] == "suit" and listed["trained"] and (listed["photos"], listed["masks"]) == (2, 2)
    assert listed["dataset_images"] == 2 and listed["category"] == "upper"
    assert listed["fidelity"] == max(s["score"] for s in scores.values() if s.get("score") is not None)


# ---------------------------------------------------------------------------------------------- try-on


def test_tryon_with_a_drawn_mask_and_with_the_parser(trained, tmp_path, capsys):
    root, person = trained["root"], trained["person"]
    width, height = Image.open(person).size
    mask = tmp_path / "mask.png"
    Image.fromarray(box_mask(width, height, (width // 5, height * 2 // 7, width * 4 // 5, height * 3 // 5)),
                    "L").save(mask)
    code, stdout, stderr = main(capsys, root, "tryon", "--garment", "suit", person, "--out", tmp_path / "drawn",
                                "--mask", mask, *FAST, *trained["base"])
    assert code == 0, stderr[-2000:]
    result = result_json(stdout)
    [made] = result["tryons"]
    assert made["seed"] == 11 and made["file"].startswith(str(tmp_path / "drawn")) and "try-on of suit:" in stderr
    assert 0.0 <= made["fidelity"]["score"] <= 1.0 and result["evaluations"]["unet"] == 4
    with Image.open(made["file"]) as png:
        saved = json.loads(png.info["easyphoto"])
        assert "EasyPhoto garment: suit" in png.info["parameters"]
    assert saved["config"]["mask_source"] == "mask" and saved["config"]["category"] == "upper"  # implied by --mask
    original, output = np.asarray(Image.open(person)), np.asarray(Image.open(made["file"]).convert("RGB"))
    assert (output[:height // 5] == original[:height // 5]).all()  # above the drawn mask: the photo's own

    code, stdout, stderr = main(capsys, root, "tryon", "--garment", "suit", person, "--out", tmp_path / "parsed",
                                *FAST, *trained["base"])
    assert code == 0, stderr[-2000:]
    [parsed] = result_json(stdout)["tryons"]
    with Image.open(parsed["file"]) as png:
        assert json.loads(png.info["easyphoto"])["config"]["mask_source"] == "parsing"  # the default


def test_tryon_with_clicks_repaints_the_point_segmenters_mask(trained, tmp_path, capsys, tiny_segment):
    """--point / --box: the tiny SAM (random weights, a mask that follows the prompts) installed for this test."""
    from easyphoto.imageops import dilate
    from easyphoto.segment import Point, load_segmenter
    from tests.kit.tiny_segment import install_tiny_segment

    root, person = trained["root"], trained["person"]
    paths = standalone_context(root).paths
    install_tiny_segment(paths, tiny_segment, parser=False)
    sam = root / "models" / "easyphoto" / "mobilesam"
    try:
        code, stdout, stderr = main(capsys, root, "tryon", "--garment", "suit", person, "--out", tmp_path,
                                    "--point", "120,300", "--box", "40,150,200,330", *FAST, "--set", "mask_dilation=0",
                                    *trained["base"])
        original = np.asarray(Image.open(person))
        clicked = load_segmenter(paths).segment(original, [Point(120, 300)], [(40, 150, 200, 330)])
    finally:
        shutil.rmtree(sam)
    assert code == 0, stderr[-2000:]
    [made] = result_json(stdout)["tryons"]
    output = np.asarray(Image.open(made["file"]).convert("RGB"))
    with Image.open(made["file"]) as png:
        assert json.loads(png.info["easyphoto"])["config"]["mask_source"] == "points"  # implied by the clicks
    untouched = dilate(clicked, 2) == 0  # random weights: a speckled mask, taken as it is (mask_dilation 0)
    assert clicked.any() and untouched.any() and (output[untouched] == original[untouched]).all()
    assert not (output[clicked > 0] == original[clicked > 0]).all()


def test_tryon_refuses_bad_input_before_any_job(trained, tmp_path, capsys, photo_astronaut):
    root, person = trained["root"], trained["person"]
    before = jobs(root)
    mask = tmp_path / "m.png"
    Image.new("L", Image.open(person).size, 255).save(mask)
    tryon = ["tryon", "--garment", "suit", person, "--out", tmp_path / "out"]
    cases = [
        (["tryon", "--garment", "nobody", person, "--out", tmp_path], "No garment named 'nobody'"),
        ([*tryon, "--set", "mask_source=mask"], "mask_source is 'mask' but no --mask was given"),
        ([*tryon, "--set", "mask_source=points"], "mask_source is 'points' but no --point"),
        ([*tryon, "--mask", mask, "--set", "mask_source=parsing"], "--mask is used with mask_source 'mask'"),
        ([*tryon, "--point", "10,20,maybe"], "--point '10,20,maybe': expected X,Y or X,Y,neg"),
        ([*tryon, "--box", "1,2,3"], "--box '1,2,3': expected X0,Y0,X1,Y1"),
        ([*tryon, "--point", "10,20"], "Point/box masks cannot run"),  # no segmenter files installed
        ([*tryon, "--set", "mask_sorce=mask"], "did you mean 'mask_source'?"),
        (["tryon", "--garment", "suit", tmp_path / "none.jpg", "--out", tmp_path], "The person photo"),
    ]
    for args, message in cases:
        code, _, stderr = main(capsys, root, *args)
        assert code == 2 and stderr.startswith("error: ") and message in stderr, (args, stderr)
    assert jobs(root) == before and not (tmp_path / "out").exists()


def test_model_runs_the_digital_model_and_prints_its_pose(trained, tmp_path, capsys, photo_astronaut):
    root, person = trained["root"], trained["person"]
    code, stdout, stderr = main(capsys, root, "model", photo_astronaut, "--pose-only")
    assert code == 0, stderr
    pose = json.loads(stdout)
    assert "left_ankle" in pose["completed_joints"] and pose["padding"][3] > 0
    assert (pose["skeleton"]["canvas_width"], pose["skeleton"]["canvas_height"]) == (512, 512)
    skeleton = tmp_path / "pose.json"
    skeleton.write_text(json.dumps(pose["skeleton"]))
    width, height = Image.open(person).size
    mask = tmp_path / "mask.png"
    Image.fromarray(box_mask(width, height, (width // 5, height * 2 // 7, width * 4 // 5, height * 3 // 5)),
                    "L").save(mask)
    code, stdout, stderr = main(capsys, root, "model", person, "--out", tmp_path / "out", "--garment", "suit",
                                "--mask", mask, "--set", "steps=3", "--set", "short_side=256", "--set", "seed=5",
                                *trained["base"])
    assert code == 0, stderr[-2000:]
    [made] = result_json(stdout)["results"]
    assert made["mode"] == "model" and made["garment_kept"]["score"] > 0.99 and made["seed"] == 5
    with Image.open(made["file"]) as png:
        assert json.loads(png.info["easyphoto"])["config"]["mask_source"] == "mask"  # implied by --mask
    before = jobs(root)
    cases = [
        (["model", person], "--out is needed"),
        (["model", person, "--out", tmp_path, "--set", "mode=pose"], "A pose swap needs garment_id"),
        (["model", person, "--out", tmp_path, "--garment", "nobody"], "No garment named 'nobody'"),
        (["model", person, "--out", tmp_path, "--skeleton", tmp_path / "none.json"], "The skeleton"),
        (["model", "--pose-only"], "--pose-only needs the photo"),
        (["model", person, "--out", tmp_path, "--set", "mode=outfit", "--set", "outfit_category=upper"],
         "outfit_category"),
    ]
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    cases.append((["model", person, "--out", tmp_path, "--skeleton", broken], "The skeleton is not JSON"))
    for args, message in cases:
        code, _, stderr = main(capsys, root, *args)
        assert code == 2 and stderr.startswith("error: ") and message in stderr, (args, stderr)
    assert jobs(root) == before


def test_an_untrained_garment_and_a_missing_parser_are_refused(trained, tmp_path, capsys, photo_astronaut):
    root, person = trained["root"], trained["person"]
    code, _, _ = main(capsys, root, "garment", "add", "--id", "shirt", photo_astronaut)
    assert code == 0
    code, _, stderr = main(capsys, root, "tryon", "--garment", "shirt", person, "--out", tmp_path)
    assert code == 2 and "Garment 'shirt' has no trained LoRA yet" in stderr
    parser = root / "models" / "easyphoto" / "segformer_b2_clothes"
    aside = tmp_path / "parser"
    shutil.move(parser, aside)
    try:
        before = jobs(root)
        code, _, stderr = main(capsys, root, "tryon", "--garment", "suit", person, "--out", tmp_path)
        assert code == 2 and "Clothes parsing cannot run" in stderr and "models fetch --group tryon" in stderr
        assert jobs(root) == before
    finally:
        shutil.move(aside, parser)
    assert main(capsys, root, "garment", "delete", "--id", "shirt")[:2] == (0, "shirt: deleted\n")


# ---------------------------------------------------------------------------------------------- garment commands


def test_garment_commands_refuse_bad_input(tmp_path, capsys, photo_astronaut, photos_same_man):
    root = tmp_path
    standalone_context(root).identities.create("zed")
    mask = tmp_path / "m.png"
    Image.new("L", (512, 512), 0).save(mask)
    cases = [
        (["garment", "add", "--id", "zed", photo_astronaut], "'zed' is already an identity"),
        (["garment", "add", "--id", "Bad id!", photo_astronaut], "The garment id 'Bad id!' contains"),
        (["garment", "add", "--id", "suit", photo_astronaut, "--mask", "astronaut.png"], "expected "
         "photo.jpg=photo-mask.png"),
        (["garment", "add", "--id", "suit", photo_astronaut, "--mask", f"other.png={mask}"],
         "no photo of that name is being added"),
        (["garment", "add", "--id", "suit", photo_astronaut, "--mask", f"astronaut.png={tmp_path / 'x.png'}"],
         "is not a file"),
        (["garment", "dataset", "--id", "nothing"], "No garment named 'nothing'"),
        (["garment", "dataset", "--id", "zed"], "No garment named 'zed'"),
        (["garment", "train", "--id", "nothing"], "No garment named 'nothing'"),
    ]
    for args, message in cases:
        code, _, stderr = main(capsys, root, *args)
        assert code == 2 and message in stderr, (args, stderr)
    assert not (root / "easyphoto" / "garments" / "suit").exists() and jobs(root) == []

    assert main(capsys, root, "garment", "add", "--id", "suit", photo_astronaut)[0] == 0
    code, _, stderr = main(capsys, root, "garment", "mask", "--id", "suit", "astronaut.png", mask)
    assert code == 2 and "The mask for astronaut.png is empty" in stderr
    code, _, stderr = main(capsys, root, "garment", "points", "--id", "suit", "astronaut.png", "--point", "5,5,neg")
    assert code == 2 and "at least one --point on the garment" in stderr
    code, stdout, _ = main(capsys, root, "garment", "points", "--id", "suit", "astronaut.png", "--point", "100,400",
                           "--point", "5,5,neg", "--box", "30,300,280,512")
    assert code == 0 and "2 click(s) and 1 box(es) for astronaut.png" in stdout
    points = read_json(root / "easyphoto" / "garments" / "suit" / "points.json")
    assert points == {"astronaut.png": {"points": [[100.0, 400.0, True], [5.0, 5.0, False]],
                                        "boxes": [[30.0, 300.0, 280.0, 512.0]]}}
    code, _, stderr = main(capsys, root, "garment", "captions", "--id", "suit")
    assert code == 2 and "has no dataset yet" in stderr
    code, _, stderr = main(capsys, root, "garment", "dataset", "--id", "suit", "--set", "mask_source=mask")
    assert code == 2 and "No photo of 'suit' has an uploaded mask" in stderr
    tiny = tmp_path / "tiny.png"  # 20×20 px of a 910×1137 photo: too small a garment
    Image.fromarray(box_mask(910, 1137, (0, 0, 20, 20)), "L").save(tiny)
    assert main(capsys, root, "garment", "add", "--id", "suit", photos_same_man[0], "--mask", f"obama.jpg={tiny}")[0] == 0
    code, stdout, stderr = main(capsys, root, "garment", "dataset", "--id", "suit", "--set", "mask_source=mask",
                                "--set", "tagger=false")
    assert code == 2 and "No photo of 'suit' was kept" in stderr
    rows = [line.split(None, 2) for line in stdout.splitlines()[1:]]  # every photo, and why it was dropped
    assert rows == [["astronaut.png", "dropped", "no uploaded mask (the mask source is 'mask': uploaded masks only)"],
                    ["obama.jpg", "dropped", "uploaded  0.0%     mask too small (the garment covers 0.0% of the "
                                             "photo; at least 2.0%)"]]
    code, _, stderr = main(capsys, root, "garment", "dataset", "--id", "suit", "--set", "category=shoes")
    assert code == 2 and "--set category=shoes" in stderr
    code, _, stderr = main(capsys, root, "garment", "train", "--id", "suit", "--dataset-set", "margin=7",
                           "--base", tmp_path / "none.safetensors")
    assert code == 2 and "--dataset-set margin=7" in stderr
    code, _, stderr = main(capsys, root, "garment", "train", "--id", "suit", "--base", tmp_path / "none.safetensors")
    assert code == 2 and "The base model" in stderr and "does not exist" in stderr
    code, stdout, _ = main(capsys, root, "garment", "list")
    assert code == 0 and stdout.splitlines()[1].split() == ["suit", "2", "1", "0", "upper", "no"]


def test_tryon_options_imply_the_mask_source_and_the_garment_category(tmp_path):
    from easyphoto.cli_tryon import _config, tryon_config
    from easyphoto.config import TryOnConfig

    def implied(*argv):
        args = cli.build_parser().parse_args(["tryon", "--garment", "g", "p.png", "--out", "o", *argv])
        return tryon_config(_config(TryOnConfig, args.config, args.set, "tryon"), args, {"category": "dress"})

    assert (implied().mask_source, implied().category) == ("parsing", "dress")  # the garment's category
    assert implied("--mask", "m.png").mask_source == "mask"
    assert implied("--point", "1,2").mask_source == implied("--box", "1,2,3,4").mask_source == "points"
    chosen = implied("--mask", "m.png", "--set", "mask_source=parsing", "--set", "category=upper")
    assert (chosen.mask_source, chosen.category) == ("parsing", "upper")  # a --set choice is never overridden
    config = tmp_path / "tryon.json"
    config.write_text(json.dumps({"category": "skirt"}))
    assert implied("--config", str(config)).category == "skirt"  # nor a --config file's


def test_help_lists_the_garment_actions_and_tryon():
    parser = cli.build_parser()
    assert "garment" in parser.format_help() and "tryon" in parser.format_help()
    args = parser.parse_args(["garment", "points", "--id", "g", "a.png", "--point", "1,2", "--data-dir", "d"])
    assert (args.garment_command, args.point, args.data_dir) == ("points", ["1,2"], "d")  # global options after it
