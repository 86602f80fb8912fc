"""CatVTON (Chong et al., arXiv 2407.15886; Zheng-Chong/CatVTON, CC BY-NC-SA 4.0), written from the paper and its
published checkpoint layout.

Published files: SD 1.5-inpainting's UNet (9 input channels) and scheduler config; the VAE stabilityai/sd-vae-ft-mse;
and per variant one `attention/model.safetensors` holding only the 16 self-attention layers it trained (49.57M
parameters): keys `{8k}.to_q.weight`, `{8k}.to_k.weight`, `{8k}.to_v.weight`, `{8k}.to_out.0.weight` and
`{8k}.to_out.0.bias`, where k counts the UNet's attn1 modules in module-registration order (down blocks, up blocks,
then the mid block) and the stride of 8 is the number of submodules each one contributed to the trained
ModuleList. Variants: "mix" (mix-48k-1024, 1024×768, the default), "vitonhd" and "dresscode" (512×384).

Inference: no text encoder; every cross-attention returns its input (attention.SkipAttention). Person and garment
are concatenated along the height in latent space (person on top): the 9 input channels are the noisy latent, the
mask (zeros over the garment half) and the masked person's latent over the garment's latent; the unconditional
branch of classifier-free guidance zeroes the garment latent. DDIM with η = 1, 50 steps, guidance 2.5 (the app's
defaults); the top half is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from easyphoto.generation import Progress, ShouldStop, never_stop, no_progress
from easyphoto.tryon.zeroshot.attention import PlainAttention, SkipAttention
from easyphoto.tryon.zeroshot.base import TryOnInputs, keep_outside, release
from easyphoto.tryon.zeroshot.checkpoints import CheckpointError, check_keys, read_weights
from easyphoto.tryon.zeroshot.modules import fill, read_config, unet_from_config, vae_from_config
from easyphoto.tryon.zeroshot.registry import CATVTON
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

INFO = CATVTON
STRIDE = 8  # entries each self-attention layer added to the published ModuleList (itself and its 7 submodules)
TRAINED = ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias")
ETA = 1.0


@dataclass(frozen=True)
class CatVTONFiles:
    unet_dir: Path  # SD 1.5-inpainting unet/ (config.json + diffusion_pytorch_model.safetensors)
    scheduler_config: Path
    vae_dir: Path  # sd-vae-ft-mse (config.json + diffusion_pytorch_model.safetensors)
    attention: Path  # <variant>/attention/model.safetensors


def attention_layers(unet) -> list[str]:
    """The attn1 module names in registration order (named_modules): the order of the published keys."""
    return [name for name, _ in unet.named_modules() if name.endswith(".attn1")]


def published_keys(unet) -> dict[str, str]:
    """{published key: our UNet key} of the trained self-attention weights."""
    mapping = {}
    for index, layer in enumerate(attention_layers(unet)):
        for name in TRAINED:
            mapping[f"{index * STRIDE}.{name}"] = f"{layer}.{name}"
    return mapping


class CatVTONBackend:
    info = INFO

    def __init__(self, files: CatVTONFiles, *, variant: str = "mix", device: str | None = None):
        self.variant = variant
        self.size = INFO.size_of(variant)
        self.device, self.dtype = pick_device(device)
        unet_config = read_config(files.unet_dir / "config.json", "CatVTON's base UNet config")
        if unet_config.get("in_channels") != 9:
            raise CheckpointError(f"CatVTON's base UNet has {unet_config.get('in_channels')} input channels, not the "
                                  "9 of SD 1.5-inpainting.",
                                  hint="Use the unet folder of stable-diffusion-inpainting as CatVTON's base.")
        unet = unet_from_config(unet_config)
        state = dict(read_weights(files.unet_dir / "diffusion_pytorch_model.safetensors"))
        state.update(self._attention_state(unet, files.attention))
        self.unet = fill(unet, state, "CatVTON's UNet", self.device, self.dtype)
        vae_config = read_config(files.vae_dir / "config.json", "CatVTON's VAE config")
        self.vae = fill(vae_from_config(vae_config), read_weights(files.vae_dir / "diffusion_pytorch_model.safetensors"),
                        "CatVTON's VAE (sd-vae-ft-mse)", self.device, self.dtype)
        self.scheduler_config = {**read_config(files.scheduler_config, "CatVTON's scheduler config"),
                                 "clip_sample": False, "set_alpha_to_one": False, "timestep_spacing": "leading",
                                 "prediction_type": "epsilon", "thresholding": False}
        processors = {key: SkipAttention() if key.endswith("attn2.processor") else PlainAttention()
                      for key in self.unet.attn_processors}
        self.unet.set_attn_processor(processors)
        self.evals = EvalCount()

    @staticmethod
    def _attention_state(unet, path: Path) -> dict:
        """The trained attention weights under our UNet's key names, every published key checked first."""
        published = read_weights(path)
        mapping = published_keys(unet)
        expected = unet.state_dict()
        check_keys(published, {key: expected[ours] for key, ours in mapping.items()}, f"CatVTON {path.name}")
        return {mapping[key]: tensor for key, tensor in published.items()}

    @torch.no_grad()
    def run(self, inputs: TryOnInputs, *, steps: int, guidance: float, seed: int, progress: Progress = no_progress,
            should_stop: ShouldStop = never_stop) -> np.ndarray:
        device, dtype = self.device, self.dtype
        person = image_tensor(inputs.person, device, dtype)
        mask = mask_tensor(inputs.mask, device, dtype)
        person_latent = encode(self.vae, person * (mask < 0.5))
        garment_latent = encode(self.vae, image_tensor(inputs.garment, device, dtype))
        mask_latent = F.interpolate(mask, size=person_latent.shape[-2:], mode="nearest")
        masks = torch.cat([mask_latent, torch.zeros_like(mask_latent)], dim=-2)
        conditioned = torch.cat([person_latent, garment_latent], dim=-2)
        use_cfg = guidance > 1.0
        if use_cfg:
            conditioned = torch.cat([torch.cat([person_latent, torch.zeros_like(garment_latent)], dim=-2),
                                     conditioned])
        batch = conditioned.shape[0]
        condition = torch.cat([masks.expand(batch, -1, -1, -1), conditioned], dim=1)
        scheduler = make_scheduler("ddim", self.scheduler_config)

        def predict(latents, t):
            model_input = torch.cat([latents.expand(batch, -1, -1, -1), condition], dim=1)
            noise = self.unet(model_input, t, encoder_hidden_states=None).sample
            self.evals.add("unet", batch)
            return guided(*noise.chunk(2), guidance) if use_cfg else noise

        latents = sample(scheduler, predict, (1, 4, *conditioned.shape[-2:]), steps=steps, seed=seed, device=device,
                         dtype=dtype, progress=progress, should_stop=should_stop, label="CatVTON try-on",
                         step_kwargs={"eta": ETA})
        person_half = latents.chunk(2, dim=-2)[0]
        generated = to_pixels(decode(self.vae, person_half))
        return keep_outside(inputs.person, generated, inputs.mask)

    def unload(self) -> None:
        modules = (self.vae, self.unet)
        self.vae = self.unet = None
        release(*modules)


__all__ = ["INFO", "CatVTONBackend", "CatVTONFiles", "attention_layers", "published_keys"]
