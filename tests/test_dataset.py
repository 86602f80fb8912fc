"""Dataset preparation: the reference's layout facts, reproducibility, matting."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import DEFAULT_CAPTION, TrainConfig
from easyphoto.errors import EasyPhotoError
from easyphoto.face import stacks
from easyphoto.face.types import Face
from easyphoto.store import Paths
from easyphoto.train.dataset import head_region, prepare_dataset, square_crop
from easyphoto.train.photos import PhotoReport, list_photos, select_photos

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def selected(tmp_path_factory, photos_same_man, photo_other_person):
    import shutil

    folder = tmp_path_factory.mktemp("photos")
    for p in (*photos_same_man, photo_other_person):
        shutil.copy(p, folder / p.name)
    stack = stacks.load("dlib", Paths.standalone(tmp_path_factory.mktemp("models")))
    return folder, stack, select_photos(list_photos(folder), stack)


def test_dataset_layout_matches_the_reference(tmp_path, selected):
    folder, stack, report = selected
    items = prepare_dataset(report, folder, tmp_path / "dataset", stack)
    out = tmp_path / "dataset"
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "metadata.jsonl", "train"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["0.jpg", "0.txt", "1.jpg", "1.txt", "2.jpg", "2.txt"]
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert lines == [{"file_name": f"train/{i}.jpg", "text": DEFAULT_CAPTION} for i in range(3)]
    for i in range(3):
        image = Image.open(out / "train" / f"{i}.jpg")
        assert image.size == (512, 512) and image.mode == "RGB"
        assert (out / "train" / f"{i}.txt").read_text() == DEFAULT_CAPTION
    assert [it.source for it in items] == ["obama.jpg", "obama2.jpg", "obama3.jpg"]  # biden was dropped
    pixels = np.asarray(Image.open(out / "train" / "0.jpg"))
    assert pixels[:20, :20].min() >= 245  # matted onto white
    centre = pixels[200:312, 200:312]
    assert centre.mean() < 235  # the face is there


def test_dataset_is_reproducible(tmp_path, selected):
    folder, stack, report = selected
    prepare_dataset(report, folder, tmp_path / "a", stack)
    prepare_dataset(report, folder, tmp_path / "b", stack)
    for name in ("metadata.jsonl", "dataset.json", "train/0.jpg", "train/1.jpg", "train/2.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_resolution_caption_and_no_matting(tmp_path, selected):
    folder, stack, report = selected
    config = TrainConfig(resolution=256, caption="photo of sks man", matting=False)
    items = prepare_dataset(report, folder, tmp_path / "d", stack, config)
    assert Image.open(tmp_path / "d" / "train" / "0.jpg").size == (256, 256)
    assert (tmp_path / "d" / "train" / "2.txt").read_text() == "photo of sks man"
    assert not any(it.matted for it in items)
    corner = np.asarray(Image.open(tmp_path / "d" / "train" / "0.jpg"))[:10, :10]
    assert corner.min() < 245  # the original background stays


def test_rerun_replaces_the_previous_dataset(tmp_path, selected):
    folder, stack, report = selected
    out = tmp_path / "dataset"
    prepare_dataset(report, folder, out, stack)
    (out / "train" / "stale.jpg").write_bytes(b"x")
    prepare_dataset(report, folder, out, stack)
    assert not (out / "train" / "stale.jpg").exists()
    assert not any(p.name.endswith((".partial", ".old")) for p in tmp_path.iterdir())


def test_nothing_kept_is_an_error(tmp_path, selected):
    folder, stack, report = selected
    empty = PhotoReport([d for d in report.decisions if not d.kept], None, {}, {})
    with pytest.raises(EasyPhotoError, match="No photos were kept"):
        prepare_dataset(empty, folder, tmp_path / "x", stack)


def test_square_crop_stays_inside_and_contains_the_face():
    face = Face((50, 30, 150, 160), np.zeros((5, 2), np.float32), 1.0)
    for size in [(1000, 800), (300, 900), (200, 180)]:
        x0, y0, x1, y1 = square_crop(face, 3.0, size)
        assert x1 - x0 == y1 - y0 and x0 >= 0 and y0 >= 0 and x1 <= size[0] and y1 <= size[1]
        if x1 - x0 >= 130:
            assert x0 <= 50 and y0 <= 30 and x1 >= 150 and y1 >= 160
    mask = head_region(face, (0, 0, 400, 400), 400)
    assert mask[95, 100] > 0.99 and mask[5, 395] < 0.01


def test_photos_check_cli(selected):
    folder, _, _ = selected
    out = subprocess.run([sys.executable, "-m", "easyphoto", "photos", "check", str(folder), "--face-stack", "dlib"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "biden.jpg" in out.stdout and "a different person" in out.stdout
    assert "3 of 4 kept; reference face: obama" in out.stdout
    missing = subprocess.run([sys.executable, "-m", "easyphoto", "photos", "check", str(folder / "nope")],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_holdout_keeps_typical_photos_out_of_training_when_there_are_enough(tmp_path, selected):
    import dataclasses

    from easyphoto.train.dataset import choose_holdout, read_holdout

    folder, stack, report = selected
    assert choose_holdout(report, 2) == []  # 3 kept photos: too few to hold any out
    many = [dataclasses.replace(report.kept[i % 3], file=f"p{i:02d}.jpg", similarity=0.90 + i / 100) for i in range(11)]
    big = PhotoReport(many, "p10.jpg", {}, {})
    assert choose_holdout(big, 2) == ["p08.jpg", "p09.jpg"]  # the most typical, never the reference (p10)
    assert choose_holdout(big, 0) == [] and choose_holdout(big, 4) == []  # off, or fewer than 8 left to train on
    prepare_dataset(report, folder, tmp_path / "d", stack)
    assert read_holdout(tmp_path / "d") == [] and read_holdout(tmp_path / "none") == []
