"""`python -m easyphoto design LAYOUT.png` (issue 16) through cli.main: the default action draws with route 1 on
the kit's tiny SD 1.5 and tiny seg ControlNet; bad layouts are one error line and no job."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from easyphoto import cli
from easyphoto.context import standalone_context
from easyphoto.design import layout as L
from easyphoto.generation import CONTROLNET_MODELS
from tests.kit.tiny_sd import torch_threads
from tests.test_design import H, W, png, two_classes


def run(capsys, root, *args):
    code = cli.main(["--data-dir", str(root), *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_design_draws_a_layout_by_default_and_prints_the_result(tmp_path, capsys, tiny_sd_dir, tiny_controlnet_dirs):
    root = tmp_path / "root"
    paths = standalone_context(root).paths
    shutil.copytree(tiny_controlnet_dirs["seg"], paths.controlnet_dir / CONTROLNET_MODELS["seg"])
    labels = two_classes()
    layout = tmp_path / "layout.png"
    layout.write_bytes(png(labels))
    with torch_threads(1):
        code, stdout, stderr = run(capsys, root, "design", layout, "--out", tmp_path / "out", "--base", tiny_sd_dir,
                                   "--set", "steps=2", "--set", "seed=6", "--set", "category=skirt")
    assert code == 0, stderr[-2000:]
    result = json.loads(stdout)
    [file] = result["files"]
    with Image.open(file) as image:
        out = np.asarray(image.convert("RGB"))
        assert "a skirt" in image.info["parameters"]
    assert out.shape == (H, W, 3) and (out[labels == L.BACKGROUND] == 255).all() and result["seeds"] == [6]


def test_bad_layouts_are_one_line_and_no_job(tmp_path, capsys):
    root = tmp_path / "root"
    empty = tmp_path / "empty.png"
    empty.write_bytes(png(np.full((H, W), L.BACKGROUND, np.uint8)))
    for layout, words in ((empty, "empty"), (tmp_path / "absent.png", "does not exist")):
        code, stdout, stderr = run(capsys, root, "design", "draw", layout, "--out", tmp_path / "out")
        assert code == 2 and words in stderr and stdout == ""
    assert not list(root.rglob("jobs/*.json"))  # no job was queued


def test_design_train_trains_a_generator_and_design_draws_with_it(tmp_path, capsys):
    from easyphoto import weights
    from easyphoto.design.smis.cache import build_cache
    from easyphoto.design.smis.fgvc6 import scan_dataset
    from tests.test_design_smis import SIZE, TINY, VGG_ID, write_png_dataset, write_tiny_vgg

    root = tmp_path / "root"
    write_tiny_vgg(weights.get(VGG_ID).path(standalone_context(root).paths))
    dataset = write_png_dataset(tmp_path / "set", count=3)
    sets = [part for key, value in {**TINY, "steps": 2}.items() for part in ("--set", f"{key}={value}")]
    with torch_threads(1):
        code, stdout, stderr = run(capsys, root, "--offline", "design", "train", "--name", "shapes", "--dataset",
                                   dataset, "--device", "cpu", *sets)
        assert code == 0, stderr[-2000:]
        assert json.loads(stdout)["model_name"] == "shapes"
        labels = np.asarray(build_cache(tmp_path / "cache", scan_dataset(dataset), SIZE).labels[0])
        layout = tmp_path / "layout.png"
        layout.write_bytes(png(labels))
        code, stdout, stderr = run(capsys, root, "design", layout, "--out", tmp_path / "out", "--set", "route=smis",
                                   "--set", "smis_model=shapes", "--set", "seed=1")
    assert code == 0, stderr[-2000:]
    with Image.open(json.loads(stdout)["files"][0]) as image:
        out = np.asarray(image.convert("RGB"))
    assert out.shape == (SIZE, SIZE, 3) and (out[labels == L.BACKGROUND] == 255).all()
    code, stdout, stderr = run(capsys, root, "design", "train", "--name", "x", "--dataset", tmp_path / "nothing")
    assert code == 2 and "does not exist" in stderr
