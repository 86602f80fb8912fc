"""Typed configs: reference defaults, validation messages that name the field, round trips (pydantic 1 and 2)."""

import pytest
from pydantic import ValidationError

from easyphoto.config import CONFIG_VERSION, DEFAULT_CAPTION, PortraitConfig, Settings, TrainConfig


def test_train_defaults_follow_the_reference():
    cfg = TrainConfig()
    assert (cfg.resolution, cfg.rank, cfg.network_alpha) == (512, 128, 64)
    assert (cfg.learning_rate, cfg.text_encoder_learning_rate) == (1e-4, 5e-5)
    assert cfg.batch_size * cfg.gradient_accumulation_steps == 4
    assert cfg.validation_every == 100 and cfg.caption == DEFAULT_CAPTION == "easyphoto_face, easyphoto, 1person"


@pytest.mark.parametrize(("photos", "steps"), [(1, 200), (3, 600), (4, 800), (15, 800)])
def test_train_steps_rule(photos, steps):
    assert TrainConfig().train_steps(photos) == steps


def test_portrait_defaults_follow_the_reference():
    cfg = PortraitConfig()
    assert (cfg.first_steps, cfg.first_denoising_strength) == (50, 0.45)
    assert (cfg.second_steps, cfg.second_denoising_strength) == (20, 0.30)
    assert (cfg.lora_weight, cfg.face_fusion_before, cfg.face_fusion_after, cfg.crop_ratio) == (0.9, 0.6, 0.6, 3.0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rank": 0}, "rank"),
        ({"resolution": 500}, "resolution"),  # not a multiple of 64
        ({"learning_rate": 0}, "learning_rate"),
        ({"rnak": 64}, "rnak"),  # a typo is an error, not silently ignored
        ({"caption": ""}, "caption"),
    ],
)
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ValidationError) as info:
        TrainConfig.from_dict(changes)
    assert field in str(info.value)


def test_alpha_must_not_exceed_rank():
    with pytest.raises(ValidationError, match="network_alpha must be ≤ rank"):
        TrainConfig(rank=16, network_alpha=32)
    with pytest.raises(ValidationError):
        TrainConfig().updated(rank=8)  # updated() validates the combination too
    with pytest.raises(ValidationError, match="min_brightness must be < max_brightness"):
        TrainConfig(min_brightness=200, max_brightness=100)  # every cross-field check runs, not only the last


def test_round_trip_keeps_values_and_version():
    cfg = TrainConfig(rank=32, network_alpha=16, seed=7)
    data = cfg.to_dict()
    assert data["config_version"] == CONFIG_VERSION
    assert TrainConfig.from_dict(data) == cfg


def test_field_specs_drive_ui_controls():
    specs = {s.name: s for s in Settings.field_specs()}
    assert specs["face_stack"].kind == "choice" and specs["face_stack"].choices == ("auto", "insightface", "dlib", "mediapipe")
    assert specs["offline"].kind == "bool" and specs["offline"].default is False
    assert (specs["max_upload_megapixels"].minimum, specs["max_upload_megapixels"].maximum) == (1.0, 400.0)
    train = {s.name: s for s in TrainConfig.field_specs()}
    assert train["rank"].kind == "int" and train["rank"].default == 128
    assert train["learning_rate"].kind == "float"


def test_ui_groups_live_in_the_schema_on_both_pydantic_versions():
    for model in (TrainConfig, PortraitConfig):
        properties = model.json_schema()["properties"]
        for spec in model.field_specs():
            assert spec.group and properties[spec.name]["x-group"] == spec.group
            assert properties[spec.name]["x-advanced"] is spec.advanced
    train = {s.name: s for s in TrainConfig.field_specs()}
    assert (train["low_vram"].group, train["low_vram"].advanced) == ("Speed and memory", False)
    assert (train["min_sharpness"].group, train["min_sharpness"].advanced) == ("Photo selection", True)
    assert train["max_photos"].optional and train["seed"].optional and not train["rank"].optional  # pydantic 1 too
    assert (train["resolution"].step, train["caption"].max_length) == (64, 500)
    assert all(s.group == "" and not s.advanced for s in Settings.field_specs())
    with pytest.raises(ValidationError):
        TrainConfig.from_dict({"x-group": "LoRA"})  # schema keys, not config keys
