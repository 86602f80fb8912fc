"""Leffa virtual try-on (Zhou et al., arXiv 2412.08486; franciszzj/Leffa, MIT), written from the paper and its
published checkpoint layout.

Published files (Hugging Face franciszzj/Leffa): `virtual_tryon.pth` (VITON-HD) and `virtual_tryon_dc.pth`
(DressCode), each one torch pickle of a flat state dict with exactly three prefixes: `vae.` (SD's VAE),
`unet_encoder.` (the reference UNet: SD 1.5's UNet with a 4-channel conv_in) and `unet.` (the generative UNet:
conv_in widened to 12 channels = noisy latent 4 + mask 1 + masked-person latent 4 + DensePose map 3), plus the
configs of SD 1.5-inpainting in `stable-diffusion-inpainting/{unet,vae,scheduler}`. The pickle is converted to
safetensors once (checkpoints.py) and every key is checked.

Inference (the paper's virtual try-on; defaults of its app: 30 steps, guidance 2.5, DDPM with "leading" spacing):
- no text: every cross-attention returns its input (attention.SkipAttention), in both UNets;
- the reference UNet sees the garment latent at the current timestep; each of its self-attention layers hands its
  tokens to the generative UNet's layer of the same name, which attends over its own and the garment's tokens
  (attention.ReferenceReader);
- classifier-free guidance: the unconditional branch differs only by a zero garment latent; the guided noise is
  then rescaled towards the conditional noise's standard deviation with the guidance scale as the rescale factor,
  as the published pipeline does (reproduced for parity, although it reads like a mix-up with `guidance_rescale`);
- the DensePose input comes from bodyparts.part_map (parsing + pose), an approximation of DensePose's; see there.
`reuse_reference=True` runs the reference UNet once, at the middle timestep (the app's "ref acceleration"):
about 1/3 less work per step, slightly different images; off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from easyphoto.generation import Progress, ShouldStop, never_stop, no_progress
from easyphoto.tryon.zeroshot import bodyparts
from easyphoto.tryon.zeroshot.attention import ReferenceBank, ReferenceReader, ReferenceWriter, SkipAttention
from easyphoto.tryon.zeroshot.base import TryOnInputs, keep_outside, release
from easyphoto.tryon.zeroshot.checkpoints import read_weights
from easyphoto.tryon.zeroshot.modules import fill, read_config, split, unet_from_config, vae_from_config
from easyphoto.tryon.zeroshot.registry import LEFFA
from easyphoto.tryon.zeroshot.sampling import (
    EvalCount,
    decode,
    encode,
    guided,
    image_tensor,
    make_scheduler,
    mask_tensor,
    pick_device,
    sample,
    to_pixels,
)

INFO = LEFFA
PREFIXES = ("vae.", "unet_encoder.", "unet.")
GENERATIVE_CHANNELS = 12  # 4 noisy latent + 1 mask + 4 masked-person latent + 3 DensePose


@dataclass(frozen=True)
class LeffaFiles:
    config_dir: Path  # stable-diffusion-inpainting/ with unet/config.json, vae/config.json, scheduler/...
    weights: Path  # virtual_tryon.pth (or its converted .safetensors)


class LeffaBackend:
    info = INFO

    def __init__(self, files: LeffaFiles, *, variant: str = "viton_hd", device: str | None = None,
                 reuse_reference: bool = False):
        self.variant, self.reuse_reference = variant, reuse_reference
        self.size = INFO.size
        self.device, self.dtype = pick_device(device)
        what = f"Leffa {files.weights.name}"
        unet_config = read_config(files.config_dir / "unet" / "config.json", "Leffa's UNet config")
        vae_config = read_config(files.config_dir / "vae" / "config.json", "Leffa's VAE config")
        scheduler_config = read_config(files.config_dir / "scheduler" / "scheduler_config.json",
                                       "Leffa's scheduler config")
        parts = split(read_weights(files.weights), PREFIXES, what)
        self.vae = fill(vae_from_config(vae_config), parts["vae."], f"{what} (vae.)", self.device, self.dtype)
        self.reference = fill(unet_from_config(unet_config, in_channels=4), parts["unet_encoder."],
                              f"{what} (unet_encoder.)", self.device, self.dtype)
        self.unet = fill(unet_from_config(unet_config, in_channels=GENERATIVE_CHANNELS), parts["unet."],
                         f"{what} (unet.)", self.device, self.dtype)
        self.scheduler_config = {**scheduler_config, "clip_sample": False, "timestep_spacing": "leading"}
        self.bank = ReferenceBank()
        _install(self.reference, self.bank, write=True)
        _install(self.unet, self.bank, write=False)
        self.evals = EvalCount()

    @torch.no_grad()
    def run(self, inputs: TryOnInputs, *, steps: int, guidance: float, seed: int, progress: Progress = no_progress,
            should_stop: ShouldStop = never_stop) -> np.ndarray:
        device, dtype = self.device, self.dtype
        person = image_tensor(inputs.person, device, dtype)
        mask = mask_tensor(inputs.mask, device, dtype)
        masked_latent = encode(self.vae, person * (mask < 0.5))
        garment_latent = encode(self.vae, image_tensor(inputs.garment, device, dtype))
        size = masked_latent.shape[-2:]
        condition = torch.cat([F.interpolate(mask, size=size, mode="nearest"), masked_latent,
                               F.interpolate(image_tensor(self.densepose(inputs), device, dtype), size=size,
                                             mode="nearest")], dim=1)
        use_cfg = guidance > 1.0
        references = torch.cat([torch.zeros_like(garment_latent), garment_latent]) if use_cfg else garment_latent
        batch = references.shape[0]
        scheduler = make_scheduler("ddpm", self.scheduler_config)

        def run_reference(t) -> None:
            self.bank.clear()
            self.reference(references, t, encoder_hidden_states=None)
            self.evals.add("reference unet", batch)

        if self.reuse_reference:
            scheduler.set_timesteps(steps, device=device)
            run_reference(scheduler.timesteps[steps // 2])

        def predict(latents, t):
            if not self.reuse_reference:
                run_reference(t)
            model_input = torch.cat([latents.expand(batch, -1, -1, -1), condition.expand(batch, -1, -1, -1)], dim=1)
            noise = self.unet(model_input, t, encoder_hidden_states=None).sample
            self.evals.add("unet", batch)
            if not use_cfg:
                return noise
            uncond, cond = noise.chunk(2)
            return _rescaled(guided(uncond, cond, guidance), cond, guidance)

        latents = sample(scheduler, predict, tuple(masked_latent.shape), steps=steps, seed=seed, device=device,
                         dtype=dtype, progress=progress, should_stop=should_stop, label="Leffa try-on")
        self.bank.clear()
        generated = to_pixels(decode(self.vae, latents))
        return keep_outside(inputs.person, generated, inputs.mask)

    def densepose(self, inputs: TryOnInputs) -> np.ndarray:
        """The DensePose-style input at the inputs' size: PARULA-coloured (VITON-HD) or raw indices (DressCode)."""
        if inputs.parsing is None:
            parts = np.zeros(inputs.mask.shape, np.uint8)
        else:
            parts = bodyparts.part_map(inputs.parsing, inputs.keypoints)
        return bodyparts.index_image(parts) if self.variant == "dress_code" else bodyparts.parula_image(parts)

    def unload(self) -> None:
        modules = (self.vae, self.reference, self.unet)
        self.vae = self.reference = self.unet = None
        release(*modules)


def _install(unet, bank: ReferenceBank, *, write: bool) -> None:
    processors = {}
    for key in unet.attn_processors:
        layer = key[: -len(".processor")]
        if key.endswith("attn2.processor"):
            processors[key] = SkipAttention()
        else:
            processors[key] = ReferenceWriter(bank, layer) if write else ReferenceReader(bank, layer)
    unet.set_attn_processor(processors)


def _rescaled(noise: torch.Tensor, cond: torch.Tensor, factor: float) -> torch.Tensor:
    """The published pipeline's rescale: noise × (std of cond / std of noise), mixed in by `factor`."""
    dims = list(range(1, noise.ndim))
    rescaled = noise * (cond.std(dim=dims, keepdim=True) / noise.std(dim=dims, keepdim=True))
    return factor * rescaled + (1 - factor) * noise


__all__ = ["INFO", "LeffaBackend", "LeffaFiles"]
