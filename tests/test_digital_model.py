"""The digital model (easyphoto.tryon.digital_model): mannequin/half-body → model, outfit, scene and pose swaps on the
tiny diffusers backend (the kit's tiny SD 1.5 and ControlNets), on a real photo cropped to half a body (Biden, from
the face_recognition test images: mediapipe finds his shoulders and arms, the crop removes hips and legs).

The clothes parsing is the hand-made one of tests/test_tryon_pipeline.py (built from the photo's pose), handed in
the way a real parser's is. What is asserted is what a shop relies on: the kept garment's pixels are the photo's
own, exactly; what should be regenerated is; the pose is completed and the canvas extended for it; the identity's
LoRA reaches the generation; every bad input fails before any generation, saying why."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import DigitalModelConfig
from easyphoto.generation import GenerationInterrupted, LoraRef
from easyphoto.imageops import load_photo, to_array
from easyphoto.segment.types import LABEL_INDEX, Parsing
from easyphoto.tryon import masks
from easyphoto.tryon.digital_model import (
    DigitalModelInputs,
    DigitalModelPipeline,
    NoGarmentInMask,
    body_region,
    model_prompt,
)
from tests.conftest import require_module
from tests.test_tryon_pipeline import person_parsing, suit_assets, tiny_lora

cv2 = require_module("cv2")
FAST = {"steps": 2, "short_side": 256, "seed": 42}
R_HIP, L_HIP, R_ANKLE, L_ANKLE, NOSE = 8, 11, 10, 13, 0


@pytest.fixture(scope="module")
def gen(tiny_sd_dir, tiny_controlnet_dirs):
    """The tiny diffusers backend with the openpose and canny ControlNets (no depth: it is optional)."""
    from easyphoto.backends.diffusers import DiffusersGenerator
    from tests.kit.tiny_sd import torch_threads

    generator = DiffusersGenerator(tiny_sd_dir, controlnet_paths={k: tiny_controlnet_dirs[k] for k in
                                                                  ("canny", "openpose")})
    with torch_threads(1):
        yield generator
    generator.unload()


@pytest.fixture(scope="module")
def suit(tmp_path_factory, tiny_sd_dir, photo_astronaut):
    """A trained garment's assets: a random garment LoRA and the astronaut's suit as its reference."""
    return suit_assets(tiny_sd_dir, tmp_path_factory.mktemp("suit"), photo_astronaut)


class Recording:
    """The real generator, its requests kept (which LoRAs and controls reached it)."""

    def __init__(self, generator):
        self.generator, self.requests = generator, []
        self.counter, self.name = generator.counter, generator.name

    def capabilities(self):
        return self.generator.capabilities()

    def inpaint(self, request, progress, should_stop):
        self.requests.append(request)
        return self.generator.inpaint(request, progress, should_stop)

    def txt2img(self, request, progress, should_stop):
        self.requests.append(request)
        return self.generator.txt2img(request, progress, should_stop)


@pytest.fixture(scope="module")
def half_body(photo_other_person):
    """(pixels, key points, parsing) of the photo at a quarter size, cut above the hips: a half-body shot."""
    from easyphoto.pose.openpose import body_keypoints_from_mediapipe

    image = load_photo(photo_other_person).image
    pixels = to_array(image.resize((image.width // 4, image.height // 4), Image.LANCZOS))
    full = body_keypoints_from_mediapipe(pixels)
    cut = int(min(full[R_HIP, 1], full[L_HIP, 1])) - 12
    pixels = np.ascontiguousarray(pixels[:cut])
    keypoints = body_keypoints_from_mediapipe(pixels)
    assert keypoints is not None and not keypoints[[R_ANKLE, L_ANKLE], 2].any()
    return pixels, keypoints, person_parsing(pixels.shape[:2], keypoints)


def pipeline(generator, **config) -> DigitalModelPipeline:
    return DigitalModelPipeline(generator, DigitalModelConfig(**{**FAST, **config}))


def test_model_prompt_follows_the_presets():
    config = DigitalModelConfig(gender="man", age="senior", ethnicity="East Asian", body_type="athletic")
    assert model_prompt(config) == "a photo of a athletic senior East Asian man, fashion model, full body"
    assert "any" not in model_prompt(DigitalModelConfig())


def test_config_refuses_an_outfit_on_the_kept_region_and_a_pass_without_steps():
    with pytest.raises(ValueError, match="outfit_category"):
        DigitalModelConfig(mode="outfit", category="upper", outfit_category="upper")
    with pytest.raises(ValueError, match="no sampling step"):
        DigitalModelConfig(steps=1, denoising_strength=0.5)


def test_half_body_to_model_keeps_the_garment_exactly_and_completes_the_body(gen, half_body):
    pixels, keypoints, parsing = half_body
    recording = Recording(gen)
    result = pipeline(recording).render(pixels, DigitalModelInputs(parsing=parsing))
    left, top, right, bottom = result.padding
    assert bottom > 0 and {"right_ankle", "left_ankle"} <= set(result.completed)  # legs placed below the frame
    out = to_array(result.image)
    assert out.shape == (pixels.shape[0] + top + bottom, pixels.shape[1] + left + right, 3)
    original = out[top:top + pixels.shape[0], left:left + pixels.shape[1]]
    kept = parsing.labels == LABEL_INDEX["upper_clothes"]
    assert np.array_equal(original[kept], pixels[kept])  # the garment: the photo's own pixels, exactly
    assert (result.kept[top:top + pixels.shape[0], left:left + pixels.shape[1]] > 0).sum() == kept.sum()
    assert result.fidelity is not None and result.fidelity.score > 0.99
    regenerated = result.regenerated > 0
    changed = np.any(np.abs(out.astype(int) - _extended(pixels, result.padding).astype(int)) > 2, axis=-1)
    assert changed[regenerated].mean() > 0.8 and not changed[~regenerated].any()
    assert regenerated[-bottom:].all()  # the new border is painted
    face = np.zeros(out.shape[:2], bool)
    face[top:top + pixels.shape[0], left:left + pixels.shape[1]] = parsing.labels == LABEL_INDEX["face"]
    assert regenerated[face].all()  # the head is the model's, not the photo's
    (request,) = recording.requests
    assert [c.kind for c in request.controls] == ["openpose", "canny"] and request.loras == []
    assert np.array_equal(result.pose[keypoints[:, 2] > 0, :2],
                          keypoints[keypoints[:, 2] > 0, :2] + [left, top])  # visible joints never move
    assert "EasyPhoto digital model: model" in result.infotext and "Seed: 42" in result.infotext
    again = pipeline(gen).render(pixels, DigitalModelInputs(parsing=parsing))
    assert np.array_equal(to_array(again.image), out)


def test_an_identity_as_the_model_sends_its_lora_and_the_face_pass_keeps_the_garment(
        gen, half_body, tiny_sd_dir, tmp_path):
    pixels, _, parsing = half_body
    identity = LoraRef("ada", 1.0, tiny_lora(tiny_sd_dir, tmp_path / "ada.safetensors"))
    faces = []

    def face_pass(canvas, seed):  # paints over everything: only the face region may keep it, never the garment
        faces.append(seed)
        return np.full_like(canvas, 7), "face repainted as ada"

    recording = Recording(gen)
    inputs = DigitalModelInputs(parsing=parsing, identity_lora=identity, identity_trigger="easyphoto_face",
                                face_pass=face_pass)
    result = pipeline(recording, identity_lora_weight=0.7).render(pixels, inputs)
    (request,) = recording.requests
    assert [(lora.name, lora.weight) for lora in request.loras] == [("ada", 0.7)]
    assert request.prompt.startswith("easyphoto_face, a photo of a slim young adult woman")
    assert faces == [42] and "face repainted as ada" in result.notes
    out, kept = to_array(result.image), result.kept > 0
    assert (out[~kept] == 7).all() and not (out[kept] == 7).all()
    plain = pipeline(gen, face_pass=False).render(pixels, DigitalModelInputs(parsing=parsing))
    with_lora = pipeline(gen, face_pass=False).render(pixels, DigitalModelInputs(
        parsing=parsing, identity_lora=identity))
    assert not np.array_equal(to_array(plain.image), to_array(with_lora.image))  # the LoRA changes the pixels


def test_background_regenerated_when_asked_and_scene_swap_keeps_the_person(gen, half_body):
    pixels, _, parsing = half_body
    everything = pipeline(gen, regenerate_background=True, complete_pose=False).render(
        pixels, DigitalModelInputs(parsing=parsing))
    kept = parsing.labels == LABEL_INDEX["upper_clothes"]
    assert everything.padding == (0, 0, 0, 0) and np.array_equal(everything.regenerated > 0, ~kept)
    scene = pipeline(gen, mode="scene").render(pixels, DigitalModelInputs(parsing=parsing))
    person = parsing.labels != 0
    out = to_array(scene.image)
    assert np.array_equal(out[person], pixels[person]) and np.array_equal(scene.regenerated > 0, ~person)
    assert "plain light grey backdrop" in scene.prompt and "fashion model" not in scene.prompt


def test_scene_swap_keeps_the_person_by_matting(gen, half_body):
    require_module("mediapipe", reason="the soft person matte is mediapipe's selfie segmentation")
    from easyphoto.face.mediapipe_stack import MediapipeMatter

    pixels, _, parsing = half_body
    matte = MediapipeMatter().matte(pixels)
    scene = DigitalModelPipeline(gen, DigitalModelConfig(**FAST, mode="scene"), matter=lambda image: matte).render(
        pixels, DigitalModelInputs(parsing=parsing))
    person = parsing.labels != 0
    alpha = np.maximum(person.astype(np.float32), matte)
    out = to_array(scene.image).astype(int)
    assert np.array_equal(scene.regenerated > 0, alpha < 0.5)
    assert (alpha >= 0.5).sum() > person.sum()  # the matte keeps what the parsing missed (the real body's outline)
    assert np.array_equal(out[person], pixels[person])  # the parsing's person: the photo's own pixels
    solid = alpha >= 0.999
    assert np.array_equal(out[solid], pixels[solid]) and not np.array_equal(out[alpha == 0], pixels[alpha == 0])


def test_outfit_swap_puts_the_other_garment_on_its_region_only(gen, half_body, suit):
    pixels, keypoints, parsing = half_body
    labels = parsing.labels.copy()
    labels[-40:][labels[-40:] == LABEL_INDEX["upper_clothes"]] = LABEL_INDEX["skirt"]  # a skirt's waistband
    parsing = Parsing(labels)
    recording = Recording(gen)
    result = pipeline(recording, mode="outfit", outfit_category="lower").render(
        pixels, DigitalModelInputs(parsing=parsing, outfit=suit))
    out = to_array(result.image)
    upper = labels == LABEL_INDEX["upper_clothes"]
    assert np.array_equal(out[upper], pixels[upper]) and not (result.regenerated[upper] > 0).any()
    assert (result.regenerated[labels == LABEL_INDEX["skirt"]] > 0).all()
    assert [lora.name for lora in recording.requests[0].loras] == ["suit"]
    assert recording.requests[0].prompt.startswith("easyphoto, 1thing, white suit")


def test_pose_swap_draws_the_new_pose_with_the_garment_lora(gen, suit, half_body):
    from easyphoto.pose.gallery import gallery_pose, pose_gallery

    recording = Recording(gen)
    name = pose_gallery()[0]
    skeleton = gallery_pose(name, (256, 384))
    result = pipeline(recording, mode="pose").render(None, DigitalModelInputs(
        skeleton=skeleton, pose_size=(256, 384), garment=suit))
    assert result.image.size == (256, 384) and result.kept is None
    (request,) = recording.requests
    assert [c.kind for c in request.controls] == ["openpose"] and [lora.name for lora in request.loras] == ["suit"]
    assert "no clothes parser" in " ".join(result.notes)  # no parser here: the fidelity is said to be missing


def test_body_region_covers_the_limbs_and_the_head():
    body = np.zeros((18, 3), np.float32)
    body[[0, 1, 2, 5, 8, 11], :] = [[50, 20, 1], [50, 40, 1], [35, 40, 1], [65, 40, 1], [42, 90, 1], [58, 90, 1]]
    region = body_region((120, 100), body) > 0
    assert region[40, 50] and region[65, 46] and region[20, 50] and not region[110, 5]


def test_bad_input_fails_before_any_generation(gen, half_body, suit):
    pixels, keypoints, parsing = half_body
    recording = Recording(gen)
    with pytest.raises(masks.EmptyTryOnMask, match="no garment mask"):
        pipeline(recording, mask_source="points").render(pixels, DigitalModelInputs(parsing=parsing))
    background = np.zeros(pixels.shape[:2], np.uint8)
    background[:20, :20] = 255  # a corner of background: no garment in it
    with pytest.raises(NoGarmentInMask, match="covers no garment"):
        pipeline(recording, mask_source="mask").render(pixels, DigitalModelInputs(keep_mask=background,
                                                                                  parsing=parsing))
    blank = np.full((256, 192, 3), 128, np.uint8)
    shirt = np.zeros((256, 192), np.uint8)
    shirt[100:200, 50:150] = LABEL_INDEX["upper_clothes"]
    with pytest.raises(masks.NoPersonFound, match="give a skeleton"):
        pipeline(recording).render(blank, DigitalModelInputs(parsing=Parsing(shirt)))
    with pytest.raises(masks.TryOnInputError, match="needs the garment's LoRA"):
        pipeline(recording, mode="pose").render(None, DigitalModelInputs())
    with pytest.raises(masks.TryOnInputError, match="needs the other garment"):
        pipeline(recording, mode="outfit").render(pixels, DigitalModelInputs(parsing=parsing))
    partial = keypoints.copy()
    partial[:, 2] = 0
    partial[0, 2] = 1
    from easyphoto.pose.skeleton import SkeletonError

    with pytest.raises(SkeletonError, match="right_shoulder"):
        pipeline(recording, mode="pose").render(None, DigitalModelInputs(skeleton=partial, pose_size=(192, 256),
                                                                         garment=suit))
    with pytest.raises(masks.TryOnInputError, match="18 COCO-18 joints"):
        pipeline(recording).render(pixels, DigitalModelInputs(parsing=parsing, skeleton=np.zeros((17, 3))))
    with pytest.raises(GenerationInterrupted):
        pipeline(recording).render(pixels, DigitalModelInputs(parsing=parsing), should_stop=lambda: True)
    assert recording.requests == []


def _extended(pixels: np.ndarray, padding) -> np.ndarray:
    left, top, right, bottom = padding
    out = np.zeros((pixels.shape[0] + top + bottom, pixels.shape[1] + left + right, 3), np.uint8)
    out[top:top + pixels.shape[0], left:left + pixels.shape[1]] = pixels
    return out


def test_a_training_free_face_pass_records_its_method_and_the_face_models_licence(gen, half_body):
    pixels, _, parsing = half_body

    def face_pass(canvas, seed):
        return canvas, "face repainted as ada"

    inputs = DigitalModelInputs(parsing=parsing, face_pass=face_pass)
    free = pipeline(gen, identity_mode="instantid").render(pixels, inputs)
    assert free.face_mode == "instantid"
    assert "EasyPhoto identity mode: instantid" in free.infotext and "non-commercial" in free.infotext
    with_lora = pipeline(gen).render(pixels, inputs)
    assert with_lora.face_mode == "" and "face model licence" not in with_lora.infotext
