"""What the three backends' denoising loops share: tensors in and out of the VAE, the scheduler, the loop itself.

    latents = sample(scheduler, predict, shape, steps=50, seed=42, progress=..., should_stop=..., evals=counter)

`predict(latents, t) -> noise` is the backend's (classifier-free guidance included). Noise is drawn on the CPU from
the seed, so a seed gives the same image on every device; the loop polls `should_stop` before every step and
raises GenerationInterrupted (the WebUI's Interrupt and a job cancel both arrive there).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from easyphoto.generation import GenerationInterrupted, Progress, ShouldStop, never_stop, no_progress

SCHEDULERS = ("ddim", "ddpm", "unipc")  # what the three published loops use


class EvalCount:
    """UNet evaluations of one try-on, by UNet (bench/tryon.py prints them next to each paper's defaults)."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def add(self, unet: str, batch: int = 1) -> None:
        self.counts[unet] = self.counts.get(unet, 0) + batch


def make_scheduler(kind: str, config: dict):
    """A diffusers scheduler of `kind` with the base model's noise schedule (its scheduler_config.json)."""
    from diffusers import DDIMScheduler, DDPMScheduler, UniPCMultistepScheduler

    classes = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "unipc": UniPCMultistepScheduler}
    if kind not in classes:
        raise ValueError(f"Unknown scheduler {kind!r}; known: {', '.join(SCHEDULERS)}")
    return classes[kind].from_config(config)


def image_tensor(pixels: np.ndarray, device, dtype) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → (1, 3, H, W) in [-1, 1]."""
    array = torch.from_numpy(np.array(pixels[..., :3], copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0
    return array.unsqueeze(0).to(device=device, dtype=dtype)


def mask_tensor(mask: np.ndarray, device, dtype) -> torch.Tensor:
    """uint8 0/255 (H, W) → (1, 1, H, W) of 0/1."""
    return torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None, None].to(device=device, dtype=dtype)


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] → RGB uint8 (H, W, 3)."""
    array = ((image[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
    return array.cpu().numpy()


def encode(vae, image: torch.Tensor, scaled: bool = True) -> torch.Tensor:
    """The VAE latent of an image in [-1, 1]: the distribution's mean (deterministic per input), times the VAE's
    scaling factor unless `scaled` is False (OOTDiffusion's UNets were trained on unscaled latents)."""
    latent = vae.encode(image.to(vae.dtype)).latent_dist.mode()
    return latent * vae.config.scaling_factor if scaled else latent


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample


def initial_noise(shape: tuple[int, ...], seed: int, device, dtype, scheduler) -> torch.Tensor:
    generator = torch.Generator("cpu").manual_seed(int(seed))
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return (noise * scheduler.init_noise_sigma).to(device=device, dtype=dtype)


def sample(scheduler, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...], *,
           steps: int, seed: int, device, dtype, progress: Progress = no_progress,
           should_stop: ShouldStop = never_stop, label: str = "try-on", step_kwargs: dict | None = None,
           after_step: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
    """The scheduler's loop from seeded noise; see the module docstring. `step_kwargs` go to scheduler.step (DDIM's
    eta); `after_step(latents, index)` may change the latents after each step (OOTDiffusion's repaint)."""
    scheduler.set_timesteps(steps, device=device)
    latents = initial_noise(shape, seed, device, dtype, scheduler)
    timesteps = scheduler.timesteps
    step_generator = torch.Generator("cpu").manual_seed(int(seed) + 1)  # DDPM's and DDIM η>0's per-step noise
    for index, t in enumerate(timesteps):
        if should_stop():
            raise GenerationInterrupted(f"The {label} was interrupted at step {index} of {len(timesteps)}.",
                                        hint="Run it again; nothing was saved for this image.")
        model_input = scheduler.scale_model_input(latents, t)
        noise = predict(model_input, t)
        latents = _step(scheduler, noise, t, latents, step_generator, step_kwargs or {})
        if after_step is not None:
            latents = after_step(latents, index)
        progress((index + 1) / len(timesteps), f"{label}: step {index + 1}/{len(timesteps)}")
    return latents


def _step(scheduler, noise, t, latents, generator, extra: dict) -> torch.Tensor:
    import inspect

    kwargs = {"return_dict": False, **extra}  # diffusers' randn_tensor draws a CPU generator's noise on the CPU, then moves it
    if "generator" in inspect.signature(scheduler.step).parameters:
        kwargs["generator"] = generator
    return scheduler.step(noise, t, latents, **kwargs)[0]


def guided(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance."""
    return uncond + scale * (cond - uncond)


def pick_device(device: str | None = None) -> tuple[str, torch.dtype]:
    """(device, dtype): CUDA in fp16 when there is one, else the CPU in fp32 (or what `device` names)."""
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return name, torch.float16 if name.startswith("cuda") else torch.float32


__all__ = ["SCHEDULERS", "EvalCount", "decode", "encode", "guided", "image_tensor", "initial_noise", "make_scheduler",
           "mask_tensor", "pick_device", "sample", "to_pixels"]
