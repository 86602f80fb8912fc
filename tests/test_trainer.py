"""The SD 1.5 LoRA trainer core on the tiny SD model: base loading, learning, checkpoints, exact resume, levers."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from easyphoto.config import TrainConfig
from easyphoto.errors import Cancelled, EasyPhotoError
from easyphoto.sd import base_model, lora
from easyphoto.sd.base_model import BaseModelError, load_base
from easyphoto.train import trainer
from easyphoto.train.trainer import TrainError, train_lora
from tests.kit.tiny_sd import torch_threads

CAPTION = "easyphoto_face, easyphoto, 1person"
SD15_DIR = Path(base_model.__file__).parent / "sd15"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Faster on a small shared machine, and the same float reductions in every run (results compared exactly)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def base(tiny_sd_dir):
    """One tiny base for the module: the trainer re-initialises its LoRA from the seed on every call."""
    return load_base(tiny_sd_dir)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """dataset.py's layout: train/{i}.jpg + {i}.txt + metadata.jsonl; three 256² two-colour images."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "train").mkdir()
    lines = []
    for i, colour in enumerate([(200, 40, 40), (40, 180, 60), (50, 60, 210)]):
        pixels = np.zeros((256, 256, 3), np.uint8)
        pixels[:] = colour
        pixels[64:200, 40:150] = 255 - np.array(colour)
        Image.fromarray(pixels).save(root / "train" / f"{i}.jpg", quality=95)
        (root / "train" / f"{i}.txt").write_text(CAPTION)
        lines.append(json.dumps({"file_name": f"train/{i}.jpg", "text": CAPTION}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _config(resolution: int = 64, **changes) -> TrainConfig:
    """A validated config; `resolution` below the UI's minimum of 256 is set unchecked afterwards, because the tiny
    model is built for 64-pixel images (4x faster steps than at 256)."""
    values = dict(rank=4, network_alpha=4, learning_rate=1e-3, text_encoder_learning_rate=5e-4, seed=7,
                  gradient_accumulation_steps=1, validation_every=100)
    config = TrainConfig(**{**values, **changes, "resolution": max(resolution, 256)})
    if resolution >= 256:
        return config
    construct = getattr(TrainConfig, "model_construct", None) or TrainConfig.construct
    return construct(**{**config.__dict__, "resolution": resolution})


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {k.replace(".base_layer", ""): v.clone() for k, v in model.state_dict().items() if "lora_" not in k}


def _header(path: Path, names: dict[str, list[int]]) -> Path:
    from safetensors.torch import save_file

    save_file({name: torch.zeros(shape) for name, shape in names.items()}, str(path))
    return path


# ---------------------------------------------------------------------------------------------- base model


def test_loads_the_tiny_diffusers_folder_offline(offline, tiny_sd_dir):
    loaded = load_base(tiny_sd_dir)
    assert loaded.unet.config.in_channels == 4 and loaded.vae.config.scaling_factor == pytest.approx(0.18215)
    assert type(loaded.noise_scheduler).__name__ == "DDPMScheduler"
    assert loaded.noise_scheduler.config.num_train_timesteps == 1000
    assert loaded.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert not any(p.requires_grad for m in (loaded.unet, loaded.vae, loaded.text_encoder) for p in m.parameters())
    assert loaded.model_hash and len(loaded.model_hash) == 8


def test_loads_the_tiny_single_file_offline_with_the_same_weights(offline, tiny_single_file, tiny_sd_config_dir,
                                                                 tiny_sd_dir):
    loaded = load_base(tiny_single_file, config_dir=tiny_sd_config_dir)
    reference = load_base(tiny_sd_dir)
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(loaded, name).state_dict(), getattr(reference, name).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs if k in mine), name
    assert loaded.model_hash == base_model.legacy_hash(tiny_single_file)


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="the mapped files are read from /proc (Linux)")
@pytest.mark.parametrize("kind", ["folder", "single file"])
def test_a_loaded_base_keeps_no_weight_file_mapped(offline, kind, tiny_single_file, tiny_sd_config_dir, tiny_sd_dir):
    """A tensor left pointing into the mmapped file (the text encoder's position_ids did) keeps every page the
    loader read resident: ~2 GiB of RSS at full size. The loaded model owns all of its memory instead."""
    import gc

    from easyphoto.sd.mapped import mapped_weight_ranges

    files = [tiny_single_file] if kind == "single file" else sorted(tiny_sd_dir.glob("*/*.safetensors"))
    loaded = (load_base(tiny_single_file, config_dir=tiny_sd_config_dir) if kind == "single file"
              else load_base(tiny_sd_dir))
    gc.collect()
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines()
              if any(line.endswith(str(f.resolve())) for f in files)]
    assert mapped == []
    assert mapped_weight_ranges() is not None
    assert loaded.text_encoder.text_model.embeddings.position_ids.shape[-1] == 77  # still usable


