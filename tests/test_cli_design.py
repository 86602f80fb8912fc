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
