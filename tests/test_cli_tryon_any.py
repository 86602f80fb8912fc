"""`python -m easyphoto tryon --backend leffa|catvton|ootd` (issue 15), through cli.main as a user runs it: the
backend's licence line is printed before anything is checked or submitted, a Leffa try-on of a garment photo runs on
the kit's tiny files, CatVTON is refused without the non-commercial opt-in and runs with it on a stored garment, and
every bad input is one line before any job; `tryon` without --backend is still the trained-garment try-on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from easyphoto import cli
from easyphoto.config import Settings
from easyphoto.context import save_settings_file, standalone_context
from tests.conftest import require_module
from tests.test_tryon_jobs import box_mask

require_module("cv2")

FAST = ["--set", "work_size=64", "--set", "steps=2", "--set", "seed=3"]
LEFFA_LINE = "Licence: Leffa: MIT (code and weights, franciszzj/Leffa) (commercial use allowed)"
CATVTON_LINE = ("Licence: CatVTON: CC BY-NC-SA 4.0 (Zheng-Chong/CatVTON: code, weights and demo) "
                "(NON-COMMERCIAL use only)")


def main(capsys, root, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `python -m easyphoto --data-dir ROOT ARGS...`, run in this process."""
    code = cli.main(["--data-dir", str(root), *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def jobs(root) -> list:
    return sorted((root / "easyphoto" / "jobs").glob("*.json"))


@pytest.fixture
def studio(tmp_path, tiny_tryon_models, photo_other_person, photo_astronaut):
    """A data folder whose models folder holds the tiny Leffa and CatVTON files; the person photo (Biden at a quarter
    size), a drawn mask over his jacket and the garment photo (the astronaut at 128 px)."""
    root = tmp_path / "root"
    paths = standalone_context(root).paths
    for name in ("leffa", "catvton"):
        shutil.copytree(tiny_tryon_models / "tryon" / name, paths.models_root / "tryon" / name)
    image = Image.open(photo_other_person).convert("RGB")
    person = tmp_path / "person.png"
    image.resize((image.width // 4, image.height // 4), Image.LANCZOS).save(person)
    width, height = Image.open(person).size
    mask = tmp_path / "mask.png"
    Image.fromarray(box_mask(width, height, (width // 4, height * 3 // 10, width * 3 // 4, height * 6 // 10)),
                    "L").save(mask)
    garment = tmp_path / "garment.png"
    Image.open(photo_astronaut).convert("RGB").resize((128, 128), Image.LANCZOS).save(garment)
    return {"root": root, "paths": paths, "person": person, "mask": mask, "garment": garment}


def test_leffa_prints_its_licence_first_and_tries_on_a_garment_photo(studio, tmp_path, capsys):
    from tests.kit.tiny_sd import torch_threads

    with torch_threads(1):
        code, stdout, stderr = main(capsys, studio["root"], "tryon", "--backend", "leffa", "--garment-image",
                                    studio["garment"], studio["person"], "--out", tmp_path / "out", "--mask",
                                    studio["mask"], "--category", "dress", *FAST)
    assert code == 0, stderr[-2000:]
    assert stderr.splitlines()[0] == LEFFA_LINE  # before the job's own progress lines
    result = json.loads(stdout)  # stdout is the result alone
    assert (result["backend"], result["variant"], result["licence"]["commercial_use"]) == ("leffa", "viton_hd", True)
    [made] = result["tryons"]
    assert made["seed"] == 3 and made["file"].startswith(str(tmp_path / "out"))
    with Image.open(made["file"]) as png:
        meta = json.loads(png.info["easyphoto"])
        pixels = np.asarray(png.convert("RGB"))
    assert meta["config"]["mask_source"] == "mask" and meta["config"]["category"] == "dress"  # implied, chosen
    assert meta["licence"]["backend"] == "leffa" and meta["garment"] == "garment.png"
    outside = np.asarray(Image.open(studio["mask"])) == 0
    original = np.asarray(Image.open(studio["person"]).convert("RGB"))
    assert (pixels[outside] == original[outside]).all() and not (pixels[~outside] == original[~outside]).all()


def test_catvton_needs_the_opt_in_and_then_runs_on_a_stored_garment(studio, tmp_path, capsys):
    from tests.kit.tiny_sd import torch_threads

    root = studio["root"]
    code, _, _ = main(capsys, root, "garment", "add", "--id", "astro", studio["garment"])
    assert code == 0
    catvton = ["tryon", "--backend", "catvton", "--garment", "astro", studio["person"], "--out", tmp_path / "out",
               "--mask", studio["mask"], "--set", "variant=vitonhd", *FAST]
    code, stdout, stderr = main(capsys, root, *catvton)
    lines = stderr.splitlines()
    assert code == 2 and lines[0] == CATVTON_LINE and lines[1].startswith("error: [tryon] CatVTON: CC BY-NC-SA 4.0")
    assert "allow_noncommercial_tryon" in stderr and "Leffa (MIT)" in stderr and stdout == ""
    assert jobs(root) == [] and not (tmp_path / "out").exists()

    save_settings_file(studio["paths"], Settings(allow_noncommercial_tryon=True))
    with torch_threads(1):
        code, stdout, stderr = main(capsys, root, *catvton)
    assert code == 0, stderr[-2000:]
    assert stderr.splitlines()[0] == CATVTON_LINE
    result = json.loads(stdout)
    assert (result["backend"], result["variant"], result["licence"]["commercial_use"]) == ("catvton", "vitonhd", False)
    with Image.open(result["tryons"][0]["file"]) as png:
        assert json.loads(png.info["easyphoto"])["garment"] == "astro"
        assert "EasyPhoto commercial use: not allowed" in png.info["parameters"]


def test_bad_zero_shot_input_is_one_line_before_any_job(studio, tmp_path, capsys):
    root, person, garment = studio["root"], studio["person"], studio["garment"]
    leffa = ["tryon", "--backend", "leffa", person, "--out", tmp_path / "out"]
    cases = [
        (leffa, "needs the garment: give garment_image (a photo) or garment_id"),
        ([*leffa, "--garment-image", tmp_path / "none.png"], "The garment photo"),
        ([*leffa, "--garment", "nobody"], "No garment named 'nobody'"),
        ([*leffa, "--garment-image", garment, "--base", garment], "--base and --config-dir are for --backend lora"),
        ([*leffa, "--garment-image", garment, "--set", "backend=ootd"], "The config says backend 'ootd'"),
        ([*leffa, "--garment-image", garment, "--category", "hat"], "--category hat:"),
        ([*leffa, "--garment-image", garment, "--set", "first_steps=3"], "first_steps"),
        ([*leffa, "--garment-image", garment, "--set", "variant=hd"], "Leffa has no variant 'hd'"),
        ([*leffa, "--garment-image", garment, "--set", "mask_source=mask"], "no --mask was given"),
        ([*leffa, "--garment-image", garment], "Clothes parsing cannot run"),  # mask_source parsing: no parser here
        (["tryon", person, "--out", tmp_path], "--backend lora (the default) puts a trained garment on"),
        (["tryon", "--garment-image", garment, "--garment", "g", person, "--out", tmp_path], "not --garment-image"),
    ]
    for args, message in cases:
        code, stdout, stderr = main(capsys, root, *args)
        assert code == 2 and message in stderr and stdout == "", (args, stderr)
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, stderr
        if "--backend" in args:
            assert stderr.splitlines()[0] == LEFFA_LINE  # the licence is said even when the request is refused
    assert jobs(root) == [] and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        cli.main(["--data-dir", str(root), "tryon", "--backend", "idm-vton", str(person), "--out", str(tmp_path)])
    assert "invalid choice: 'idm-vton'" in capsys.readouterr().err


def test_the_default_backend_is_the_trained_garment_try_on():
    args = cli.build_parser().parse_args(["tryon", "--garment", "suit", "p.png", "--out", "o"])
    assert (args.backend, args.garment_id, args.garment_image, args.category) == ("lora", "suit", None, None)
    args = cli.build_parser().parse_args(["tryon", "--backend", "ootd", "--garment-image", "g.jpg", "p.png",
                                          "--out", "o", "--category", "dress", "--set", "variant=dc"])
    assert (args.backend, args.garment_image, args.category, args.set) == ("ootd", "g.jpg", "dress", ["variant=dc"])


def test_model_outfit_swap_with_a_zero_shot_backend_needs_no_base_and_prints_the_licence(
        studio, tmp_path, capsys, tiny_segment):
    from tests.kit.tiny_sd import torch_threads
    from tests.kit.tiny_segment import install_tiny_segment

    install_tiny_segment(studio["paths"], tiny_segment)
    with torch_threads(1):
        code, stdout, stderr = main(capsys, studio["root"], "model", studio["person"], "--out", tmp_path / "out",
                                    "--outfit-image", studio["garment"], "--mask", studio["mask"],
                                    "--set", "mode=outfit", "--set", "outfit_backend=leffa", "--set", "category=upper",
                                    "--set", "outfit_category=lower", "--set", "outfit_steps=2",
                                    "--set", "outfit_work_size=64", "--set", "seed=2")
    assert code == 0, stderr[-2000:]
    assert stderr.splitlines()[0] == LEFFA_LINE  # no SD 1.5 base was asked for: the backend brings its weights
    result = json.loads(stdout)
    assert result["mode"] == "outfit" and result["results"][0]["garment_kept"]["score"] == pytest.approx(1.0)
    kept = np.asarray(Image.open(studio["mask"])) > 0
    with Image.open(result["results"][0]["file"]) as png:
        pixels = np.asarray(png.convert("RGB"))
    original = np.asarray(Image.open(studio["person"]).convert("RGB"))
    assert (pixels[kept] == original[kept]).all()
