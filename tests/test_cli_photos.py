"""`photos check` with --config / --set on real photos (the kit's photos need the face stack, so this is not part
of the torch-free Python 3.10 check)."""

import json

from tests.test_cli import run


def test_photos_check_applies_config_then_set_then_max_photos(tmp_path, photos_same_man):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos_same_man:
        (folder / photo.name).write_bytes(photo.read_bytes())
    config = tmp_path / "check.json"
    config.write_text(json.dumps({"min_face_px": 2048}))
    common = ("--data-dir", str(tmp_path), "photos", "check", str(folder), "--face-stack", "dlib", "--json")
    strict = run(*common, "--config", str(config))  # no face is 2048 px wide: every photo is dropped
    assert strict.returncode == 0 and json.loads(strict.stdout)["kept"] == 0, strict.stderr
    relaxed = run(*common, "--config", str(config), "--set", "min_face_px=64")  # --set wins over the file
    assert json.loads(relaxed.stdout)["kept"] == len(photos_same_man), relaxed.stderr
    one = run(*common, "--set", "min_face_px=64", "--max-photos", "1")
    assert json.loads(one.stdout)["kept"] == 1
    late = run(*common, "--set", "max_photos=1", "--max-photos", "0")  # the dedicated flag is checked last
    assert late.returncode == 2 and late.stderr.startswith("error: [photos] --max-photos 0:")
