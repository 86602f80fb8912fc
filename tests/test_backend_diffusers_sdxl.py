"""The standalone diffusers backend on an SDXL base: SDXL pipelines, SDXL ControlNets, SDXL LoRAs, family checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from easyphoto.backends.diffusers import DiffusersGenerator
from easyphoto.generation import Control, GenerationError, InpaintRequest, LoraRef
from easyphoto.sd import lora
from tests.kit.tiny_sd import torch_threads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def generator(tiny_sdxl_single_file, tiny_sdxl_config_dir, tiny_sdxl_controlnet_dir):
    gen = DiffusersGenerator(tiny_sdxl_single_file, base_config_dir=tiny_sdxl_config_dir,
                             controlnet_paths={"canny": tiny_sdxl_controlnet_dir})
    yield gen
    gen.unload()


def _random_lora(model, prefix: str, path, seed: int, *, sdxl: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key in lora.module_keys(model, prefix, lora.UNET_TARGETS):
        layer = model.get_submodule(key.partition(".")[2])
        out_features, in_features = layer.weight.shape[:2]
        weights[key] = lora.LoraModule(down=torch.randn(2, in_features, generator=generator) * 0.3,
                                       up=torch.randn(out_features, 2, generator=generator) * 0.3, alpha=2.0)
    metadata = {"ss_base_model_version": "sdxl_base_v1-0" if sdxl else "sd_v1"}
    lora.save_lora(path, weights, metadata, dtype=torch.float32)


def _request(**changes) -> InpaintRequest:
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, :32] = (200, 120, 90)
    pixels[16:48, 16:48] = (40, 60, 200)
    image = Image.fromarray(pixels)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    edges = Image.fromarray(np.where(pixels.mean(axis=2, keepdims=True) > 100, 255, 0).astype(np.uint8).repeat(3, 2))
    values = dict(prompt="a photo of a person", image=image, mask=mask, steps=4, denoising_strength=0.6, seed=11,
                  sampler="DPM++ 2M", mask_blur=0, controls=[Control("canny", edges, weight=0.5)], label="pass 1")
    return InpaintRequest(**{**values, **changes})


def test_an_sdxl_base_reports_its_family_and_the_sdxl_controlnets_it_finds(generator):
    capabilities = generator.capabilities()
    assert capabilities.family == "sdxl" and "canny" in capabilities.controls
    assert "no SDXL ControlNet is published for color" in capabilities.missing["color"]
    with pytest.raises(GenerationError, match="color"):
        capabilities.require(["canny", "color"])


def test_an_sdxl_inpaint_with_controlnet_and_lora_keeps_the_unmasked_pixels(generator, tmp_path):
    base = generator._base()
    assert base.family == "sdxl" and base.text_encoder_2 is not None
    path = tmp_path / "sdxl-person.safetensors"
    _random_lora(base.unet, "unet", path, 1, sdxl=True)
    plain = generator.inpaint(_request())[0]
    generator.counter.reset()
    with_lora = generator.inpaint(_request(loras=[LoraRef("sdxl-person", 0.9, path)]))[0]
    assert plain.size == with_lora.size == (64, 64)
    assert generator.counter.controlnet["pass 1"] > 0 and generator.counter.unet["pass 1"] > 0
    a, b = np.asarray(plain, np.int16), np.asarray(with_lora, np.int16)
    assert np.abs(a[20:44, 20:44] - b[20:44, 20:44]).max() > 0  # the LoRA changed the face area
    original = np.asarray(_request().image, np.int16)
    assert np.array_equal(b[:8], original[:8]) and np.array_equal(b[:, :8], original[:, :8])  # outside the mask
    generator.release_loras()


def test_an_sd15_lora_on_an_sdxl_base_is_refused_before_any_weight_changes(generator, tiny_sd_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(tiny_sd_dir), subfolder="unet")
    path = tmp_path / "sd15-person.safetensors"
    _random_lora(unet, "unet", path, 2, sdxl=False)
    before = {k: v.clone() for k, v in generator._base().unet.state_dict().items()}
    with pytest.raises(GenerationError, match="does not fit the base model"):
        generator.inpaint(_request(loras=[LoraRef("sd15-person", 0.9, path)]))
    after = generator._base().unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_an_sdxl_controlnet_file_in_diffusers_names_loads_with_its_own_depth(tiny_sdxl_controlnet_dir, tmp_path):
    """sd_control_collection's diffusers_xl_* files are single files with diffusers' names; the transformer depth
    of each level is read from the tensors (the "mid" model has fewer blocks than the shipped full config)."""
    from safetensors.torch import save_file

    from easyphoto.backends.diffusers import load_controlnet

    net = load_controlnet(tiny_sdxl_controlnet_dir, tiny_sdxl_controlnet_dir, torch.float32)
    single = tmp_path / "diffusers_xl_canny_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(single))
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    config = {**dict(net.config), "transformer_layers_per_block": [5, 5]}  # deeper than the file: read from it
    (config_dir / "config.json").write_text(__import__("json").dumps({k: v for k, v in config.items()
                                                                      if not k.startswith("_")}))
    again = load_controlnet(single, config_dir, torch.float32)
    assert list(again.config.transformer_layers_per_block) == list(net.config.transformer_layers_per_block)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
