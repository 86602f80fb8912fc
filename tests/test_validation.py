"""Checkpoint validation: templates, rendering with the live modules (tiny model), scoring with the real dlib
embedder on real photos. Tiny-model images are noise, so the test asserts plumbing, ranking and recorded numbers."""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from easyphoto.face import stacks
from easyphoto.store import Paths
from easyphoto.train import validation


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return stacks.load("dlib", Paths.standalone(tmp_path_factory.mktemp("models")))


def test_scores_rank_the_same_person_above_another(stack, photos_same_man, photo_other_person):
    references = validation.reference_embeddings([photos_same_man[0], photos_same_man[2]], stack)
    assert references.shape == (2, 128)
    same, note = validation.score_image(Image.open(photos_same_man[1]).convert("RGB"), stack, references)
    other, _ = validation.score_image(Image.open(photo_other_person).convert("RGB"), stack, references)
    assert note == "" and same > stack.embedder.same_threshold > other
    blank, why = validation.score_image(Image.new("RGB", (128, 128), "gray"), stack, references)
    assert blank is None and why == "no face found in the validation image"


def test_templates_mask_the_face_and_fit_the_resolution(stack, photos_same_man, tmp_path):
    templates = validation.prepare_templates(photos_same_man[:2], stack, 512)
    for t in templates:
        assert min(t.image.size) == 512 or min(t.image.size) // 64 * 64 == min(t.image.size)
        assert t.image.width % 64 == 0 and t.image.height % 64 == 0
        mask = np.asarray(t.mask)
        assert 0.02 < (mask > 128).mean() < 0.6
    Image.new("RGB", (300, 300), "white").save(tmp_path / "blank.jpg")
    with pytest.raises(validation.ValidationError, match="blank.jpg has no face"):
        validation.prepare_templates([tmp_path / "blank.jpg"], stack, 512)
    shipped = tmp_path / "models" / "training_templates"
    shipped.mkdir(parents=True)
    shutil.copy(photos_same_man[0], shipped / "1.jpg")
    assert validation.template_files(tmp_path / "models", photos_same_man) == [shipped / "1.jpg"]
    assert validation.template_files(tmp_path / "none", photos_same_man) == list(photos_same_man)


def _live_base(tiny_sd_dir):
    """The modules validation renders with, as a training holds them (no pipeline around them)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return SimpleNamespace(
        unet=UNet2DConditionModel.from_pretrained(tiny_sd_dir / "unet"),
        vae=AutoencoderKL.from_pretrained(tiny_sd_dir / "vae"),
        text_encoder=CLIPTextModel.from_pretrained(tiny_sd_dir / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(tiny_sd_dir / "tokenizer"),
        noise_scheduler=DDIMScheduler.from_pretrained(tiny_sd_dir / "scheduler"),
    )


def test_validate_renders_with_the_live_modules_and_records_scores(stack, photos_same_man, tiny_sd_dir, tmp_path):
    base = _live_base(tiny_sd_dir)
    base.unet.train()
    templates = validation.prepare_templates(photos_same_man[1:2], stack, 256)  # faces must stay detectable
    references = validation.reference_embeddings(photos_same_man, stack)
    scores = validation.validate(base, templates, stack, references, "a photo", step=7, out_dir=tmp_path, seed=1, steps=2)
    assert [s.image for s in scores] == ["step-000007-obama2.jpg"]
    assert all(s.score is None and s.note.startswith("no face") for s in scores)  # tiny models draw noise
    assert Image.open(tmp_path / scores[0].image).size == templates[0].image.size
    assert base.unet.training  # train mode restored after rendering
    again = validation.validate(base, templates, stack, references, "a photo", step=7, out_dir=tmp_path / "b",
                                seed=1, steps=2)
    first = np.asarray(Image.open(tmp_path / scores[0].image))
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "b" / again[0].image)))  # seeded, deterministic
    assert validation.mean_score(scores) is None
    assert validation.mean_score([validation.Score("a", "t", 0.5), validation.Score("b", "t", None)]) == 0.5


def test_batched_validation_draws_the_same_images_as_one_call_each(tiny_sd_dir):
    """Templates of one size share a call, each with its own generator: the images a call each would draw."""
    base = _live_base(tiny_sd_dir)
    rng = np.random.default_rng(3)

    def template(name, size):
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        mask = Image.new("L", size, 0)
        mask.paste(255, (8, 8, size[0] - 8, size[1] - 8))
        return validation.Template(name, image, mask)

    templates = [template("a", (64, 64)), template("b", (64, 96)), template("c", (64, 64))]
    assert validation._groups(templates, True) == [[0, 2], [1]]
    batched = validation.render(base, templates, "a photo", seed=5, steps=2, batched=True)
    single = validation.render(base, templates, "a photo", seed=5, steps=2, batched=False)
    assert [im.size for im in batched] == [(64, 64), (64, 96), (64, 64)]
    for mine, theirs in zip(batched, single, strict=True):
        difference = np.abs(np.asarray(mine, np.int16) - np.asarray(theirs, np.int16))
        assert difference.max() <= 2  # float rounding of a batched UNet call
    assert not np.array_equal(np.asarray(batched[0]), np.asarray(batched[2]))  # each its own noise
