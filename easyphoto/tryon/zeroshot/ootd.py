"""OOTDiffusion (Xu et al., arXiv 2403.01779; levihsu/OOTDiffusion, CC BY-NC-SA 4.0), written from the paper and its
published checkpoint layout.

Published files (Hugging Face levihsu/OOTDiffusion, `checkpoints/ootd/`): `vae/` and `text_encoder/` (SD 1.5's,
pickled .bin: converted to safetensors once), `tokenizer/`, `scheduler/scheduler_config.json` (a DPM-Solver config
the app runs as UniPC), and per variant `ootd_hd|ootd_dc/checkpoint-36000/{unet_garm,unet_vton}/` (config.json +
diffusion_pytorch_model.safetensors, diffusers' UNet2DConditionModel keys; the outfitting UNet has 4 input
channels, the denoising UNet 8 = noisy latent + masked-person latent). The garment's CLIP image embedding comes from
openai/clip-vit-large-patch14 (config.json, model.safetensors, preprocessor_config.json), fetched separately.
Variants: "hd" (VITON-HD, half-body, upper garments only) and "dc" (Dress Code: upper, lower, dress).

Inference:
- conditioning: "hd": the text encoder's states of an empty prompt ([BOS, EOS]) with the EOS slot replaced by the
  garment's projected CLIP image embedding; "dc": the states of "upperbody" / "lowerbody" / "dress" (3 tokens) with
  the image embedding appended. Both UNets cross-attend to it; guidance does not change it;
- outfitting fusion: the outfitting UNet runs once, at timestep 0, on the garment latent (and a zero latent for the
  unconditional branch); each of its transformer blocks hands its input tokens (before the block's first
  LayerNorm) to the denoising UNet's block of the same name, whose self-attention attends over its own tokens and
  the garment's, both normalised by its own LayerNorm (attention.ReferenceReader with `norm`);
- latents of the garment and of the masked person (mask painted grey) are the VAE's unscaled means, as trained;
- UniPC, 20 steps, guidance 2.0 (the app's defaults); after every step the latents outside the mask are replaced by
  the person's own latent noised to the next timestep (the published repaint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from easyphoto.generation import Progress, ShouldStop, never_stop, no_progress
from easyphoto.tryon.masks import TryOnInputError
from easyphoto.tryon.zeroshot.attention import ReferenceBank, ReferenceReader
from easyphoto.tryon.zeroshot.base import TryOnInputs, keep_outside, release
from easyphoto.tryon.zeroshot.checkpoints import CheckpointError, read_weights
from easyphoto.tryon.zeroshot.modules import empty, fill, fill_clip, read_config, unet_from_config, vae_from_config
from easyphoto.tryon.zeroshot.registry import OOTD
from easyphoto.tryon.zeroshot.sampling import (
    EvalCount,
    decode,
    encode,
    guided,
    image_tensor,
    initial_noise,
    make_scheduler,
    mask_tensor,
    pick_device,
    sample,
    to_pixels,
)

INFO = OOTD
VARIANT_CATEGORIES = INFO.categories
DC_WORDS = {"upper": "upperbody", "lower": "lowerbody", "dress": "dress"}
MASK_GREY = 127


@dataclass(frozen=True)
class OOTDFiles:
    root: Path  # checkpoints/ootd/ (vae, text_encoder, tokenizer, scheduler, ootd_hd, ootd_dc)
    clip_dir: Path  # clip-vit-large-patch14/


class OOTDBackend:
    info = INFO

    def __init__(self, files: OOTDFiles, *, variant: str = "hd", device: str | None = None):
        if variant not in VARIANT_CATEGORIES:
            raise ValueError(f"Unknown OOTDiffusion variant {variant!r}; known: {', '.join(VARIANT_CATEGORIES)}")
        self.variant, self.size = variant, INFO.size
        self.device, self.dtype = pick_device(device)
        root = files.root
        units = root / f"ootd_{variant}" / "checkpoint-36000"
        self.garm = self._unet(units / "unet_garm", 4)
        self.vton = self._unet(units / "unet_vton", 8)
        self.vae = fill(vae_from_config(read_config(root / "vae" / "config.json", "OOTDiffusion's VAE config")),
                        read_weights(_weights_file(root / "vae", "diffusion_pytorch_model")), "OOTDiffusion's VAE",
                        self.device, self.dtype)
        self.text_encoder, self.tokenizer = self._text(root)
        self.image_encoder, self.image_processor = self._clip(files.clip_dir)
        self.scheduler_config = {**read_config(root / "scheduler" / "scheduler_config.json",
                                               "OOTDiffusion's scheduler config"), "final_sigmas_type": "sigma_min"}
        self.bank = ReferenceBank()
        self._hooks = _record_block_inputs(self.garm, self.bank)
        _read_with_own_norm(self.vton, self.bank)
        self.evals = EvalCount()

    def _unet(self, folder: Path, channels: int):
        config = read_config(folder / "config.json", f"OOTDiffusion's {folder.name} config")
        if config.get("in_channels") != channels:
            raise CheckpointError(f"OOTDiffusion's {folder.name} has {config.get('in_channels')} input channels, not "
                                  f"{channels}.", hint="The folder is not the published OOTDiffusion UNet.")
        return fill(unet_from_config(config), read_weights(folder / "diffusion_pytorch_model.safetensors"),
                    f"OOTDiffusion {folder.parent.parent.name}/{folder.name}", self.device, self.dtype)

    def _text(self, root: Path):
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        config = CLIPTextConfig.from_dict(read_config(root / "text_encoder" / "config.json",
                                                      "OOTDiffusion's text encoder config"))
        model = fill_clip(empty(lambda: CLIPTextModel(config)),
                          read_weights(_weights_file(root / "text_encoder", "pytorch_model", "model")),
                          "OOTDiffusion's text encoder", self.device, torch.float32)
        return model, CLIPTokenizer.from_pretrained(str(root / "tokenizer"))

    def _clip(self, folder: Path):
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        raw = read_config(folder / "config.json", "CLIP ViT-L/14's config")
        vision = dict(raw.get("vision_config", raw))  # the published file is the whole CLIPModel's config
        if "projection_dim" in raw:  # the projection CLIPModel's visual_projection (whose weights load) uses
            vision["projection_dim"] = raw["projection_dim"]
        config = CLIPVisionConfig.from_dict(vision)
        model = fill_clip(empty(lambda: CLIPVisionModelWithProjection(config)),
                          _vision_state(read_weights(_weights_file(folder, "model", "pytorch_model"))),
                          "CLIP ViT-L/14 image encoder", self.device, torch.float32)
        processor = CLIPImageProcessor.from_pretrained(str(folder))
        return model, processor

    def check_category(self, category: str) -> None:
        if category not in VARIANT_CATEGORIES[self.variant]:
            raise TryOnInputError(f"OOTDiffusion's {self.variant!r} model was trained on "
                                  f"{'/'.join(VARIANT_CATEGORIES[self.variant])} garments only, not {category!r}.",
                                  hint="Use the 'dc' variant (Dress Code) for lower garments and dresses.")

    @torch.no_grad()
    def conditioning(self, garment: np.ndarray, category: str) -> torch.Tensor:
        pixels = self.image_processor(images=garment, return_tensors="pt").pixel_values.to(self.device)
        image = self.image_encoder(pixel_values=pixels).image_embeds.unsqueeze(1)
        words, length = ("", 2) if self.variant == "hd" else (DC_WORDS[category], 3)
        ids = self.tokenizer([words], max_length=length, padding="max_length", truncation=True,
                             return_tensors="pt").input_ids.to(self.device)
        text = self.text_encoder(ids).last_hidden_state
        if self.variant == "hd":
            text = text.clone()
            text[:, 1:] = image
            return text.to(self.dtype)
        return torch.cat([text, image], dim=1).to(self.dtype)

    @torch.no_grad()
    def run(self, inputs: TryOnInputs, *, steps: int, guidance: float, seed: int, progress: Progress = no_progress,
            should_stop: ShouldStop = never_stop) -> np.ndarray:
        self.check_category(inputs.category)
        device, dtype = self.device, self.dtype
        embeds = self.conditioning(inputs.garment, inputs.category)
        grey = np.where((inputs.mask > 127)[..., None], np.uint8(MASK_GREY), inputs.person).astype(np.uint8)
        garment_latent = encode(self.vae, image_tensor(inputs.garment, device, dtype), scaled=False)
        person_latent = encode(self.vae, image_tensor(grey, device, dtype), scaled=False)
        original = encode(self.vae, image_tensor(inputs.person, device, dtype))
        mask = F.interpolate(mask_tensor(inputs.mask, device, dtype), size=original.shape[-2:], mode="nearest")
        use_cfg = guidance >= 1.0
        garments = torch.cat([garment_latent, torch.zeros_like(garment_latent)]) if use_cfg else garment_latent
        batch = garments.shape[0]
        embeds = embeds.expand(batch, -1, -1)
        self.bank.clear()
        self.garm(garments, torch.zeros((), device=device), encoder_hidden_states=embeds)
        self.evals.add("outfitting unet", batch)
        scheduler = make_scheduler("unipc", self.scheduler_config)
        noise = initial_noise(tuple(original.shape), seed, device, dtype, scheduler) / scheduler.init_noise_sigma

        def predict(latents, t):
            model_input = torch.cat([latents.expand(batch, -1, -1, -1), person_latent.expand(batch, -1, -1, -1)], 1)
            out = self.vton(model_input, t, encoder_hidden_states=embeds).sample
            self.evals.add("denoising unet", batch)
            if not use_cfg:
                return out
            cond, uncond = out.chunk(2)
            return guided(uncond, cond, guidance)

        def repaint(latents, index):
            timesteps = scheduler.timesteps
            kept = original
            if index + 1 < len(timesteps):
                kept = scheduler.add_noise(original, noise, timesteps[index + 1:index + 2])
            return (1 - mask) * kept + mask * latents

        latents = sample(scheduler, predict, tuple(original.shape), steps=steps, seed=seed, device=device,
                         dtype=dtype, progress=progress, should_stop=should_stop, label="OOTDiffusion try-on",
                         after_step=repaint)
        self.bank.clear()
        generated = to_pixels(decode(self.vae, latents))
        return keep_outside(inputs.person, generated, inputs.mask)

    def unload(self) -> None:
        for hook in self._hooks:
            hook.remove()
        modules = (self.garm, self.vton, self.vae, self.text_encoder, self.image_encoder)
        self.garm = self.vton = self.vae = self.text_encoder = self.image_encoder = None
        release(*modules)


def _weights_file(folder: Path, *stems: str) -> Path:
    """The folder's weight file: a .safetensors one first (ours, converted), else the published pickle."""
    for stem in stems:
        for suffix in (".safetensors", ".bin"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return folder / f"{stems[0]}.bin"  # missing: read_weights names it


def _vision_state(state: dict) -> dict:
    """openai/clip-vit-large-patch14's model.safetensors is the full CLIPModel: keep the vision tower and its
    projection (CLIPVisionModelWithProjection's keys)."""
    if any(key.startswith("text_model.") for key in state):
        return {key: value for key, value in state.items() if key.startswith(("vision_model.", "visual_projection."))}
    return state


def _transformer_blocks(unet) -> list[tuple[str, torch.nn.Module]]:
    return [(name, module) for name, module in unet.named_modules() if type(module).__name__ == "BasicTransformerBlock"]


def _record_block_inputs(unet, bank: ReferenceBank) -> list:
    """Forward pre-hooks that store each transformer block's input tokens under its attn1's name."""
    hooks = []
    for name, block in _transformer_blocks(unet):
        def record(module, args, kwargs, layer=f"{name}.attn1"):
            bank.tokens[layer] = args[0] if args else kwargs["hidden_states"]
        hooks.append(block.register_forward_pre_hook(record, with_kwargs=True))
    return hooks


def _read_with_own_norm(unet, bank: ReferenceBank) -> None:
    processors = dict(unet.attn_processors)
    for name, block in _transformer_blocks(unet):
        processors[f"{name}.attn1.processor"] = ReferenceReader(bank, f"{name}.attn1", norm=block.norm1)
    unet.set_attn_processor(processors)


__all__ = ["INFO", "OOTDBackend", "OOTDFiles"]
