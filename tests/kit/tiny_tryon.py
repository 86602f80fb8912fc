"""Tiny zero-shot try-on models in each backend's PUBLISHED file layout, with random weights.

Why: the real Leffa / CatVTON / OOTDiffusion files are 4–9 GB each on a hub the tests cannot reach, yet what the
loading code must get right is the layout: folder and file names, pickle vs safetensors, the state-dict key names
and prefixes, conv_in widths, the CatVTON attention file's `{8k}.to_q.weight` numbering. Every model here has the
SD 1.5 architecture family of tests/kit/tiny_sd.py (same block types, 100× narrower) and is written the way its
project publishes it, into `<models_root>/<the manifest's subdir>`:

    tryon/leffa/stable-diffusion-inpainting/{unet,vae,scheduler}/...json  tryon/leffa/virtual_tryon{,_dc}.pth
    tryon/catvton/stable-diffusion-inpainting/{unet/(config.json, diffusion_pytorch_model.safetensors),
        scheduler/scheduler_config.json}  tryon/catvton/sd-vae-ft-mse/...  tryon/catvton/<variant>/attention/model.safetensors
    tryon/ootd/checkpoints/ootd/{vae (.bin), text_encoder (.bin), tokenizer, scheduler,
        ootd_hd|ootd_dc/checkpoint-36000/{unet_garm,unet_vton}}  tryon/clip-vit-large-patch14/...
"""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from . import tiny_sd

SEEDS = {"leffa": 40, "catvton": 50, "ootd": 60, "clip": 70}
SD15_CONFIGS = Path(__file__).resolve().parents[2] / "easyphoto" / "sd" / "sd15"
CATVTON_VARIANTS = {"mix": "mix-48k-1024", "vitonhd": "vitonhd-16k-512", "dresscode": "dresscode-16k-512"}


@dataclass(frozen=True)
class Family:
    """The architecture sizes the models are built at: TINY (tests, CPU) or FULL (SD 1.5 and CLIP ViT-L/14 as
    published; bench/tryon.py --real-size on a GPU)."""

    unet: dict
    vae: dict
    text: dict
    vision: dict
    projection_dim: int

    def make_unet(self, in_channels: int, seed: int):
        from diffusers import UNet2DConditionModel

        torch.manual_seed(seed)
        return UNet2DConditionModel(**{**self.unet, "in_channels": in_channels}).eval()

    def make_vae(self, seed: int):
        from diffusers import AutoencoderKL

        torch.manual_seed(seed)
        return AutoencoderKL(**self.vae).eval()

    def make_text_encoder(self, seed: int):
        from transformers import CLIPTextConfig, CLIPTextModel

        torch.manual_seed(seed)
        return CLIPTextModel(CLIPTextConfig(**self.text)).eval()