def test_legacy_hash_is_the_webui_formula(tmp_path):
    import hashlib

    data = bytes(range(256)) * (0x120000 // 256)
    (tmp_path / "m.safetensors").write_bytes(data)
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert base_model.legacy_hash(tmp_path / "m.safetensors") == expected


@pytest.mark.parametrize(
    ("names", "words"),
    [
        ({"conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": [2, 2],
          "model.diffusion_model.input_blocks.0.0.weight": [4, 4, 3, 3]}, "is an SDXL checkpoint"),
        ({"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": [2, 2],
          "model.diffusion_model.input_blocks.0.0.weight": [4, 4, 3, 3]}, "SD 2.x"),
        ({"model.diffusion_model.input_blocks.0.0.weight": [4, 9, 3, 3]}, "inpainting"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": [4, 8]}, "is a LoRA"),
        ({"something.else": [1]}, "not a Stable Diffusion 1.x"),
    ],
)
def test_wrong_architectures_are_refused_from_the_header(tmp_path, names, words):
    path = _header(tmp_path / "other.safetensors", names)
    with pytest.raises(BaseModelError, match=words) as info:
        load_base(path)
    assert info.value.phase == "train" and "other.safetensors" in info.value.message and info.value.hint


def test_pickle_checkpoints_and_damaged_files_are_refused(tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(BaseModelError, match="pickle checkpoints are not loaded; convert to .safetensors"):
        load_base(tmp_path / "model.ckpt")
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(BaseModelError, match="not a readable .safetensors"):
        load_base(tmp_path / "broken.safetensors")
    with pytest.raises(BaseModelError, match="does not exist"):
        load_base(tmp_path / "missing.safetensors")


def test_a_folder_base_model_with_pickle_weights_is_refused_naming_the_file(offline, tiny_sd_dir, tmp_path):
    """transformers 4.30 falls back to pytorch_model.bin even with use_safetensors=True: the folder is checked first."""
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_sd_dir, folder)
    weights = folder / "text_encoder" / "model.safetensors"
    torch.save(load_file(str(weights)), folder / "text_encoder" / "pytorch_model.bin")  # a legitimate pickle
    weights.unlink()
    with pytest.raises(BaseModelError, match=r"text_encoder/pytorch_model\.bin is a pickle") as info:
        load_base(folder)
    assert "safe_serialization=True" in info.value.hint and info.value.phase == "train"
    (folder / "text_encoder" / "pytorch_model.bin").unlink()
    with pytest.raises(BaseModelError, match="has no model.safetensors"):
        load_base(folder)


def test_a_controlnet_folder_with_pickle_weights_is_refused(offline, tiny_controlnet_dirs, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from easyphoto.backends.diffusers import load_controlnet
    from easyphoto.generation import GenerationError

    folder = tmp_path / "control_canny"
    shutil.copytree(next(iter(tiny_controlnet_dirs.values())), folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(GenerationError, match=r"diffusion_pytorch_model\.bin is a pickle"):
        load_controlnet(folder, folder, torch.float32)


def test_shipped_sd15_config_folder_is_complete():
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTokenizer

    index = json.loads((SD15_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["safety_checker"] == [None, None]
    unet = UNet2DConditionModel.load_config(str(SD15_DIR), subfolder="unet")
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet["cross_attention_dim"] == 768
    assert AutoencoderKL.load_config(str(SD15_DIR), subfolder="vae")["scaling_factor"] == 0.18215
    text = CLIPTextConfig.from_pretrained(str(SD15_DIR / "text_encoder"))
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (768, 12, 49408)
    scheduler = PNDMScheduler.from_pretrained(str(SD15_DIR), subfolder="scheduler")
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.beta_end == 0.012
    tokenizer = CLIPTokenizer.from_pretrained(str(SD15_DIR / "tokenizer"))
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
    assert "MIT" in (SD15_DIR / "tokenizer" / "README.md").read_text()


def test_single_files_use_the_shipped_sd15_configs_by_default(offline, tiny_single_file):
    """The shipped folder is read offline (configs, tokenizer); the tiny weights then do not fit SD 1.5's shapes."""
    with pytest.raises(BaseModelError, match="could not be loaded as SD 1.5.*768") as info:
        load_base(tiny_single_file)
    assert info.value.phase == "train"


# ---------------------------------------------------------------------------------------------- training


def test_a_short_run_learns_touches_only_the_lora_and_writes_checkpoints(base, dataset, tmp_path):
    before = {name: _base_weights(getattr(base, name)) for name in ("unet", "vae", "text_encoder")}
    seen, saved = [], []
    result = train_lora(base, dataset, tmp_path, _config(learning_rate=1e-2, validation_every=10), steps=20,
                        progress=lambda step, total, loss: seen.append((step, total, loss)),
                        on_checkpoint=lambda step, path: saved.append((step, Path(path).name)))
    assert result.steps == 20 and len(result.losses) == 20
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    assert [s[:2] for s in seen] == [(i, 20) for i in range(1, 21)]
    assert saved == [(10, "step-000010.safetensors"), (20, "step-000020.safetensors")]
    assert result.checkpoints == [tmp_path / "step-000010.safetensors", tmp_path / "step-000020.safetensors"]
    assert result.final_checkpoint == tmp_path / "step-000020.safetensors" and result.seconds_per_step > 0
    # resume needs the optimizer state of the last checkpoint only; keep_checkpoints (2) keeps both LoRAs
    assert (tmp_path / "step-000020.optim.safetensors").is_file()
    assert not (tmp_path / "step-000010.optim.safetensors").exists()
    assert (tmp_path / "step-000010.safetensors").is_file()
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["last_step"] == 20 and state["seed"] == 7 and state["config"]["rank"] == 4
    assert [c["step"] for c in state["checkpoints"]] == [10, 20]
    for name, weights in before.items():  # frozen base, bit for bit
        after = _base_weights(getattr(base, name))
        assert all(torch.equal(after[k], weights[k]) for k in weights), name
    weights, metadata = lora.load_lora(result.final_checkpoint)
    assert metadata["ss_steps"] == "20" and metadata["ss_network_dim"] == "4"
    assert any(k.startswith("text_encoder.") for k in weights)  # train_text_encoder defaults to True
    assert all(v.down.dtype == torch.float32 for v in weights.values())
    assert any(float(v.up.abs().max()) > 0 for v in weights.values())
    assert not base.unet.training  # modes restored for validation


def test_text_encoder_lora_only_when_trained(base, dataset, tmp_path):
    before = _base_weights(base.text_encoder)
    result = train_lora(base, dataset, tmp_path, _config(resolution=256, train_text_encoder=False), steps=2)
    weights, _ = lora.load_lora(result.final_checkpoint)
    assert weights and all(k.startswith("unet.") for k in weights)
    after = _base_weights(base.text_encoder)
    assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("batched", ["off", "on"])
def test_resume_continues_exactly_like_an_uninterrupted_run(base, dataset, tmp_path, batched):
    config = _config(gradient_accumulation_steps=2, validation_every=4, batch_micro_steps=batched)
    a = train_lora(base, dataset, tmp_path / "a", config, steps=8)
    calls = []

    def stop_in_step_5():  # one by one: checked per micro-step, trips inside the accumulation of step 5
        calls.append(1)
        return len(calls) > (9 if batched == "off" else 4)

    with pytest.raises(Cancelled):
        train_lora(base, dataset, tmp_path / "b", config, steps=8, should_stop=stop_in_step_5)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["last_step"] == 4
    b = train_lora(base, dataset, tmp_path / "b", config, steps=8, resume=True)
    assert b.resumed_from == 4 and b.steps == 8 and len(b.losses) == 4
    assert b.losses == pytest.approx(a.losses[4:], abs=1e-6)
    weights_a, weights_b = lora.load_lora(a.final_checkpoint)[0], lora.load_lora(b.final_checkpoint)[0]
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        torch.testing.assert_close(weights_b[key].down, weights_a[key].down, atol=1e-6, rtol=0)
        torch.testing.assert_close(weights_b[key].up, weights_a[key].up, atol=1e-6, rtol=0)
    assert [p.name for p in b.checkpoints] == ["step-000004.safetensors", "step-000008.safetensors"]


def test_cancel_saves_a_resumable_state_at_the_last_completed_step(base, dataset, tmp_path):
    seen = []
    with pytest.raises(Cancelled, match="after step 3"):
        train_lora(base, dataset, tmp_path, _config(), steps=10, progress=lambda s, t, loss: seen.append(s),
                   should_stop=lambda: len(seen) >= 3)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["last_step"] == 3 and state["checkpoints"][-1]["lora"] == "step-000003.safetensors"
    assert (tmp_path / "step-000003.safetensors").is_file() and (tmp_path / "step-000003.optim.safetensors").is_file()
    result = train_lora(base, dataset, tmp_path, _config(), steps=4, resume=True)
    assert result.resumed_from == 3 and result.steps == 4


def test_resume_with_a_different_config_is_refused(base, dataset, tmp_path):
    train_lora(base, dataset, tmp_path, _config(), steps=1)
    with pytest.raises(TrainError, match="different config.*rank 4 → 8") as info:
        train_lora(base, dataset, tmp_path, _config(rank=8, network_alpha=8), steps=2, resume=True)
    assert info.value.phase == "train"
    with pytest.raises(TrainError, match="seed 7 → 8"):
        train_lora(base, dataset, tmp_path, _config(seed=8), steps=2, resume=True)


def test_checkpoints_are_pruned_to_what_the_merge_and_resume_need(base, dataset, tmp_path):
    scores = {2: 0.5, 4: 0.9, 6: 0.1, 8: 0.3}
    config = _config(validation_every=2, keep_checkpoints=1)
    train_lora(base, dataset, tmp_path, config, steps=8, merge_top_k=2,
               on_checkpoint=lambda step, path: scores[step])

    def files():
        return sorted(p.name for p in tmp_path.glob("step-*.safetensors"))

    # best 1 (keep) ∪ best 2 (merge) ∪ the last with its optimizer state (resume)
    assert files() == ["step-000002.safetensors", "step-000004.safetensors", "step-000008.optim.safetensors",
                       "step-000008.safetensors"]
    state = json.loads((tmp_path / "state.json").read_text())
    assert [(c["step"], c.get("score")) for c in state["checkpoints"]] == list(scores.items())  # entries stay
    removed = trainer.prune_checkpoints(tmp_path, keep=1, finished=True)  # after the export
    assert sorted(removed) == ["step-000002.safetensors", "step-000008.optim.safetensors",
                               "step-000008.safetensors"]
    assert files() == ["step-000004.safetensors"]
    assert trainer.prune_checkpoints(tmp_path, keep=0) == ["step-000004.safetensors"]


def test_a_pruned_training_still_resumes_from_its_last_checkpoint(base, dataset, tmp_path):
    config = _config(validation_every=2, keep_checkpoints=0)
    seen = []
    with pytest.raises(Cancelled):
        train_lora(base, dataset, tmp_path, config, steps=8, progress=lambda s, t, loss: seen.append(s),
                   should_stop=lambda: len(seen) >= 5)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000005.optim.safetensors",
                                                                "step-000005.safetensors"]
    result = train_lora(base, dataset, tmp_path, config, steps=8, resume=True)
    assert result.resumed_from == 5 and result.steps == 8 and result.final_checkpoint.is_file()


def test_retained_steps_rule():
    entries = [{"step": 1, "score": 0.2}, {"step": 2, "score": None}, {"step": 3, "score": 0.2}, {"step": 4}]
    # ties go to the later step, like the merge's ranking; unscored ones rank after scored ones, latest first
    assert trainer.retained_steps(entries, keep=1, merge_top_k=0, finished=True) == ({3}, set())
    assert trainer.retained_steps(entries, keep=3, merge_top_k=0, finished=True) == ({1, 3, 4}, set())
    assert trainer.retained_steps(entries, keep=0, merge_top_k=3, finished=False) == ({1, 3, 4}, {4})
    assert trainer.retained_steps([], keep=2, merge_top_k=3, finished=False) == (set(), set())


# Every exact lever off: the run each exact lever is compared with. Accumulation 2 gives batched micro-steps and
# the shared text pass something to do; the text encoder is trained (TrainConfig's default).
ALL_EXACT_OFF = dict(gradient_accumulation_steps=2, cache_latents=False, batch_micro_steps="off",
                     shared_text_pass=False, shared_cross_attention=False, small_conv_matmul=False,
                     fused_optimizer=False, channels_last=False, mixed_precision="no")
EXACT_LEVERS = [
    {"cache_latents": True},
    {"batch_micro_steps": "on"},
    {"shared_text_pass": True},
    {"batch_micro_steps": "on", "shared_cross_attention": True},  # needs a batch of several samples
    {"small_conv_matmul": True},  # the tiny UNet's 4×4 level takes the matrix product
    {"fused_optimizer": True},
    {"channels_last": True},  # CPU: ignored (measured slower there), so this only shows it harms nothing
    {"mixed_precision": "fp16"},  # CPU: not available, training runs in float32
    {"gradient_checkpointing": True},
    {"attention": "classic"},
    {"low_vram": True},
    # the defaults: every exact lever at once (batched, shared text pass and cross-attention, small convolutions as
    # matrix products, cached latents, fused AdamW, sdpa)
    {"cache_latents": True, "batch_micro_steps": "auto", "shared_text_pass": True, "shared_cross_attention": True,
     "small_conv_matmul": True, "fused_optimizer": True},
]


@pytest.fixture(scope="module")
def reference_run(base, dataset, tmp_path_factory):
    result = train_lora(base, dataset, tmp_path_factory.mktemp("ref"), _config(**ALL_EXACT_OFF), steps=2)
    return result.losses, lora.load_lora(result.final_checkpoint)[0]


@pytest.mark.parametrize("lever", EXACT_LEVERS, ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items()))
def test_every_exact_speed_lever_learns_the_same_weights(base, dataset, tmp_path, lever, reference_run):
    losses, weights = reference_run
    result = train_lora(base, dataset, tmp_path, _config(**{**ALL_EXACT_OFF, **lever}), steps=2)
    assert result.losses == pytest.approx(losses, rel=1e-4, abs=1e-5)
    trained = lora.load_lora(result.final_checkpoint)[0]
    assert trained.keys() == weights.keys()  # text encoder LoRA included (its gradients flow with checkpointing)
    # Adam moves every element by about lr (1e-3) per step, also where the gradient is ~0 and float noise decides
    # the sign: 1e-4 tolerates that and still catches a LoRA that did not learn (no gradient: up stays 0).
    for key, module in weights.items():
        torch.testing.assert_close(trained[key].up, module.up, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(trained[key].down, module.down, atol=1e-4, rtol=1e-3)
    assert not base.unet.is_gradient_checkpointing and base.vae.device.type == "cpu"
    assert result.levers == trainer.levers_in_use(_config(**{**ALL_EXACT_OFF, **lever}), "cpu")
    assert len(result.step_seconds) == 2


def test_batched_micro_steps_and_the_shared_text_pass_do_less_work(base, dataset, tmp_path, monkeypatch):
    """What makes them faster, counted: one UNet call per optimizer step, one text-encoder call per caption."""
    calls = {"unet": [], "text": 0}
    unet_forward, text_forward = type(base.unet).forward, type(base.text_encoder).forward

    def counting_unet(module, sample, *args, **kwargs):
        calls["unet"].append(sample.shape[0])
        return unet_forward(module, sample, *args, **kwargs)

    def counting_text(module, *args, **kwargs):
        calls["text"] += 1
        return text_forward(module, *args, **kwargs)

    monkeypatch.setattr(type(base.unet), "forward", counting_unet)
    monkeypatch.setattr(type(base.text_encoder), "forward", counting_text)
    train_lora(base, dataset, tmp_path / "fast", _config(gradient_accumulation_steps=4, batch_size=1), steps=2)
    assert calls == {"unet": [4, 4], "text": 2}
    calls.update(unet=[], text=0)
    train_lora(base, dataset, tmp_path / "slow", _config(**ALL_EXACT_OFF), steps=2)
    assert calls == {"unet": [1, 1, 1, 1], "text": 4}


def test_shared_cross_attention_and_small_convolutions_do_less_work(base, dataset, tmp_path, monkeypatch):
    """The UNet gets the shared caption's text once per batch, and no 3×3 convolution of the UNet's 4×4 level runs
    through the CPU convolution (it is one matrix product); both are undone after training."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    text_batches, small_convs = [], []
    unet_forward, conv_forward = type(base.unet).forward, torch.nn.Conv2d._conv_forward
    unet_convs = {id(m) for m in base.unet.modules()}

    def counting_unet(module, sample, timesteps, text, *args, **kwargs):
        text_batches.append((sample.shape[0], text.shape[0]))
        return unet_forward(module, sample, timesteps, text, *args, **kwargs)

    def counting_conv(module, x, weight, bias):
        if id(module) in unet_convs and module.kernel_size == (3, 3) and x.shape[-2] * x.shape[-1] <= 16:
            small_convs.append(tuple(x.shape))
        return conv_forward(module, x, weight, bias)

    monkeypatch.setattr(type(base.unet), "forward", counting_unet)
    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", counting_conv)
    fast = _config(gradient_accumulation_steps=4, batch_size=1)
    assert {"shared cross-attention keys", "small convolutions as matrix products"} <= set(
        train_lora(base, dataset, tmp_path / "fast", fast, steps=2).levers)
    assert text_batches == [(4, 1), (4, 1)] and small_convs == []
    assert not any("forward" in vars(m) for m in base.unet.modules())
    assert {type(p) for p in base.unet.attn_processors.values()} == {AttnProcessor2_0}
    text_batches.clear()
    off = dict(ALL_EXACT_OFF, gradient_accumulation_steps=4, batch_micro_steps="on")
    train_lora(base, dataset, tmp_path / "slow", _config(**off), steps=2)
    assert text_batches == [(4, 4), (4, 4)] and small_convs and all(s[-2:] == (4, 4) for s in small_convs)


def test_shared_cross_attention_matches_the_plain_attention_and_refuses_what_it_does_not_cover():
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from easyphoto.train.kernels import SharedTextAttention

    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    pixels, text = torch.randn(3, 5, 8), torch.randn(1, 7, 6, requires_grad=True)
    shared = SharedTextAttention(AttnProcessor2_0())
    out = shared(attn, pixels, text)
    copies = text.detach().expand(3, -1, -1).clone().requires_grad_(True)
    torch.testing.assert_close(out, AttnProcessor2_0()(attn, pixels, copies))
    out.sum().backward()
    AttnProcessor2_0()(attn, pixels, copies).sum().backward()
    torch.testing.assert_close(text.grad[0], copies.grad.sum(0))  # the gradient of the copies, summed
    torch.testing.assert_close(shared(attn, pixels, copies), AttnProcessor2_0()(attn, pixels, copies))
    with pytest.raises(ValueError, match="an attention mask.*shared_cross_attention off"):
        shared(attn, pixels, text, attention_mask=torch.ones(1, 7))


def test_small_convolutions_as_a_matrix_product_match_the_convolution():
    from easyphoto.train.kernels import conv3x3_as_matmul, install_small_conv_matmul, remove_small_conv_matmul

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(6, 5, 3, padding=1), torch.nn.Conv2d(5, 4, 3, stride=2, padding=1),
                                torch.nn.Conv2d(4, 4, 1))
    for shape in [(2, 6, 4, 4), (2, 6, 3, 5), (1, 6, 7, 2)]:
        x = torch.randn(shape)
        torch.testing.assert_close(conv3x3_as_matmul(model[0], x), model[0](x))
        torch.testing.assert_close(conv3x3_as_matmul(model[1], model[0](x)), model[1](model[0](x)))
    installed = install_small_conv_matmul(model, max_pixels=16)
    assert len(installed) == 2  # the 1×1 convolution is not one of them
    x = torch.randn(2, 6, 4, 4)
    out = model(x)
    assert [f.calls for f in installed] == [1, 1]
    model(torch.randn(1, 6, 8, 8))  # 64 output pixels: the convolution itself; 4×4 after the stride: the product
    assert [f.calls for f in installed] == [1, 2]
    remove_small_conv_matmul(installed)
    assert not any("forward" in vars(m) for m in model.modules())
    torch.testing.assert_close(model(x), out)
    # where it acts: a CPU, up to 256 px (no 4×4 maps above), not under torch.compile
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trainer.uses_small_conv_matmul(_config(resolution=256), cpu)
    assert not trainer.uses_small_conv_matmul(_config(resolution=512), cpu)
    assert not trainer.uses_small_conv_matmul(_config(), cuda)
    assert not trainer.uses_small_conv_matmul(_config(compile_unet=True), cpu)
    assert not trainer.uses_small_conv_matmul(_config(small_conv_matmul=False), cpu)


def test_auto_batching_follows_the_device_the_resolution_and_the_vram():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def batched(device, gib=None, **changes):
        return trainer.batches_micro_steps(_config(**{"gradient_accumulation_steps": 4, **changes}), device, gib)

    assert batched(cpu, resolution=256) and not batched(cpu, resolution=512)
    assert not batched(cpu, resolution=256, gradient_accumulation_steps=1)
    assert batched(cpu, resolution=1024, batch_micro_steps="on")
    assert not batched(cuda, 80, resolution=64, batch_micro_steps="off")
    # GPU: where the batch fits. 512 px fp16 needs ~8.6 GiB + margin: a 24 GiB card batches, an 8 GiB one not
    assert batched(cuda, 24, resolution=512) and not batched(cuda, 8, resolution=512)
    assert trainer.batched_gpu_gib(_config(resolution=512, gradient_accumulation_steps=4)) == pytest.approx(8.6)
    assert not batched(cuda, 12, resolution=512, mixed_precision="no")  # float32 activations: twice the memory
    assert batched(cuda, 12, resolution=768) is False and batched(cuda, 80, resolution=768)
    # gradient checkpointing always fits (measured smaller than one by one without it); low_vram alone does not
    assert batched(cuda, 8, resolution=512, gradient_checkpointing=True)
    assert not batched(cuda, 80, resolution=512, low_vram=True)
    assert batched(cuda, 8, resolution=512, low_vram=True, gradient_checkpointing=True)


@pytest.mark.skipif(not trainer.cpu_has_bf16(), reason="this CPU has no bf16 instructions: bf16 is refused here")
def test_bf16_autocast_runs_on_a_cpu_and_still_learns(base, dataset, tmp_path, reference_run):
    """Not exact (labelled so): bf16 rounds, so the weights only stay near the float32 run's."""
    losses, weights = reference_run
    result = train_lora(base, dataset, tmp_path, _config(**{**ALL_EXACT_OFF, "mixed_precision": "bf16"}), steps=2)
    assert "bf16 autocast" in result.levers
    assert result.losses == pytest.approx(losses, rel=0.05)
    trained = lora.load_lora(result.final_checkpoint)[0]
    assert all(float(trained[k].up.abs().max()) > 0 for k in weights)
    assert all(trained[k].up.dtype == torch.float32 for k in weights)  # the LoRA itself stays float32


# ---------------------------------------------------------------------------------------------- errors


def test_missing_or_empty_dataset_says_prepare_first(base, tmp_path):
    with pytest.raises(TrainError, match="no metadata.jsonl") as info:
        train_lora(base, tmp_path / "nothing", tmp_path / "out", _config(), steps=1)
    assert "Prepare the dataset first" in info.value.hint and info.value.phase == "train"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metadata.jsonl").write_text("\n")
    with pytest.raises(TrainError, match="is empty"):
        train_lora(base, tmp_path / "empty", tmp_path / "out", _config(), steps=1)


def test_out_of_memory_names_the_step_and_the_levers(base, dataset, tmp_path, monkeypatch):
    real = trainer._Trainer.micro_step

    def fail_on_step_2(self, micro):
        if micro == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, micro)

    monkeypatch.setattr(trainer._Trainer, "micro_step", fail_on_step_2)
    with pytest.raises(TrainError, match="Out of GPU memory at training step 2") as info:
        train_lora(base, dataset, tmp_path, _config(), steps=3)
    assert "low_vram" in info.value.hint and "gradient_checkpointing" in info.value.hint and "rank" in info.value.hint


def test_a_full_disk_is_reported_as_such(base, dataset, tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lora, "save_lora", no_space)
    with pytest.raises(TrainError, match="disk is full.*step 1") as info:
        train_lora(base, dataset, tmp_path, _config(), steps=1)
    assert isinstance(info.value, EasyPhotoError) and "Free some disk space" in info.value.hint


def test_v_prediction_models_train_on_the_velocity(base, dataset, tmp_path):
    import dataclasses

    from diffusers import DDPMScheduler

    v_scheduler = DDPMScheduler.from_config(base.noise_scheduler.config, prediction_type="v_prediction")
    v_base = dataclasses.replace(base, noise_scheduler=v_scheduler)
    v_losses = train_lora(v_base, dataset, tmp_path / "v", _config(), steps=1).losses
    eps_losses = train_lora(base, dataset, tmp_path / "eps", _config(), steps=1).losses
    assert np.isfinite(v_losses).all() and v_losses != pytest.approx(eps_losses)


def test_compile_unet_is_opt_in_and_learns_the_same_weights(base, dataset, tmp_path, reference_run, monkeypatch):
    """torch.compile of the training pass only (validation keeps the plain module); its first step compiles.

    Through dynamo and AOTAutograd (the graph capture and the joint forward/backward graph that inductor would
    compile); inductor's own C++ build takes minutes on two cores: bench/train_step.py --real-size times it."""
    monkeypatch.setattr(trainer, "COMPILE_BACKEND", "aot_eager")
    losses, weights = reference_run
    config = _config(**{**ALL_EXACT_OFF, "compile_unet": True})
    assert TrainConfig().compile_unet is False
    result = train_lora(base, dataset, tmp_path, config, steps=2)
    assert "torch.compile" in result.levers
    assert result.losses == pytest.approx(losses, rel=1e-3, abs=1e-4)
    trained = lora.load_lora(result.final_checkpoint)[0]
    for key, module in weights.items():
        torch.testing.assert_close(trained[key].up, module.up, atol=1e-4, rtol=1e-3)
    assert type(base.unet).__name__ == "UNet2DConditionModel"  # the base's module itself is not replaced
