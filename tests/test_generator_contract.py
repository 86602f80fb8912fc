"""The Generator contract (easyphoto/generation.py): one suite of behaviours every backend must have, run against
each of them (the idea of diffusers' PipelineTesterMixin):

* ``diffusers``: DiffusersGenerator on the kit's tiny SD 1.5 and its tiny ControlNets (needs torch);
* ``webui-a1111`` / ``webui-forge``: WebUIGenerator inside the host double (tests/host) of each flavour.

Each backend has the same controls installed (canny, openpose, tile; "color" missing on purpose) and one identity
LoRA it can find. Where the backends legitimately differ, that is a documented property of :class:`Backend`, and
the suite asserts the property, never skips:

* ``lora_changes_pixels``: the diffusers backend merges the LoRA into real weights, so the image changes; the host
  double draws its pixels from the seed alone (its Lora extension only records the networks it was asked to
  apply), so there the evidence is the host's record, not the pixels;
* ``has_unload``: only the diffusers backend owns models it can drop; the WebUI's models belong to the host;
* ``runs`` and ``sampler_evaluations``: what the host really did, observed outside the Generator's counter (the
  host double's processing calls and sampler runs; for diffusers the UNet forward hooks, and diffusers' own
  step count int(steps × strength), :func:`easyphoto.generation.planned_steps`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easyphoto.generation import (
    CONTROLNET_MODELS,
    Control,
    GenerationError,
    GenerationInterrupted,
    Generator,
    InpaintRequest,
    LoraRef,
    Txt2ImgRequest,
    planned_steps,
)
from tests.conftest import require_module

W, H = 90, 60  # not multiples of 8, not square: padding, cropping and a swapped width/height all show
INSTALLED = ("canny", "openpose", "tile")  # "color" (and "depth") are missing on every backend
MISSING = "color"
BIG = b"\0" * 0x100000  # the WebUI's legacy model hash reads from offset 1 MiB: distinct bytes after it
LORA_WEIGHT = 0.8


@dataclass
class Backend:
    """One Generator under test, and how the suite observes it from outside the Generator's own answers."""

    name: str
    generator: Generator
    lora: LoraRef  # an identity LoRA this backend finds (by name in the WebUI, by path for diffusers)
    runs: Callable[[], int]  # work the host really did so far (sampler calls / UNet forward calls)
    sampler_evaluations: Callable[[Txt2ImgRequest], int]  # UNet evaluations the last request's sampler really ran
    loras_seen: Callable[[], list[tuple[str, float]]]  # (name, weight) of the LoRAs the last request ran with
    lora_changes_pixels: bool
    has_unload: bool
    reset: Callable[[], None] = lambda: None  # before each test: clear the host's records


# ---------------------------------------------------------------------------------------------- backends


def _diffusers_backend(tmp: Path, request) -> Backend:
    from diffusers import UNet2DConditionModel

    from easyphoto.backends.diffusers import DiffusersGenerator
    from easyphoto.sd import lora as L
    from tests.kit.lora import random_lora

    tiny_sd_dir, sources = request.getfixturevalue("tiny_sd_dir"), request.getfixturevalue("tiny_controlnet_dirs")
    folder = tmp / "ControlNet"
    folder.mkdir()
    for kind in INSTALLED:  # laid out as the model manager does: one entry per model stem
        (folder / CONTROLNET_MODELS[kind]).symlink_to(Path(sources[kind]).resolve(), target_is_directory=True)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    weights = random_lora([("unet", unet, L.UNET_TARGETS)], rank=4, scale=0.3, seed=7)
    lora = LoraRef("person", LORA_WEIGHT, L.save_lora(tmp / "person.safetensors", weights))
    gen = DiffusersGenerator(tiny_sd_dir, controlnet_dir=folder)

    def loras_seen() -> list[tuple[str, float]]:  # the set the last request merged (kept until another set comes)
        merged = gen._merged
        return [] if merged is None else [(Path(key[0]).stem, weight) for key, weight in merged.key]

    return Backend(
        name="diffusers", generator=gen, lora=lora,
        runs=lambda: gen.counter.totals()["unet"],
        sampler_evaluations=lambda req: planned_steps(req.steps, getattr(req, "denoising_strength", None)),
        loras_seen=loras_seen, lora_changes_pixels=True, has_unload=True,
    )


