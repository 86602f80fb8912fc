"""The standalone diffusers Generator (easyphoto.backends.diffusers) on the kit's tiny SD 1.5 and ControlNets.

Cheap on purpose: one module-scoped generator (models load once), 96x64 images (12x8 latents), 2-4 steps,
one torch thread (the tiny models only lose time to thread synchronisation).
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_module  # skips locally, fails under CI

torch = require_module("torch")
require_module("diffusers")

from easyphoto.backends import diffusers as backend  # noqa: E402
from easyphoto.backends.diffusers import DiffusersGenerator  # noqa: E402
from easyphoto.generation import (  # noqa: E402
    CONTROLNET_MODELS,
    Control,
    GenerationError,
    GenerationInterrupted,
    Generator,
    InpaintRequest,
    LoraRef,
    Txt2ImgRequest,
)
from easyphoto.sd import lora as L  # noqa: E402
from tests.kit.lora import random_lora  # noqa: E402
from tests.kit.single_file import controlnet_to_ldm  # noqa: E402
from tests.kit.tiny_sd import torch_threads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
W, H = 96, 64
HOLE = (30, 16, 70, 48)  # the repainted rectangle (left, top, right, bottom)


@pytest.fixture(scope="module", autouse=True)
def _offline_one_thread():
    """No hub, no sockets (module-wide: the module-scoped generator loads outside any test's own fixtures)."""
    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as patch, torch_threads(1):
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield


def _link_controlnets(folder: Path, sources: dict[str, Path], kinds) -> Path:
    """A ControlNet folder as the WebUI/model manager lays it out: one entry per model stem."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        (folder / CONTROLNET_MODELS[kind]).symlink_to(Path(sources[kind]).resolve(), target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def gen(tiny_sd_dir, tiny_controlnet_dirs, tmp_path_factory):
    folder = _link_controlnets(tmp_path_factory.mktemp("controlnet"), tiny_controlnet_dirs, CONTROLNET_MODELS)
    return DiffusersGenerator(tiny_sd_dir, controlnet_dir=folder)


@pytest.fixture(scope="module")
def originals(gen):
    """The base weights as loaded, before any LoRA (every LoRA test asks for lora_file, which asks for this)."""
    base = gen._base()
    return {"unet": _snapshot(base.unet), "text_encoder": _snapshot(base.text_encoder)}


def _random_lora_file(gen, folder: Path, name: str, seed: int) -> Path:
    """A random rank-4 LoRA over every target module of the tiny UNet and text encoder, saved in kohya format."""
    base = gen._base()
    weights = random_lora([("unet", base.unet, L.UNET_TARGETS), ("text_encoder", base.text_encoder, L.TEXT_TARGETS)],
                          rank=4, scale=0.3, seed=seed)
    return L.save_lora(folder / f"{name}.safetensors", weights)


@pytest.fixture(scope="module")
def lora_file(gen, originals, tmp_path_factory):
    return _random_lora_file(gen, tmp_path_factory.mktemp("lora"), "person", seed=7)


@pytest.fixture(scope="module")
def other_lora_file(gen, originals, tmp_path_factory):
    return _random_lora_file(gen, tmp_path_factory.mktemp("lora"), "someone", seed=8)


def _image(seed: int, size=(W, H)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _mask(size=(W, H), box=HOLE) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def _inpaint(size=(W, H), kinds=("canny", "openpose"), **overrides) -> InpaintRequest:
    fields = {"prompt": "a portrait", "negative_prompt": "blurry", "steps": 4, "denoising_strength": 0.5,
              "seed": 1, "mask_blur": 2, "label": "pass 1"}
    fields.update(overrides)
    controls = fields.pop("controls", [Control(k, _image(10 + i, size)) for i, k in enumerate(kinds)])
    return InpaintRequest(image=_image(0, size), mask=_mask(size), controls=controls, **fields)


def _pixels(images) -> np.ndarray:
    return np.asarray(images[0]).astype(int)


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal_to(base, originals: dict) -> bool:
    """Every UNet and text-encoder tensor of `base` is bit for bit the original."""
    return all(torch.equal(getattr(base, name).state_dict()[k], v) for name, saved in originals.items()
               for k, v in saved.items())


# ---------------------------------------------------------------------------------------------- no model loaded


def test_capabilities_name_present_models_and_say_where_the_missing_go(tiny_controlnet_dirs, tmp_path):
    folder = _link_controlnets(tmp_path / "cn", tiny_controlnet_dirs, ["canny", "openpose"])
    torch.save({}, folder / "control_sd15_random_color.pth")  # a WebUI single file counts by its name
    gen = DiffusersGenerator(tmp_path / "base", controlnet_dir=folder)
    assert isinstance(gen, Generator) and gen.name == "diffusers"
    caps = gen.capabilities()
    assert caps.controls == {"canny": "control_v11p_sd15_canny", "openpose": "control_v11p_sd15_openpose",
                             "color": "control_sd15_random_color.pth"}
    assert set(caps.missing) == {"tile", "depth", "seg"} and "control_v11f1e_sd15_tile.pth" in caps.missing["tile"]
    assert str(folder) in caps.missing["tile"]
    assert caps.max_controls >= len(CONTROLNET_MODELS)
    assert set(caps.samplers) == {"DPM++ 2M", "DPM++ 2M SDE", "Euler a", "Euler", "DDIM", "UniPC"}
    unconfigured = DiffusersGenerator(tmp_path / "base").capabilities()
    assert unconfigured.controls == {} and set(unconfigured.missing) == set(CONTROLNET_MODELS)
    explicit = DiffusersGenerator(tmp_path / "base", controlnet_paths={"tile": tiny_controlnet_dirs["tile"]})
    assert set(explicit.capabilities().controls) == {"tile"}


def test_impossible_requests_fail_before_anything_is_loaded(tiny_sd_dir, tiny_controlnet_dirs, tmp_path):
    folder = _link_controlnets(tmp_path / "cn", tiny_controlnet_dirs, ["canny"])
    gen = DiffusersGenerator(tiny_sd_dir, controlnet_dir=folder)
    with pytest.raises(GenerationError, match="Missing ControlNet models for tile.*control_v11f1e_sd15_tile"):
        gen.inpaint(_inpaint(kinds=("canny", "tile")))
    with pytest.raises(GenerationError, match="Sampler 'Heun'.*DPM\\+\\+ 2M"):
        gen.inpaint(_inpaint(kinds=(), sampler="Heun"))
    with pytest.raises(GenerationError, match="has no Karras schedule"):
        gen.txt2img(Txt2ImgRequest(prompt="x", sampler="DDIM", scheduler="Karras", width=W, height=H))
    with pytest.raises(GenerationError, match="Schedule type 'Beta'"):
        gen.txt2img(Txt2ImgRequest(prompt="x", sampler="Euler", scheduler="Beta", width=W, height=H))
    with pytest.raises(GenerationError, match="no file path"):
        gen.inpaint(_inpaint(kinds=(), loras=[LoraRef("person", 1.0)]))
    with pytest.raises(GenerationError, match="does not exist"):
        gen.inpaint(_inpaint(kinds=(), loras=[LoraRef("person", 1.0, tmp_path / "gone.safetensors")]))
    with pytest.raises(GenerationError, match="latent noise"):
        gen.inpaint(_inpaint(kinds=(), inpainting_fill="latent noise"))
    with pytest.raises(GenerationError, match="leave no step"):
        gen.inpaint(_inpaint(kinds=(), steps=2, denoising_strength=0.3))
    with pytest.raises(GenerationError, match="base model .* does not exist"):
        DiffusersGenerator(tmp_path / "no-model").txt2img(Txt2ImgRequest(prompt="x", width=W, height=H))
    assert gen._base_model is None and gen.counter.totals() == {"unet": 0, "controlnet": 0}


@pytest.mark.parametrize(
    ("sampler", "schedule", "cls", "options"),
    [
        ("DPM++ 2M", "Karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True,
                                                               "algorithm_type": "dpmsolver++"}),
        ("DPM++ 2M", None, "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),  # WebUI "Automatic"
        ("DPM++ 2M Karras", None, "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),  # pre-1.9 name
        ("DPM++ 2M SDE", "Automatic", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                                      "use_karras_sigmas": True}),
        ("Euler a", "Automatic", "EulerAncestralDiscreteScheduler", {"timestep_spacing": "linspace"}),
        ("Euler", "Uniform", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
        ("DDIM", None, "DDIMScheduler", {"timestep_spacing": "leading"}),
        ("UniPC", "Karras", "UniPCMultistepScheduler", {"use_karras_sigmas": True}),
    ],
)
def test_webui_samplers_map_to_diffusers_schedulers(tiny_sd_dir, sampler, schedule, cls, options):
    base_config = json.loads((tiny_sd_dir / "scheduler" / "scheduler_config.json").read_text())
    scheduler = backend.make_scheduler(sampler, schedule, base_config)
    assert type(scheduler).__name__ == cls
    assert {k: scheduler.config[k] for k in options} == options
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.beta_end == 0.012
    scheduler.set_timesteps(4)  # every option combination is one diffusers really accepts
    if sampler != "DDIM":  # k-diffusion samplers start at the top of the noise schedule, as in the WebUI
        assert int(scheduler.timesteps[0]) == 999


def test_fill_takes_the_colours_around_the_hole():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :40] = (200, 30, 30)
    image[:, 40:] = (30, 30, 200)
    filled = np.asarray(backend.fill_masked(Image.fromarray(image), _mask((80, 40), (10, 10, 30, 30)))).astype(int)
    assert np.abs(filled[20, 12] - (200, 30, 30)).max() < 30  # near the red side of the hole: red
    assert np.array_equal(filled[:, 40:], image[:, 40:].astype(int))  # outside the hole: untouched


def test_importing_the_backend_loads_neither_torch_nor_diffusers():
    code = ("import sys, easyphoto.backends.diffusers\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------- inpaint


def test_inpaint_keeps_the_size_and_every_pixel_outside_the_blurred_mask(gen):
    size = (90, 60)  # not a multiple of 8: generated on a padded canvas, cropped back
    req = _inpaint(size=size, mask_blur=4, inpainting_fill="fill")
    out = gen.inpaint(req)
    assert len(out) == 1 and out[0].size == size and out[0].mode == "RGB"
    got, original = _pixels(out), np.asarray(req.image).astype(int)
    outside = np.asarray(backend.blur_mask(req.mask, 4)) == 0
    assert outside.sum() > 0.4 * outside.size  # the blur reaches ~3 radii beyond the hole
    assert np.array_equal(got[outside], original[outside])
    left, top, right, bottom = HOLE
    assert np.abs(got[top + 4 : bottom - 4, left + 4 : right - 4] - original[top + 4 : bottom - 4, left + 4 : right - 4]).mean() > 5


def test_inpaint_is_deterministic_per_seed(gen):
    first = _pixels(gen.inpaint(_inpaint(seed=3)))
    assert np.array_equal(_pixels(gen.inpaint(_inpaint(seed=3))), first)
    assert not np.array_equal(_pixels(gen.inpaint(_inpaint(seed=4))), first)


def test_controls_weights_and_modes_change_the_result(gen):
    def run(**control):
        return _pixels(gen.inpaint(_inpaint(controls=[Control("canny", _image(10), **control)], seed=5)))

    balanced = run()
    assert not np.array_equal(run(weight=0.0), balanced)
    prompt, control = run(mode="prompt"), run(mode="control")
    assert not np.array_equal(prompt, balanced) and not np.array_equal(control, prompt)
    assert not np.array_equal(run(start=0.5), balanced)


def test_evaluations_are_counted_per_label(gen):
    gen.counter.reset()
    gen.inpaint(_inpaint(steps=5, denoising_strength=0.5, label="half"))
    tile = Control("tile", _image(12), end=0.5)
    gen.inpaint(_inpaint(steps=4, denoising_strength=1.0, controls=[Control("canny", _image(10)), tile], label="full"))
    gen.txt2img(Txt2ImgRequest(prompt="x", steps=3, width=W, height=H, label="t2i"))
    # diffusers runs int(steps × strength) steps: 2 of 5 at 0.5, and all 4 at strength 1 (the WebUI clamps the
    # strength to 0.999 and would run 3). CFG's two halves go through one UNet call; every ControlNet of a
    # MultiControlNet is one call per step, also after its guidance window ended (diffusers scales it by 0 then).
    assert gen.counter.unet == {"half": 2, "full": 4, "t2i": 3}
    assert gen.counter.controlnet == {"half": 2 * 2, "full": 2 * 4, "t2i": 0}


def test_progress_reports_steps_and_should_stop_interrupts(gen, lora_file, originals):
    messages = []
    gen.inpaint(_inpaint(label="pass 2"), progress=lambda fraction, text: messages.append((fraction, text)))
    assert messages == [(0.5, "pass 2 step 1/2"), (1.0, "pass 2 step 2/2")]

    gen.counter.reset()
    with pytest.raises(GenerationInterrupted):
        gen.inpaint(_inpaint(label="stopped"), should_stop=lambda: True)
    assert gen.counter.unet.get("stopped", 0) == 0  # stopped before the first evaluation
    polls = iter([False, True])  # before the run, then after step 1
    with pytest.raises(GenerationInterrupted, match="after step 1/2"):
        gen.inpaint(_inpaint(label="stopped", loras=[LoraRef("person", 1.0, lora_file)]),
                    should_stop=lambda: next(polls))
    assert gen.counter.unet["stopped"] == 1
    assert gen._merged is None and _equal_to(gen._base(), originals)  # the stopped request's LoRA is out again


# ---------------------------------------------------------------------------------------------- LoRA


def test_a_lora_set_is_merged_once_and_kept_while_requests_use_it(gen, lora_file, originals):
    base, person = gen._base(), [LoraRef("person", 0.8, lora_file)]
    # no controls: the plain StableDiffusionInpaintPipeline on the 4-channel UNet
    plain = _pixels(gen.inpaint(_inpaint(kinds=())))
    applied = gen.lora_applications
    with_lora = _pixels(gen.inpaint(_inpaint(kinds=(), loras=person)))
    assert np.abs(with_lora - plain).mean() > 1
    assert not _equal_to(base, originals)  # kept merged for the next request
    again = _pixels(gen.inpaint(_inpaint(kinds=(), loras=person, label="pass 2")))
    assert gen.lora_applications == applied + 1  # both requests, one merge
    assert np.array_equal(again, with_lora)
    # A request without LoRAs takes the set out: the copies put back every weight bit for bit.
    assert np.array_equal(_pixels(gen.inpaint(_inpaint(kinds=()))), plain)
    assert _equal_to(base, originals) and gen.lora_applications == applied + 1


def test_another_lora_set_is_swapped_in_as_a_fresh_generator_would_merge_it(gen, lora_file, other_lora_file,
                                                                              tiny_sd_dir):
    person, someone = LoraRef("person", 0.8, lora_file), LoraRef("someone", 0.6, other_lora_file)
    gen.inpaint(_inpaint(kinds=(), loras=[person]))
    applied = gen.lora_applications
    requests = {"other file": [someone], "two files": [person, someone],
                "another weight": [person, LoraRef("someone", 0.5, other_lora_file)]}
    swapped = {name: _pixels(gen.inpaint(_inpaint(kinds=(), seed=6, loras=loras)))
               for name, loras in requests.items()}
    assert gen.lora_applications == applied + len(requests)  # each set change merges once
    fresh = DiffusersGenerator(tiny_sd_dir)
    for name, loras in requests.items():
        assert np.array_equal(_pixels(fresh.inpaint(_inpaint(kinds=(), seed=6, loras=loras))), swapped[name]), name
        fresh.release_loras()
    fresh.unload()


def test_a_retrained_lora_file_is_merged_again(gen, lora_file, tmp_path):
    path = tmp_path / "person.safetensors"
    path.write_bytes(lora_file.read_bytes())
    req = _inpaint(kinds=(), steps=2, loras=[LoraRef("person", 1.0, path)])
    gen.inpaint(req)
    applied = gen.lora_applications
    gen.inpaint(req)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same bytes, written again
    gen.inpaint(req)
    assert gen.lora_applications == applied + 1


def test_a_failing_request_leaves_the_base_weights_exactly_restored(gen, lora_file, originals, monkeypatch):
    person = [LoraRef("person", 1.0, lora_file)]
    gen.inpaint(_inpaint(kinds=(), steps=2, loras=person))  # the set is kept merged after this one

    def failing(label, progress, should_stop):
        def on_step_end(pipe, step, timestep, tensors):
            raise RuntimeError("out of memory in the middle of the run")

        return on_step_end

    monkeypatch.setattr(backend, "_step_callback", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        gen.inpaint(_inpaint(kinds=(), steps=2, loras=person))
    assert gen._merged is None and _equal_to(gen._base(), originals)
    with pytest.raises(RuntimeError, match="out of memory"):  # failing on a freshly merged set too
        gen.inpaint(_inpaint(kinds=(), steps=2, loras=[LoraRef("person", 0.3, lora_file)]))
    assert gen._merged is None and _equal_to(gen._base(), originals)


def test_unload_takes_a_kept_lora_set_out_before_dropping_the_models(gen, lora_file, originals):
    base = gen._base()
    gen.inpaint(_inpaint(kinds=(), steps=2, loras=[LoraRef("person", 1.0, lora_file)]))
    assert not _equal_to(base, originals)
    gen.unload()
    assert gen._base_model is None and gen._merged is None
    assert _equal_to(base, originals)  # exactly the loaded weights, should anything still hold these models


def test_per_request_merging_is_kept_as_an_option(gen, lora_file, originals, tiny_sd_dir):
    person = [LoraRef("person", 1.0, lora_file)]
    kept = _pixels(gen.inpaint(_inpaint(kinds=(), steps=2, loras=person)))
    # its own generator: float32 unmerging by subtraction leaves the weights to float rounding, not bit for bit
    old = DiffusersGenerator(tiny_sd_dir, keep_loras=False)
    for _ in range(2):
        assert np.abs(_pixels(old.inpaint(_inpaint(kinds=(), steps=2, loras=person))) - kept).max() <= 1
        assert old._merged is None
    assert old.lora_applications == 2  # merged and taken out around each request
    after = old._base().unet.state_dict()
    assert all(torch.allclose(after[k], v, atol=1e-6) for k, v in originals["unet"].items())
    old.unload()


def test_a_lora_for_another_model_is_refused_before_any_weight_changes(gen, lora_file, originals, tmp_path):
    weights = L.load_lora(lora_file)[0]
    wrong = dict(weights)
    key = "unet.down_blocks.0.attentions.0.proj_in"
    wrong[key] = L.LoraModule(down=torch.ones(4, 16, 1, 1), up=torch.ones(32, 4, 1, 1), alpha=4.0)  # in 32, not 16
    path = L.save_lora(tmp_path / "sdxl-ish.safetensors", wrong)
    with pytest.raises(GenerationError, match="does not fit the base model: unet.down_blocks.0.attentions.0.proj_in"):
        gen.inpaint(_inpaint(kinds=(), loras=[LoraRef("person", 1.0, lora_file), LoraRef("other", 1.0, path)]))
    assert _equal_to(gen._base(), originals)


def test_half_precision_weights_come_back_bit_exact(gen, lora_file):
    base = gen._base()
    half = SimpleNamespace(unet=copy.deepcopy(base.unet).half(), text_encoder=copy.deepcopy(base.text_encoder).half())
    before = _snapshot(half.unet)
    weights = L.load_lora(lora_file)[0]
    with backend.merged_loras(half, [(weights, 1.0), (weights, -0.5)]):
        assert not torch.equal(half.unet.state_dict()["down_blocks.0.attentions.0.proj_in.weight"],
                               before["down_blocks.0.attentions.0.proj_in.weight"])
    assert all(torch.equal(half.unet.state_dict()[k], v) for k, v in before.items())


# ---------------------------------------------------------------------------------------------- txt2img, other models


def test_txt2img_with_and_without_controls(gen):
    plain = gen.txt2img(Txt2ImgRequest(prompt="x", steps=2, width=70, height=64, seed=2))
    assert plain[0].size == (70, 64)
    controlled = gen.txt2img(Txt2ImgRequest(prompt="x", steps=2, width=70, height=64, seed=2,
                                            controls=[Control("openpose", _image(3, (70, 64)), mode="control"),
                                                      Control("color", _image(4, (70, 64)), end=0.5)]))
    assert controlled[0].size == (70, 64) and not np.array_equal(_pixels(controlled), _pixels(plain))


def test_webui_single_file_controlnets_load_offline(tiny_controlnet_dirs, tmp_path):
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    folder = tiny_controlnet_dirs["tile"]
    reference = ControlNetModel.from_pretrained(str(folder), local_files_only=True).state_dict()
    ldm = controlnet_to_ldm(ControlNetModel.from_pretrained(str(folder), local_files_only=True))
    save_file(ldm, str(tmp_path / "control_v11f1e_sd15_tile.safetensors"))
    torch.save({"state_dict": ldm}, tmp_path / "control_v11p_sd15_canny.pth")
    gen = DiffusersGenerator(tmp_path / "base", controlnet_dir=tmp_path, controlnet_config_dir=folder)
    assert gen.capabilities().controls == {"tile": "control_v11f1e_sd15_tile.safetensors",
                                           "canny": "control_v11p_sd15_canny.pth"}
    for kind in ("tile", "canny"):
        loaded = gen._controlnet(kind).state_dict()
        assert loaded.keys() == reference.keys() and all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_shipped_controlnet_config_is_the_sd15_architecture():
    from diffusers import ControlNetModel

    config = ControlNetModel.load_config(str(backend.SHIPPED_CONTROLNET_CONFIG), local_files_only=True)
    unet = json.loads((backend.SHIPPED_CONTROLNET_CONFIG.parent / "unet" / "config.json").read_text())
    for key in ("block_out_channels", "cross_attention_dim", "down_block_types", "attention_head_dim", "in_channels"):
        assert config[key] == unet[key], key
    assert config["conditioning_embedding_out_channels"] == [16, 32, 96, 256]


def test_nine_channel_inpaint_unet_and_single_file_base(tiny_inpaint_dir, tiny_single_file, tiny_sd_config_dir,
                                                        tiny_controlnet_dirs):
    from easyphoto.sd.base_model import BaseModelError, load_base

    with pytest.raises(BaseModelError, match="in_channels 9"):  # the trainer still refuses it
        load_base(tiny_inpaint_dir)
    inpaint = DiffusersGenerator(tiny_inpaint_dir, controlnet_paths={"canny": tiny_controlnet_dirs["canny"]})
    out = inpaint.inpaint(_inpaint(kinds=("canny",), steps=2, denoising_strength=1.0))
    assert out[0].size == (W, H) and inpaint._base().unet.config.in_channels == 9
    single = DiffusersGenerator(tiny_single_file, base_config_dir=tiny_sd_config_dir)
    assert single.txt2img(Txt2ImgRequest(prompt="x", steps=1, width=W, height=H))[0].size == (W, H)
    single.unload()
    assert single._base_model is None
