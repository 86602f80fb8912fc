"""Tests of the test kit itself: the offline stand-ins must be what they claim to be.

Why: every other test trusts these artefacts. A tokenizer with shifted ids, a single-file
checkpoint that diffusers silently fills from elsewhere, or an ONNX model with the wrong output
order would make the tests above them pass for the wrong reason.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from tests.kit import cache, clip_tokenizer, photos, single_file, tiny_onnx, tiny_sd

# Token ids of OpenAI's CLIP tokenizer (the SD 1.5 tokenizer) for a few prompts.
KNOWN_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "a photo of a dog": [49406, 320, 1125, 539, 320, 1929, 49407],
    "A photo of a man": [49406, 320, 1125, 539, 320, 786, 49407],
}


# --- CLIP tokenizer -------------------------------------------------------------------------


def test_clip_tokenizer_has_the_clip_vocabulary(clip_tokenizer_dir):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(clip_tokenizer_dir))
    assert len(tokenizer) == clip_tokenizer.VOCAB_SIZE == 49408
    assert tokenizer.model_max_length == 77
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (49406, 49407, 49407)
    for prompt, ids in KNOWN_IDS.items():
        assert tokenizer(prompt).input_ids == ids, prompt
    padded = tokenizer("a photo of a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77 and padded[7:] == [49407] * 70


def test_clip_byte_alphabet_is_complete_and_ordered():
    alphabet = clip_tokenizer.bytes_to_unicode()
    assert len(alphabet) == 256 == len(set(alphabet.values()))
    assert alphabet[ord("!")] == "!" and alphabet[ord(" ")] == "Ġ"  # printable bytes map to themselves


def test_vocab_derivation_rejects_a_truncated_table():
    with pytest.raises(ValueError, match="expected 49408"):
        clip_tokenizer.vocab_and_merges(["#version: 0.2", "t h", "i n"])


# --- tiny SD ----------------------------------------------------------------------------------


def test_tiny_sd_folders_have_sd15_architecture(tiny_sd_dir, tiny_inpaint_dir, tiny_controlnet_dirs):
    from diffusers import ControlNetModel, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), local_files_only=True)
    inpaint = StableDiffusionInpaintPipeline.from_pretrained(str(tiny_inpaint_dir), local_files_only=True)
    assert pipe.vae_scale_factor == 8 and pipe.safety_checker is None
    assert pipe.unet.config.in_channels == 4 and inpaint.unet.config.in_channels == 9
    assert "CrossAttnDownBlock2D" in pipe.unet.config.down_block_types
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer) == 49408
    assert tiny_sd.read_model_index(tiny_sd_dir)["requires_safety_checker"] is False
    controlnets = {kind: ControlNetModel.from_pretrained(str(path)) for kind, path in tiny_controlnet_dirs.items()}
    assert set(controlnets) == {"canny", "openpose", "color", "tile", "depth", "seg"}
    canny, openpose = controlnets["canny"].state_dict(), controlnets["openpose"].state_dict()
    assert not torch.equal(canny["controlnet_mid_block.weight"], openpose["controlnet_mid_block.weight"])


def test_tiny_models_are_seed_deterministic():
    first, second = tiny_sd.make_unet().state_dict(), tiny_sd.make_unet().state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    other = tiny_sd.make_unet(seed=99).state_dict()
    assert not torch.equal(first["conv_in.weight"], other["conv_in.weight"])


# --- single-file checkpoint -------------------------------------------------------------------


def _assert_same_weights(loaded, reference, name):
    """Every tensor equal and no key missing/extra: nothing may have been left uninitialised."""
    got, want = loaded.state_dict(), reference.state_dict()
    assert got.keys() == want.keys(), f"{name}: key sets differ: {sorted(set(got) ^ set(want))[:5]}"
    assert not any(tensor.is_meta for tensor in got.values()), f"{name}: weights left on the meta device"
    different = [key for key in want if not torch.equal(got[key], want[key])]
    assert not different, f"{name}: {len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.parametrize(
    ("checkpoint", "config_dir", "reference_dir", "in_channels"),
    [
        ("tiny_single_file", "tiny_sd_config_dir", "tiny_sd_dir", 4),
        ("tiny_inpaint_single_file", "tiny_inpaint_config_dir", "tiny_inpaint_dir", 9),
    ],
    ids=["txt2img", "inpaint"],
)
def test_single_file_loads_back_bit_exactly(request, offline, checkpoint, config_dir, reference_dir, in_channels):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    checkpoint, config_dir, reference_dir = (
        request.getfixturevalue(name) for name in (checkpoint, config_dir, reference_dir)
    )
    assert not list(config_dir.rglob("*.safetensors")), "config folder must not hold weights"
    pipeline_cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline

    loaded = pipeline_cls.from_single_file(str(checkpoint), config=str(config_dir), local_files_only=True)
    reference = pipeline_cls.from_pretrained(str(reference_dir), local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        _assert_same_weights(getattr(loaded, name), getattr(reference, name), name)
    assert loaded.unet.config.in_channels == in_channels


def test_single_file_uses_the_ldm_key_layout(tiny_single_file):
    from safetensors import safe_open

    with safe_open(str(tiny_single_file), "pt") as handle:
        keys = set(handle.keys())
    prefixes = (single_file.UNET_PREFIX, single_file.VAE_PREFIX, single_file.TEXT_PREFIX)
    assert all(key.startswith(prefixes) for key in keys)
    for expected in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "model.diffusion_model.out.2.weight",
        "first_stage_model.encoder.mid.attn_1.q.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_ids",
    ):
        assert expected in keys, expected


@pytest.mark.parametrize("model", ["unet", "vae"])
def test_generated_ldm_yaml_describes_the_checkpoint(offline, tiny_single_file, tiny_sd_dir, model):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cls = UNet2DConditionModel if model == "unet" else AutoencoderKL
    yaml_path = tiny_single_file.with_suffix(".yaml")
    loaded = cls.from_single_file(str(tiny_single_file), original_config=str(yaml_path), local_files_only=True)
    reference = cls.from_pretrained(str(tiny_sd_dir), subfolder=model)
    _assert_same_weights(loaded, reference, model)
    for key in ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types"):
        assert loaded.config[key] == reference.config[key] or list(loaded.config[key]) == list(reference.config[key])


def test_ldm_conversion_refuses_unknown_keys():
    with pytest.raises(KeyError, match="no LDM name"):
        single_file.rename_keys(
            {"mystery.weight": torch.zeros(1)}, {"conv_in.": ("input_blocks.0.0.", {})}, out_prefix=""
        )


# --- ONNX stand-ins ---------------------------------------------------------------------------


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_scrfd_stand_in_has_det_10g_signature(tiny_scrfd_onnx):
    session = _session(tiny_scrfd_onnx)
    (inp,) = session.get_inputs()
    assert inp.name == "input.1" and inp.shape[:2] == [1, 3]
    image = np.random.default_rng(0).uniform(-1, 1, (1, 3, 640, 640)).astype(np.float32)
    outputs = session.run(None, {inp.name: image})
    assert len(outputs) == 9
    for group, (kind, width) in enumerate(tiny_onnx.SCRFD_WIDTHS.items()):
        for index, stride in enumerate(tiny_onnx.SCRFD_STRIDES):
            output = outputs[group * 3 + index]
            assert output.shape == (tiny_onnx.scrfd_rows(640, 640, stride), width), (kind, stride)
    assert outputs[0].shape == (12800, 1) and outputs[5].shape == (800, 4) and outputs[8].shape == (800, 10)
    assert outputs[0].min() >= 0.0 and outputs[0].max() <= 1.0


def test_arcface_stand_in_has_w600k_signature(tiny_arcface_onnx):
    session = _session(tiny_arcface_onnx)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape[1:], out.name, out.shape[1:]) == ("input.1", [3, 112, 112], "683", [512])
    faces = np.random.default_rng(1).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    embeddings = session.run(None, {"input.1": faces})[0]
    assert embeddings.shape == (2, 512) and np.isfinite(embeddings).all()
    assert not np.allclose(embeddings[0], embeddings[1])
    assert np.array_equal(session.run(None, {"input.1": faces})[0], embeddings)


def test_insightface_routes_the_stand_ins_to_the_right_classes(tiny_scrfd_onnx, tiny_arcface_onnx):
    model_zoo = pytest.importorskip("insightface.model_zoo", reason="insightface not installed (optional check)")
    detector = model_zoo.get_model(str(tiny_scrfd_onnx), providers=["CPUExecutionProvider"])
    recognizer = model_zoo.get_model(str(tiny_arcface_onnx), providers=["CPUExecutionProvider"])
    assert type(detector).__name__ == "SCRFD" and detector.use_kps and detector._num_anchors == 2
    assert type(recognizer).__name__ == "ArcFaceONNX" and recognizer.input_mean == recognizer.input_std == 127.5


# --- photos -----------------------------------------------------------------------------------


def _decode(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_real_photos_are_present_and_decode(photo_t1, photo_astronaut, photos_same_man, photo_other_person):
    assert _decode(photo_t1).shape == (886, 1280, 3)
    assert _decode(photo_astronaut).shape == (512, 512, 3)
    assert [path.name for path in photos_same_man] == ["obama.jpg", "obama2.jpg", "obama3.jpg"]
    assert photo_other_person.name == "biden.jpg"
    all_photos = [photo_t1, photo_astronaut, *photos_same_man, photo_other_person]
    for path in all_photos:
        pixels = _decode(path)
        assert min(pixels.shape[:2]) >= 200 and pixels.std() > 20, path
    digests = {hashlib.sha256(path.read_bytes()).hexdigest() for path in all_photos}
    assert len(digests) == len(all_photos)


def test_missing_source_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs foo"):
        photos.skip_or_fail("needs foo")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs foo"):
        photos.skip_or_fail("needs foo")


# --- cache ------------------------------------------------------------------------------------


def test_cache_root_is_wiped_only_on_version_change(tmp_path, monkeypatch):
    root = cache.prepare_root(tmp_path / "kit")
    artefact = cache.cached_dir(root / "thing", lambda tmp: (tmp / "a.txt").write_text("1"))
    assert (artefact / "a.txt").read_text() == "1"
    assert cache.cached_dir(root / "thing", lambda tmp: pytest.fail("rebuilt a cached artefact")) == artefact
    cache.prepare_root(root)
    assert artefact.is_dir()
    monkeypatch.setattr(cache, "KIT_VERSION", cache.KIT_VERSION + "-next")
    cache.prepare_root(root)
    assert not artefact.exists()


def test_cache_never_wipes_a_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="refusing to wipe"):
        cache.prepare_root(tmp_path)
    assert (tmp_path / "precious.txt").exists()


def test_failed_build_leaves_no_artefact(tmp_path):
    def broken(tmp):
        (tmp / "half.txt").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.cached_dir(tmp_path / "thing", broken)
    assert list(tmp_path.iterdir()) == []


# --- acceptance: inpaint + two ControlNets ----------------------------------------------------


@pytest.fixture(scope="module")
def controlnet_inpaint_pipe(tiny_inpaint_dir, tiny_controlnet_dirs):
    """The tiny 9-channel inpaint model with the canny and openpose ControlNets (a MultiControlNet)."""
    from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline

    controlnets = [ControlNetModel.from_pretrained(str(tiny_controlnet_dirs[kind])) for kind in ("canny", "openpose")]
    pipe = StableDiffusionControlNetInpaintPipeline.from_pretrained(
        str(tiny_inpaint_dir), controlnet=controlnets, local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    with tiny_sd.torch_threads(1):
        yield pipe


def _inpaint(pipe, seed, scale=1.0):
    """4 DDIM steps at 64x64: an image, a centre mask, and one hint image per ControlNet."""
    from PIL import Image

    rng = np.random.default_rng(7)
    size = tiny_sd.IMAGE_SIZE
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    hints = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(2)]
    result = pipe(
        prompt="a photo of a person, best quality",
        negative_prompt="blurry",
        image=image,
        mask_image=Image.fromarray(mask),
        control_image=hints,
        controlnet_conditioning_scale=[scale, scale],
        height=size,
        width=size,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return result.images


@pytest.mark.slow
def test_controlnet_inpaint_with_two_controlnets_is_seed_deterministic(controlnet_inpaint_pipe):
    from diffusers.pipelines.controlnet import MultiControlNetModel

    assert isinstance(controlnet_inpaint_pipe.controlnet, MultiControlNetModel)
    assert controlnet_inpaint_pipe.unet.config.in_channels == 9
    first = _inpaint(controlnet_inpaint_pipe, seed=1)
    assert first.shape == (1, 64, 64, 3) and np.isfinite(first).all()
    assert first.min() >= 0.0 and first.max() <= 1.0 and first.std() > 0.0
    assert np.array_equal(_inpaint(controlnet_inpaint_pipe, seed=1), first)
    assert not np.array_equal(_inpaint(controlnet_inpaint_pipe, seed=2), first)
    assert not np.array_equal(_inpaint(controlnet_inpaint_pipe, seed=1, scale=0.0), first), "ControlNets had no effect"
