"""Batch CLI commands that run jobs (`train`, `portrait`), on real photos: as users run them, in a subprocess."""

import json
from pathlib import Path

from easyphoto.generation import CONTROLNET_MODELS
from tests.test_cli import run


def test_train_then_portrait_end_to_end_on_the_tiny_model(tmp_path, photos_same_man, tiny_single_file,
                                                          tiny_sd_config_dir, tiny_controlnet_dirs, photo_astronaut):
    """Photos in, dataset, a short training in the child process, the LoRA exported, then a portrait with it: as a
    user runs it."""
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"resolution": 256, "rank": 4, "network_alpha": 4, "steps_per_photo": 1,
                                  "max_train_steps": 2, "validation": False, "validation_every": 2, "seed": 3,
                                  "gradient_accumulation_steps": 1, "train_text_encoder": False}))
    out = run("--data-dir", str(tmp_path), "train", "--id", "zed", *map(str, photos_same_man), "--config", str(config),
              "--base", str(tiny_single_file), "--config-dir", str(tiny_sd_config_dir), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "zed: 3 training images in" in out.stdout
    result = json.loads(out.stdout[out.stdout.index("{"):])
    lora_file = tmp_path / "models" / "Lora" / "zed.safetensors"
    assert result["lora_file"] == str(lora_file) and result["steps"] == 2 and lora_file.is_file()
    assert "dataset of zed: preparing" in out.stderr  # progress lines
    identity = json.loads((tmp_path / "easyphoto" / "identities" / "zed" / "identity.json").read_text())
    assert identity["lora_file"] == str(lora_file) and identity["training"]["steps"] == 2

    # ... and the trained identity straight into a portrait, standalone on the same base, with the kit's ControlNets
    controlnets = tmp_path / "models" / "ControlNet"
    controlnets.mkdir(parents=True)
    for kind, stem in CONTROLNET_MODELS.items():
        (controlnets / stem).symlink_to(tiny_controlnet_dirs[kind], target_is_directory=True)
    bad = run("--data-dir", str(tmp_path), "portrait", "--id", "zed", str(photo_astronaut), "--out", str(tmp_path),
              "--set", "first_steps=0")
    assert bad.returncode == 2 and "first_steps" in bad.stderr
    out = run("--data-dir", str(tmp_path), "portrait", "--id", "zed", str(photo_astronaut), "--out", str(tmp_path / "out"),
              "--base", str(tiny_single_file), "--config-dir", str(tiny_sd_config_dir), "--set", "first_steps=5",
              "--set", "second_steps=4", "--set", "short_side=256", "--set", "seed=7", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    [made] = json.loads(out.stdout[out.stdout.index("{"):])["portraits"]
    assert made["seed"] == 7 and made["file"].startswith(str(tmp_path / "out")) and Path(made["file"]).is_file()
    assert "portrait of zed: generating" in out.stderr


def test_train_refuses_bad_input_before_any_work(tmp_path, photos_same_man):
    bad = run("--data-dir", str(tmp_path), "train", "--id", "Zed!", str(photos_same_man[0]), "--base", "x")
    assert bad.returncode == 2 and "'Z'" in bad.stderr
    no_base = run("--data-dir", str(tmp_path), "train", "--id", "zed", str(photos_same_man[0]))
    assert no_base.returncode == 2 and "--base" in no_base.stderr


def test_portrait_checks_identities_first(tmp_path, photos_same_man):
    out = run("--data-dir", str(tmp_path), "portrait", "--id", "nobody", str(photos_same_man[0]), "--out", str(tmp_path))
    assert out.returncode == 2 and "No identity named 'nobody'" in out.stderr
