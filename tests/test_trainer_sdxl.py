"""SDXL identity LoRAs on the tiny SDXL model: loading (folder and SGM single file), training with both text
encoders and the added size conditioning, buckets, resume, export keys, and the shipped SDXL configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from easyphoto.config import TrainConfig
from easyphoto.sd import lora
from easyphoto.sd.base_model import SHIPPED_SDXL_CONFIG_DIR, BaseModelError, load_base
from easyphoto.train import trainer
from easyphoto.train.trainer import bucket_for, load_bucketed, train_lora
from tests.kit.tiny_sd import torch_threads

CAPTION = "easyphoto_face, easyphoto, 1person"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def base(tiny_sdxl_dir):
    return load_base(tiny_sdxl_dir, allow_sdxl=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two square photos and one portrait-format photo (a bucket of its own)."""
    root = tmp_path_factory.mktemp("sdxl-dataset")
    (root / "train").mkdir()
    lines = []
    for i, (colour, size) in enumerate([((200, 40, 40), (96, 96)), ((40, 180, 60), (96, 96)),
                                        ((50, 60, 210), (80, 120))]):
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[:] = colour
        pixels[20:70, 10:60] = 255 - np.array(colour)
        Image.fromarray(pixels).save(root / "train" / f"{i}.jpg", quality=95)
        lines.append(json.dumps({"file_name": f"train/{i}.jpg", "text": CAPTION}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _config(**changes) -> TrainConfig:
    values = dict(rank=4, network_alpha=4, learning_rate=1e-3, text_encoder_learning_rate=5e-4, seed=3,
                  gradient_accumulation_steps=2, validation_every=100, train_text_encoder=False)
    config = TrainConfig(**{**values, **changes, "resolution": 256})
    construct = getattr(TrainConfig, "model_construct", None) or TrainConfig.construct
    return construct(**{**config.__dict__, "resolution": 64})  # the tiny model is built for 64 px


def test_the_sgm_single_file_loads_like_the_folder_and_sdxl_is_refused_unless_allowed(
        base, tiny_sdxl_single_file, tiny_sdxl_config_dir):
    single = load_base(tiny_sdxl_single_file, config_dir=tiny_sdxl_config_dir, allow_sdxl=True)
    assert single.family == base.family == "sdxl" and single.tokenizer_2.pad_token == "!"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(single, name).state_dict(), getattr(base, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    with pytest.raises(BaseModelError, match="is an SDXL checkpoint"):
        load_base(tiny_sdxl_single_file, config_dir=tiny_sdxl_config_dir)


def test_the_shipped_sdxl_configs_are_sdxl_base_sized():
    """The configs a real SDXL file is loaded against: built on the meta device, the parameter counts are SDXL
    base 1.0's (UNet 2.57 B, OpenCLIP bigG 695 M), so a real checkpoint's tensors all find their place."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SHIPPED_SDXL_CONFIG_DIR / "unet"))
        text = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(SHIPPED_SDXL_CONFIG_DIR / "text_encoder_2"))
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6) == 2567
    assert round(sum(p.numel() for p in text.parameters()) / 1e6) == 695


def test_buckets_keep_the_aspect_ratio_at_about_the_resolution_squared(tmp_path):
    assert bucket_for(1000, 1000, 1024) == (1024, 1024)
    width, height = bucket_for(832, 1216, 1024)
    assert (width, height) == (832, 1216) or abs(width / height - 832 / 1216) < 0.05
    assert width % 64 == 0 and height % 64 == 0 and width * height <= 1024 * 1024
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (80, 120), (10, 20, 30)).save(photo)
    pixels, size = load_bucketed(photo, 64)
    assert tuple(pixels.shape) == (3, *size.target) and size.original == (120, 80)
    assert size.target[0] > size.target[1]  # portrait stays portrait
    assert size.time_ids(False)[:2] == [120, 80] and len(size.time_ids(True)) == 6


def test_sdxl_training_learns_resumes_exactly_and_exports_sdxl_keys(base, dataset, tmp_path):
    config = _config(validation_every=2)
    full = train_lora(base, dataset, tmp_path / "full", config, steps=4)
    assert all(np.isfinite(full.losses)) and full.steps == 4
    weights, metadata = lora.load_lora(full.final_checkpoint)
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert weights and all(key.startswith("unet.") for key in weights)
    assert any(m.up.abs().sum() > 0 for m in weights.values())  # it learned something
    # The UNet's SDXL-only parts (added conditioning) are not LoRA targets; its attention is.
    assert any(".attentions." in key and "transformer_blocks.1." in key for key in weights)

    half = train_lora(base, dataset, tmp_path / "half", config, steps=2)
    resumed = train_lora(base, dataset, tmp_path / "half", config, steps=4, resume=True)
    assert half.steps == 2 and resumed.resumed_from == 2
    again, _ = lora.load_lora(resumed.final_checkpoint)
    for key, module in weights.items():
        assert torch.allclose(again[key].up, module.up, atol=1e-6) and torch.allclose(again[key].down, module.down,
                                                                                       atol=1e-6)


def test_sdxl_batched_micro_steps_and_cached_text_match_the_plain_run(base, dataset, tmp_path):
    """Exact levers on SDXL too: batched micro-steps (with a bucket of another size in the step) and cached
    embeddings of both encoders learn the same weights as one-by-one micro-steps with the encoders run each time."""
    plain = train_lora(base, dataset, tmp_path / "plain",
                       _config(batch_micro_steps="off", cache_latents=False, shared_text_pass=False), steps=2)
    fast = train_lora(base, dataset, tmp_path / "fast", _config(batch_micro_steps="on", cache_latents=True), steps=2)
    a, _ = lora.load_lora(plain.final_checkpoint)
    b, _ = lora.load_lora(fast.final_checkpoint)
    assert a.keys() == b.keys()
    worst = max(float((a[k].up - b[k].up).abs().max()) for k in a)
    assert worst < 1e-5, worst


def test_sdxl_text_encoder_loras_train_both_encoders(base, dataset, tmp_path):
    result = train_lora(base, dataset, tmp_path / "te", _config(train_text_encoder=True, shared_text_pass=True),
                        steps=2)
    weights, _ = lora.load_lora(result.final_checkpoint)
    first = [k for k in weights if k.startswith("text_encoder.")]
    second = [k for k in weights if k.startswith("text_encoder_2.")]
    assert first and second and len(first) == len(second)
    assert any(weights[k].up.abs().sum() > 0 for k in second)
    from safetensors import safe_open

    with safe_open(str(result.final_checkpoint), framework="pt") as file:
        names = list(file.keys())
    assert any(n.startswith("lora_te1_") for n in names) and any(n.startswith("lora_te2_") for n in names)
    assert not any(n.startswith("lora_te_") for n in names)
    assert trainer.read_state(tmp_path / "te")["targets"]["text_encoder_2"] == lora.TEXT_TARGETS


def test_an_sdxl_base_gets_sdxl_defaults_for_what_the_request_left_out():
    from easyphoto.config import train_config_for_family

    given = TrainConfig.from_dict({"rank": 64})
    sdxl = train_config_for_family(given, "sdxl")
    assert (sdxl.resolution, sdxl.rank, sdxl.network_alpha) == (1024, 64, 16)  # rank was asked for
    assert train_config_for_family(TrainConfig.from_dict({"rank": 8, "network_alpha": 8}), "sdxl").network_alpha == 8
    assert train_config_for_family(TrainConfig.from_dict({"rank": 8, "network_alpha": 4}), "sdxl").rank == 8
    assert sdxl.gradient_checkpointing and not sdxl.train_text_encoder and sdxl.cache_latents
    assert train_config_for_family(given, "sd15") == given


def test_the_training_pipeline_validates_with_sdxl_renders_and_exports_an_sdxl_lora(
        tmp_path, photos_same_man, tiny_sdxl_single_file, tiny_sdxl_config_dir):
    from easyphoto.sd.family import model_family
    from easyphoto.store import read_json
    from easyphoto.train import pipeline
    from tests.test_pipeline import make_dataset

    assert model_family(tiny_sdxl_single_file) == "sdxl"
    identity = tmp_path / "data" / "easyphoto" / "identities" / "xena"
    (identity / "photos").mkdir(parents=True)
    config = TrainConfig(resolution=256, rank=4, network_alpha=4, steps_per_photo=1, max_train_steps=2,
                         validation=True, validation_every=2, validation_steps=2, seed=5,
                         gradient_accumulation_steps=1, train_text_encoder=True)
    spec = {"identity_id": "xena", "identity_dir": str(identity),
            "dataset_dir": str(make_dataset(identity / "dataset", photos_same_man[:2], config)),
            "checkpoints_dir": str(identity / "checkpoints"), "validation_dir": str(identity / "validation"),
            "lora_file": str(tmp_path / "data" / "models" / "Lora" / "xena.safetensors"),
            "base": str(tiny_sdxl_single_file), "config_dir": str(tiny_sdxl_config_dir), "config": config.to_dict(),
            "steps": 2, "resume": False, "device": "cpu", "models_root": str(tmp_path / "data" / "models" / "easyphoto"),
            "face_stack": "dlib"}
    events: list[dict] = []
    result = pipeline.run(spec, events.append, lambda: False)
    validation = [e for e in events if e["event"] == "validation"]
    assert [e["step"] for e in validation] == [2] and Path(validation[0]["image"]).is_file()
    with Image.open(validation[0]["image"]) as image:
        assert image.width >= 64  # an SDXL inpaint render of the template
    weights, metadata = lora.load_lora(result["lora_file"])
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0" and metadata["ss_output_name"] == "xena"
    assert {key.partition(".")[0] for key in weights} == {"unet", "text_encoder", "text_encoder_2"}
    assert read_json(identity / "identity.json")["base_model"]["family"] == "sdxl"


def test_a_half_precision_sdxl_vae_encodes_in_float32_and_stays_half(tiny_sdxl_dir, dataset, tmp_path):
    """SDXL's VAE overflows float16 (force_upcast in its config): latents are cached from a float32 pass, and the
    VAE is half again afterwards, as the validation pipeline expects it."""
    half = load_base(tiny_sdxl_dir, allow_sdxl=True)
    half.vae.to(torch.float16)
    assert half.vae.config.force_upcast
    seen = []
    hook = half.vae.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    train_lora(half, dataset, tmp_path / "half", _config(), steps=1)
    hook.remove()
    assert seen and set(seen) == {torch.float32} and half.vae.dtype == torch.float16


def test_family_defaults_apply_only_to_what_was_not_given_also_through_updated():
    from easyphoto.config import SDXL_PORTRAIT_DEFAULTS, PortraitConfig, explicit_fields, with_family_defaults

    config = PortraitConfig.from_dict({"seed": 3}).updated(cfg_scale=5.0)
    assert explicit_fields(config) == {"seed", "cfg_scale"}
    sdxl = with_family_defaults(config, "sdxl", SDXL_PORTRAIT_DEFAULTS)
    assert (sdxl.short_side, sdxl.seed, sdxl.cfg_scale) == (1024, 3, 5.0)
    assert with_family_defaults(config, "sd15", SDXL_PORTRAIT_DEFAULTS).short_side == 512
    kept = PortraitConfig.from_dict({"short_side": 512})
    assert with_family_defaults(kept, "sdxl", SDXL_PORTRAIT_DEFAULTS).short_side == 512  # asked for: kept
    assert PortraitConfig.from_dict({"seed": 3, "short_side": 768}).non_default() == {"seed": 3, "short_side": 768}