def _webui_backend(tmp: Path, flavour: str):
    from tests.host.harness import WebUIHost

    host = WebUIHost(tmp, flavour=flavour)
    folder = host.root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    for kind in INSTALLED:
        (folder / f"{CONTROLNET_MODELS[kind]}.pth").write_bytes(BIG + kind.encode())
    host.add_lora("person.safetensors")
    host.start()
    from easyphoto.backends.webui import make_generator

    def reset() -> None:
        from modules import shared

        host.start()  # again, should another module's host have replaced it
        host.calls.clear()
        host.errors.clear()
        shared.state.interrupted = False

    backend = Backend(
        name=f"webui-{flavour}", generator=make_generator({}), lora=LoraRef("person", LORA_WEIGHT),
        runs=lambda: len(host.calls),
        sampler_evaluations=lambda req: sum(run.evaluations for run in host.calls[-1].sampler_runs),
        loras_seen=lambda: [(name, float(weight)) for name, weight in host.calls[-1].loras],
        lora_changes_pixels=False, has_unload=False, reset=reset,
    )
    return host, backend


@pytest.fixture(scope="module", params=["diffusers", "webui-a1111", "webui-forge"])
def module_backend(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "diffusers":
        require_module("torch")
        require_module("diffusers")
        from tests.kit.tiny_sd import torch_threads

        with pytest.MonkeyPatch.context() as patch, torch_threads(1):
            patch.setenv("HF_HUB_OFFLINE", "1")  # nothing from the hub: every model is local
            backend = _diffusers_backend(tmp, request)
            yield backend
            backend.generator.unload()
        return
    host, backend = _webui_backend(tmp, request.param.removeprefix("webui-"))
    try:
        yield backend
    finally:
        host.stop()


@pytest.fixture
def backend(module_backend) -> Backend:
    module_backend.reset()
    return module_backend


# ---------------------------------------------------------------------------------------------- requests


def _image(seed: int, size=(W, H)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _inpaint(kinds=(), **overrides) -> InpaintRequest:
    mask = Image.new("L", (W, H), 0)
    mask.paste(255, (W // 4, H // 4, 3 * W // 4, 3 * H // 4))
    fields = {"prompt": "a photo of a person", "negative_prompt": "blurry", "steps": 4, "denoising_strength": 0.5,
              "seed": 11, "mask_blur": 2, "label": "contract"}
    fields.update(overrides)
    controls = [Control(kind, _image(20 + i)) for i, kind in enumerate(kinds)]
    return InpaintRequest(image=_image(1), mask=mask, controls=controls, **fields)


def _txt2img(**overrides) -> Txt2ImgRequest:
    return Txt2ImgRequest(**{"prompt": "a photo of a person", "steps": 2, "seed": 5, "width": W, "height": H,
                             "label": "contract", **overrides})


def _pixels(images) -> np.ndarray:
    [image] = images
    return np.asarray(image).astype(int)


# ---------------------------------------------------------------------------------------------- the contract


def test_it_is_a_generator_named_like_its_capabilities(backend):
    gen = backend.generator
    assert isinstance(gen, Generator) and gen.name == gen.capabilities().backend == backend.name


def test_capabilities_list_the_installed_control_kinds_and_name_the_missing_model(backend):
    caps = backend.generator.capabilities()
    assert set(caps.controls) == set(INSTALLED) and set(caps.missing) == set(CONTROLNET_MODELS) - set(INSTALLED)
    assert CONTROLNET_MODELS[MISSING] in caps.missing[MISSING]
    assert caps.max_controls >= len(INSTALLED)


def test_every_listed_control_kind_runs(backend):
    kinds = sorted(backend.generator.capabilities().controls)
    assert len(backend.generator.inpaint(_inpaint(kinds))) == 1
    assert backend.runs() > 0


@pytest.mark.parametrize("kind", ["inpaint", "txt2img"])
def test_one_image_of_the_requested_size(backend, kind):
    req = _inpaint(["canny"]) if kind == "inpaint" else _txt2img()
    images = getattr(backend.generator, kind)(req)
    assert len(images) == 1 and images[0].size == (W, H) and images[0].mode == "RGB"


@pytest.mark.parametrize("kind", ["inpaint", "txt2img"])
def test_the_same_seed_gives_the_same_image(backend, kind):
    make = _inpaint if kind == "inpaint" else _txt2img
    run = getattr(backend.generator, kind)
    first = _pixels(run(make(seed=3)))
    assert np.array_equal(_pixels(run(make(seed=3))), first)
    assert not np.array_equal(_pixels(run(make(seed=4))), first)


def test_stopped_before_the_start_raises_and_runs_nothing(backend):
    gen, before = backend.generator, backend.runs()
    counted = gen.counter.totals()
    for call, req in ((gen.inpaint, _inpaint(["canny"])), (gen.txt2img, _txt2img())):
        with pytest.raises(GenerationInterrupted):
            call(req, should_stop=lambda: True)
    assert backend.runs() == before and gen.counter.totals() == counted


def test_stopped_during_a_request_raises_and_the_next_request_works(backend):
    polls = iter([False] + [True] * 100)  # not stopped when it starts, stopped at the next poll
    with pytest.raises(GenerationInterrupted):
        backend.generator.inpaint(_inpaint(), should_stop=lambda: next(polls))
    assert np.array_equal(_pixels(backend.generator.inpaint(_inpaint())), _pixels(backend.generator.inpaint(_inpaint())))


@pytest.mark.parametrize("kind", ["inpaint", "txt2img"])
def test_progress_is_fractions_of_the_request_ending_at_one(backend, kind):
    fractions = []
    req = _inpaint() if kind == "inpaint" else _txt2img()
    getattr(backend.generator, kind)(req, progress=lambda fraction, text: fractions.append(fraction))
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions) and fractions[-1] == 1.0
    assert fractions == sorted(fractions)  # never goes back


@pytest.mark.parametrize("kind", ["inpaint", "txt2img"])
def test_a_missing_control_model_is_refused_before_anything_runs_naming_the_file(backend, kind):
    gen, before = backend.generator, backend.runs()
    req = _inpaint(["canny", MISSING]) if kind == "inpaint" else _txt2img(controls=[Control(MISSING, _image(3))])
    with pytest.raises(GenerationError) as info:
        getattr(gen, kind)(req)
    assert CONTROLNET_MODELS[MISSING] in str(info.value) and MISSING in str(info.value)
    assert CONTROLNET_MODELS["canny"] not in str(info.value)  # only what is missing
    assert backend.runs() == before


def test_the_counter_counts_the_unet_and_controlnet_evaluations_the_sampler_ran(backend):
    gen = backend.generator
    gen.counter.reset()
    inpaint = _inpaint(["canny", "openpose"], label="pass 1")
    gen.inpaint(inpaint)
    pass_1 = backend.sampler_evaluations(inpaint)
    txt2img = _txt2img(steps=3, label="pass 2")
    gen.txt2img(txt2img)
    pass_2 = backend.sampler_evaluations(txt2img)
    assert pass_1 > 0 and pass_2 > 0
    assert gen.counter.unet == {"pass 1": pass_1, "pass 2": pass_2}
    assert gen.counter.controlnet == {"pass 1": 2 * pass_1, "pass 2": 0}  # every control, every evaluation
    gen.counter.reset()
    assert gen.counter.totals() == {"unet": 0, "controlnet": 0}


def test_a_lora_is_applied_for_its_request_and_the_base_is_back_afterwards(backend):
    gen = backend.generator
    plain = _pixels(gen.inpaint(_inpaint(seed=9)))
    with_lora = _pixels(gen.inpaint(_inpaint(seed=9, loras=[backend.lora])))
    assert backend.loras_seen() == [("person", LORA_WEIGHT)]
    assert (not np.array_equal(with_lora, plain)) == backend.lora_changes_pixels
    assert np.array_equal(_pixels(gen.inpaint(_inpaint(seed=9, loras=[backend.lora]))), with_lora)  # repeatable
    after = _pixels(gen.inpaint(_inpaint(seed=9)))
    assert backend.loras_seen() == [] and np.array_equal(after, plain)  # as if the LoRA had never been there


def test_unload_where_the_backend_owns_models_and_a_request_works_again(backend):
    gen = backend.generator
    assert callable(getattr(gen, "unload", None)) == backend.has_unload
    before = _pixels(gen.txt2img(_txt2img(controls=[Control("tile", _image(3))])))
    if backend.has_unload:
        gen.unload()  # drops every model: the next request loads them again
    assert np.array_equal(_pixels(gen.txt2img(_txt2img(controls=[Control("tile", _image(3))]))), before)
