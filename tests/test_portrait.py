"""The portrait algorithm (easyphoto/portrait) on real photos with the offline dlib face stack.

The generator here is `PaintingGenerator`, a double of the Generator protocol that records every request and
"generates" by painting the masked area a colour derived from the seed; it makes the algorithm's own behaviour
observable (which requests, which masks, what gets pasted where). Real diffusion runs in
tests/test_portrait_diffusers.py (tiny models) and tests/test_backend_*.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import PortraitConfig
from easyphoto.errors import IdentityNotFound
from easyphoto.face import stacks
from easyphoto.generation import Capabilities, EvalCounter, GenerationError, planned_steps
from easyphoto.imageops import load_photo, to_array
from easyphoto.portrait import outputs
from easyphoto.portrait.pipeline import PortraitPipeline
from easyphoto.portrait.run import IdentityNotReady, load_identity
from easyphoto.portrait.template import TemplateError, analyse, assign
from easyphoto.store import Paths, atomic_write_json
from tests.host.harness import safetensors_bytes

FAST = {"first_steps": 4, "second_steps": 4, "short_side": 256}


class PaintingGenerator:
    name = "painting"

    def __init__(self, missing: dict[str, str] | None = None):
        self.requests = []
        self.counter = EvalCounter()
        self.missing = missing or {}

    def capabilities(self):
        kinds = {k: f"model-{k}" for k in ("canny", "openpose", "color", "tile") if k not in self.missing}
        return Capabilities("painting", kinds, dict(self.missing), 4)

    def inpaint(self, req, progress=None, should_stop=None):
        self.requests.append(req)
        self.counter.add(req.label, unet=planned_steps(req.steps, req.denoising_strength))
        pixels = np.asarray(req.image).copy()
        mask = np.asarray(req.mask) > 127
        pixels[mask] = (req.seed * 37 % 256, 255 - req.seed * 11 % 256, 128)
        return [Image.fromarray(pixels)]

    txt2img = None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return stacks.load("dlib", Paths.standalone(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def t1(photo_t1, stack):
    return analyse(load_photo(photo_t1).image, "t1.jpg", stack.detector)


def make_identity(paths: Paths, identity_id: str, photo, stack, *, lora: bool = True):
    from easyphoto.store import IdentityStore

    layout = IdentityStore(paths).create(identity_id, exist_ok=True)
    image = load_photo(photo).image
    face = stack.detector.detect(to_array(image))[0]
    image.crop(face.expanded_box(1.8, image.size)).save(layout.root / "reference.jpg")
    lora_file = paths.lora_dir / f"{identity_id}.safetensors"
    if lora:
        paths.lora_dir.mkdir(parents=True, exist_ok=True)
        lora_file.write_bytes(safetensors_bytes({"ss_output_name": identity_id}))  # header only: no tensors
    atomic_write_json(layout.identity_json, {"identity_id": identity_id, "lora_file": lora_file.name,
                                             "reference_face": "reference.jpg"})
    return layout


@pytest.fixture(scope="module")
def identities(tmp_path_factory, stack, photos_same_man, photo_other_person):
    from easyphoto.context import standalone_context

    ctx = standalone_context(tmp_path_factory.mktemp("data"))
    make_identity(ctx.paths, "barack", photos_same_man[0], stack)
    make_identity(ctx.paths, "joe", photo_other_person, stack)
    return ctx, {i: load_identity(ctx, i, stack) for i in ("barack", "joe")}


# ---------------------------------------------------------------------------------------------- template analysis


def test_faces_are_numbered_left_to_right_and_the_largest_is_the_default(t1):
    centres = [(f.box[0] + f.box[2]) / 2 for f in t1.faces]
    assert len(t1.faces) == 6 and centres == sorted(centres)
    [(who, face)] = assign(t1, ["a"], None, 32)
    assert who == "a" and face.area == max(f.area for f in t1.faces)
    pairs = assign(t1, ["a", "b"], [4, 1], 32)
    assert [(w, t1.faces.index(f)) for w, f in pairs] == [("a", 4), ("b", 1)]


@pytest.mark.parametrize("ids, indices, words", [
    (["a", "b"], [1], "2 identities but 1 face numbers"),
    (["a"], [6], "do not exist"),
    (["a", "b"], [2, 2], "same face twice"),
    (["a"] * 7, None, "6 face(s) for 7 identities"),
    ([], None, "No identity"),
])
def test_bad_face_choices_are_refused_with_the_reason(t1, ids, indices, words):
    with pytest.raises(TemplateError, match=words.replace("(", r"\(").replace(")", r"\)")):
        assign(t1, ids, indices, 32)


def test_template_without_a_face_and_face_too_small(stack, t1):
    blank = analyse(Image.new("RGB", (300, 200), (120, 130, 140)), "wall.png", stack.detector)
    with pytest.raises(TemplateError, match="No face found in the template wall.png"):
        assign(blank, ["a"], None, 32)
    with pytest.raises(TemplateError, match=r"Face 1 of the template t1.jpg is \d+ px; at least 400 px"):
        assign(t1, ["a"], [1], 400)


# ---------------------------------------------------------------------------------------------- identities


def test_identity_errors_are_specific(identities, stack):
    ctx, _ = identities
    with pytest.raises(IdentityNotFound):
        load_identity(ctx, "nobody", stack)
    make_identity(ctx.paths, "untrained", ctx.identities.get("barack").root / "reference.jpg", stack, lora=False)
    with pytest.raises(IdentityNotReady, match="'untrained' has no trained LoRA yet"):
        load_identity(ctx, "untrained", stack)


def test_missing_control_model_fails_before_generating(stack):
    generator = PaintingGenerator(missing={"openpose": "control_v11p_sd15_openpose not in models/ControlNet"})
    with pytest.raises(GenerationError, match="openpose.*control_v11p_sd15_openpose not in models/ControlNet"):
        PortraitPipeline(generator, stack, PortraitConfig()).check()
    assert generator.requests == []
    # a zero weight drops the control, and then its model is not needed
    PortraitPipeline(generator, stack, PortraitConfig(openpose_weight=0)).check()


# ---------------------------------------------------------------------------------------------- one face


@pytest.fixture(scope="module")
def one_face(t1, stack, identities):
    _, assets = identities
    generator = PaintingGenerator()
    pipeline = PortraitPipeline(generator, stack, PortraitConfig(**FAST))
    return generator, pipeline.render(t1, [assets["barack"]], [2], seed=1234)


def test_the_two_passes_send_the_reference_settings(one_face):
    generator, result = one_face
    first, second = generator.requests
    assert (first.label, first.steps, first.denoising_strength, first.seed) == ("pass 1", 4, 0.45, 1234)
    assert [(c.kind, c.weight, c.mode) for c in first.controls] == [
        ("canny", 0.5, "prompt"), ("openpose", 0.5, "prompt"), ("color", 0.85, "prompt")]
    assert [(c.kind, c.weight) for c in second.controls] == [("canny", 1.0), ("tile", 1.0)]
    assert (second.label, second.denoising_strength) == ("pass 2", 0.30)
    for req in (first, second):
        assert [(lora.name, lora.weight) for lora in req.loras] == [("barack", 0.9)]
        assert (req.cfg_scale, req.sampler, req.scheduler, req.mask_blur) == (7.0, "DPM++ 2M SDE", "Karras", 8)
        assert min(req.image.size) == 256 and all(s % 32 == 0 for s in req.image.size)
        assert all(c.image.size == req.image.size for c in req.controls)
        assert "<lora:" not in req.prompt and req.prompt.startswith("easyphoto_face")
    ring, face = np.asarray(second.mask) > 0, np.asarray(first.mask) > 0
    assert ring.sum() > 0 and (ring & ~face).sum() > 0  # pass 2 reaches beyond the pass-1 face into its border


def test_only_the_face_region_changes(one_face, t1):
    _, result = one_face
    before, after = to_array(t1.image), to_array(result.image)
    assert result.image.size == t1.image.size
    changed = np.any(before != after, axis=-1)
    x0, y0, x1, y1 = t1.faces[2].box
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 0.5 * (x1 - x0) * (y1 - y0)
    width = x1 - x0
    assert xs.min() > x0 - width and xs.max() < x1 + width and ys.min() > y0 - width and ys.max() < y1 + width
    for other in (0, 1, 3, 4, 5):
        a, b, c, d = (int(v) for v in t1.faces[other].box)
        assert not changed[b:d, a:c].any(), other


def test_result_is_seed_deterministic(t1, stack, identities, one_face):
    _, assets = identities
    again = PortraitPipeline(PaintingGenerator(), stack, PortraitConfig(**FAST)).render(
        t1, [assets["barack"]], [2], seed=1234)
    assert np.array_equal(to_array(again.image), to_array(one_face[1].image))


# ---------------------------------------------------------------------------------------------- several people


def test_two_identities_each_on_the_face_asked_for(t1, stack, identities):
    _, assets = identities
    generator = PaintingGenerator()
    result = PortraitPipeline(generator, stack, PortraitConfig(**FAST, second_pass=False)).render(
        t1, [assets["barack"], assets["joe"]], [4, 1], seed=7)
    assert [r.loras[0].name for r in generator.requests] == ["barack", "joe"]  # in the order asked
    assert [(f.index, f.identity_id) for f in result.faces] == [(4, "barack"), (1, "joe")]
    changed = np.any(to_array(t1.image) != to_array(result.image), axis=-1)
    for index, face in enumerate(t1.faces):
        a, b, c, d = (int(v) for v in face.box)
        assert changed[b:d, a:c].any() == (index in (1, 4)), index


def test_likeness_gate_retries_with_new_seeds_and_keeps_the_best(t1, stack, identities):
    _, assets = identities
    generator = PaintingGenerator()
    config = PortraitConfig(**FAST, second_pass=False, likeness_gate=True, likeness_threshold=1.0, max_attempts=3)
    result = PortraitPipeline(generator, stack, config).render(t1, [assets["barack"]], [2], seed=5)
    assert result.attempts == 3 and len({r.seed for r in generator.requests}) == 3


# ---------------------------------------------------------------------------------------------- outputs


def test_saved_png_has_webui_infotext_and_the_full_config(one_face, tmp_path):
    _, result = one_face
    config = PortraitConfig(**FAST)
    path = outputs.save(result, config, tmp_path)
    second = outputs.save(result, config, tmp_path)
    assert path != second and path.name.startswith("00001-t1") and second.name.startswith("00002-t1")
    with Image.open(path) as image:
        text = image.info["parameters"]
        assert image.size == result.image.size
    prompt, negative, params = text.split("\n")
    assert "<lora:barack:0.9>" in prompt and negative.startswith("Negative prompt: ")
    assert "Steps: 4, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7.0, Seed: 1234" in params
    assert 'EasyPhoto identities: 2=barack' in params
    meta = outputs.read_metadata(path)
    assert PortraitConfig.from_dict(meta["config"]) == config
    assert meta["faces"][0]["identity_id"] == "barack" and json.dumps(meta)


def test_switching_the_standalone_base_unloads_the_previous_generator(tmp_path, monkeypatch):
    """One base model in memory at a time: the generator of the old base is unloaded before it is dropped."""
    from easyphoto.backends import diffusers as diffusers_backend
    from easyphoto.context import standalone_context
    from easyphoto.portrait import run

    made = []

    class Recording:
        def __init__(self, base, **kwargs):
            self.base, self.unloaded = base, False
            made.append(self)

        def unload(self):
            self.unloaded = True

    monkeypatch.setattr(diffusers_backend, "DiffusersGenerator", Recording)
    monkeypatch.setattr(run, "_standalone_generators", {})
    ctx = standalone_context(tmp_path)
    first = run.make_generator(ctx, {"base": str(tmp_path / "a.safetensors")})
    assert run.make_generator(ctx, {"base": str(tmp_path / "a.safetensors")}) is first and not first.unloaded
    second = run.make_generator(ctx, {"base": str(tmp_path / "b.safetensors")})
    assert second is not first and first.unloaded and not second.unloaded and len(made) == 2