def _sd15(name: str) -> dict:
    data = json.loads((SD15_CONFIGS / name / "config.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


TINY = Family(tiny_sd.UNET_CONFIG, tiny_sd.VAE_CONFIG, tiny_sd.TEXT_ENCODER_CONFIG,
              {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "image_size": 32, "patch_size": 8, "projection_dim": tiny_sd.CROSS_ATTENTION_DIM},
              tiny_sd.CROSS_ATTENTION_DIM)


def full_family() -> Family:
    """SD 1.5's UNet/VAE/text encoder configs (shipped in easyphoto/sd/sd15) and CLIP ViT-L/14's vision tower."""
    text = {k: v for k, v in _sd15("text_encoder").items() if k in tiny_sd.TEXT_ENCODER_CONFIG or k == "projection_dim"}
    vision = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
              "image_size": 224, "patch_size": 14, "projection_dim": 768}
    return Family(_sd15("unet"), _sd15("vae"), text, vision, 768)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _inpaint_unet_config(family: Family) -> dict:
    return {**family.unet, "in_channels": 9, "_class_name": "UNet2DConditionModel"}


def _prefixed(prefix: str, module) -> dict:
    return {f"{prefix}{key}": tensor.clone() for key, tensor in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------- Leffa


def build_leffa(models_root: Path, family: Family = TINY, variants: int = 2) -> Path:
    """Leffa's layout: SD-inpainting configs (no weights) + one pickled state dict per variant with the prefixes
    vae., unet_encoder. (4-channel conv_in) and unet. (12-channel conv_in)."""
    root = models_root / "tryon" / "leffa"
    configs = root / "stable-diffusion-inpainting"
    _write_json(configs / "unet" / "config.json", _inpaint_unet_config(family))
    _write_json(configs / "vae" / "config.json", {**family.vae, "_class_name": "AutoencoderKL"})
    _write_json(configs / "scheduler" / "scheduler_config.json",
                {**tiny_sd.SCHEDULER_CONFIG, "_class_name": "PNDMScheduler", "skip_prk_steps": True})
    for offset, name in enumerate(("virtual_tryon.pth", "virtual_tryon_dc.pth")[:variants]):
        seed = SEEDS["leffa"] + 3 * offset
        state = OrderedDict()
        state.update(_prefixed("vae.", family.make_vae(seed)))
        state.update(_prefixed("unet_encoder.", family.make_unet(4, seed + 1)))
        state.update(_prefixed("unet.", family.make_unet(12, seed + 2)))
        torch.save(state, root / name)
    return root


# ---------------------------------------------------------------------------------------------- CatVTON


def catvton_attention_state(unet, seed: int) -> dict:
    """The published attention file: every attn1's q/k/v/out weights under `{8k}.`, k in registration order."""
    generator = torch.Generator().manual_seed(seed)
    layers = [module for name, module in unet.named_modules() if name.endswith(".attn1")]
    state = {}
    for index, attn in enumerate(layers):
        for name in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"):
            shape = attn.get_parameter(name).shape
            state[f"{index * 8}.{name}"] = torch.randn(shape, generator=generator) * 0.2
    return state


def build_catvton(models_root: Path, family: Family = TINY, variants: int = 3) -> Path:
    from safetensors.torch import save_file

    root = models_root / "tryon" / "catvton"
    unet = family.make_unet(9, SEEDS["catvton"])
    unet.save_pretrained(str(root / "stable-diffusion-inpainting" / "unet"), safe_serialization=True)
    _write_json(root / "stable-diffusion-inpainting" / "scheduler" / "scheduler_config.json",
                {**tiny_sd.SCHEDULER_CONFIG, "_class_name": "DDIMScheduler"})
    family.make_vae(SEEDS["catvton"] + 1).save_pretrained(str(root / "sd-vae-ft-mse"), safe_serialization=True)
    for offset, folder in enumerate(list(CATVTON_VARIANTS.values())[:variants]):
        target = root / folder / "attention" / "model.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(catvton_attention_state(unet, SEEDS["catvton"] + 10 + offset), str(target))
    return root


# ---------------------------------------------------------------------------------------------- OOTDiffusion

OOTD_SCHEDULER = {
    "_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "lower_order_final": True, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "solver_order": 2, "solver_type": "midpoint", "steps_offset": 1,
    "thresholding": False, "timestep_spacing": "leading", "use_karras_sigmas": True,
}


def build_ootd(models_root: Path, tokenizer_dir: Path, family: Family = TINY, variants: int = 2) -> Path:
    root = models_root / "tryon" / "ootd" / "checkpoints" / "ootd"
    seed = SEEDS["ootd"]
    vae = family.make_vae(seed)
    (root / "vae").mkdir(parents=True)
    _write_json(root / "vae" / "config.json", {**dict(vae.config), "_class_name": "AutoencoderKL"})
    torch.save(vae.state_dict(), root / "vae" / "diffusion_pytorch_model.bin")
    text = family.make_text_encoder(seed + 1)
    (root / "text_encoder").mkdir(parents=True)
    _write_json(root / "text_encoder" / "config.json", text.config.to_dict())
    torch.save(text.state_dict(), root / "text_encoder" / "pytorch_model.bin")
    shutil.copytree(tokenizer_dir, root / "tokenizer")
    _write_json(root / "scheduler" / "scheduler_config.json", OOTD_SCHEDULER)
    for offset, variant in enumerate(("ootd_hd", "ootd_dc")[:variants]):
        units = root / variant / "checkpoint-36000"
        for name, channels, cls in (("unet_garm", 4, "UNetGarm2DConditionModel"),
                                    ("unet_vton", 8, "UNetVton2DConditionModel")):
            unet = family.make_unet(channels, seed + 10 + 2 * offset + (channels == 8))
            unet.save_pretrained(str(units / name), safe_serialization=True)
            config = json.loads((units / name / "config.json").read_text())
            _write_json(units / name / "config.json", {**config, "_class_name": cls})
    build_clip(models_root / "tryon" / "clip-vit-large-patch14", family)
    return root


def build_clip(folder: Path, family: Family = TINY) -> Path:
    """openai/clip-vit-large-patch14's layout: a full CLIPModel (config.json with text_config and vision_config,
    model.safetensors with both towers) and its image preprocessor config."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(SEEDS["clip"])
    text = {key: value for key, value in family.text.items() if key != "projection_dim"}
    config = CLIPConfig(text_config=text, vision_config=family.vision, projection_dim=family.projection_dim)
    model = CLIPModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", config.to_dict())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    _write_json(folder / "preprocessor_config.json", {
        "crop_size": family.vision["image_size"], "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": family.vision["image_size"]})
    return folder


def build_all_tryon(models_root: Path, tokenizer_dir: Path) -> Path:
    """Every backend's tiny files under one models root."""
    build_leffa(models_root)
    build_catvton(models_root)
    build_ootd(models_root, tokenizer_dir)
    return models_root
