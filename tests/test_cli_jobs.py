"""Batch CLI commands that run jobs (`train`, `portrait`), on real photos: as users run them, in a subprocess."""

from tests.test_cli import run


def test_train_prepares_the_dataset_then_says_what_is_not_available(tmp_path, photos_same_man):
    out = run("--data-dir", str(tmp_path), "train", "--id", "zed", *map(str, photos_same_man), timeout=300)
    assert "zed: 3 training images in" in out.stdout
    assert out.returncode == 2 and "LoRA training is not available in this version" in out.stderr
    assert "dataset of zed: preparing" in out.stderr  # progress lines
    bad = run("--data-dir", str(tmp_path), "train", "--id", "Zed!", str(photos_same_man[0]))
    assert bad.returncode == 2 and "'Z'" in bad.stderr


def test_portrait_checks_identities_first(tmp_path, photos_same_man):
    out = run("--data-dir", str(tmp_path), "portrait", "--id", "nobody", str(photos_same_man[0]), "--out", str(tmp_path))
    assert out.returncode == 2 and "No identity named 'nobody'" in out.stderr
