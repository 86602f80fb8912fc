"""Minimal double of AUTOMATIC1111/stable-diffusion-webui:modules/sd_samplers_common.py.

``setup_img2img_steps`` is the real rule; ``run_sampler`` (double only) walks the schedule the real samplers walk,
without a model, and counts the denoiser calls:

- k-diffusion samplers (sd_samplers_kdiffusion) get ``steps + 1`` sigmas ending in 0; img2img keeps the last
  ``t_enc + 2`` of them (``sigmas[steps - t_enc - 1:]``), so it takes ``t_enc + 1`` sampler steps. One denoiser call
  per step; second-order samplers (``options["second_order"]``) call it twice, except on a step that ends at
  sigma 0, which is an Euler step. ``DPM++ 2M SDE`` (and its Heun variant) reads ``h`` from a step that never
  happened when its only step ends at sigma 0: k-diffusion raises UnboundLocalError.
- timestep samplers (sd_samplers_timesteps: DDIM, DDIM CFG++, PLMS, UniPC) run ``timesteps[:t_enc]``; progress
  is launched for ``t_enc + 1`` steps.
"""

from collections import namedtuple
from dataclasses import dataclass

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])

TIMESTEP_SAMPLERS = ("DDIM", "DDIM CFG++", "PLMS", "UniPC")
_NEEDS_A_PREVIOUS_STEP = ("DPM++ 2M SDE", "DPM++ 2M SDE Heun")


class Sampler:
    """Base of the real samplers; the double never samples."""

    def __init__(self, funcname):
        self.funcname = funcname
        self.config = None


def setup_img2img_steps(p, steps=None):
    from modules.shared import opts

    if opts.img2img_fix_steps or steps is not None:
        requested_steps = (steps or p.steps)
        steps = int(requested_steps / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        t_enc = requested_steps - 1
    else:
        steps = p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


@dataclass
class SamplerRun:
    """Double only: what one sampling run did. ``steps`` = the progress total the host shows (state.sampling_steps),
    ``evaluations`` = denoiser (UNet) calls."""

    sampler: str
    steps: int
    evaluations: int


def run_sampler(p, img2img):
    """Walk the real sampler's schedule for ``p`` (after the host fixed sampler and scheduler) and count calls."""
    from modules import sd_samplers

    config = sd_samplers.find_sampler_config(p.sampler_name)
    if config is None:
        raise ValueError(f"bad sampler name: {p.sampler_name}")
    if img2img:
        steps, t_enc = setup_img2img_steps(p)
    else:
        steps, t_enc = p.steps, None
    if config.name in TIMESTEP_SAMPLERS:
        return SamplerRun(config.name, steps if t_enc is None else t_enc + 1, steps if t_enc is None else t_enc)
    sigmas = [float(steps - i) for i in range(steps)] + [0.0]  # only "is it the last, zero sigma" matters
    if t_enc is not None:
        sigmas = sigmas[steps - t_enc - 1:]
    evaluations = 0
    took_a_full_step = False
    for i in range(len(sigmas) - 1):
        evaluations += 1
        if sigmas[i + 1] != 0:
            took_a_full_step = True
            if config.options.get("second_order"):
                evaluations += 1
    if config.name in _NEEDS_A_PREVIOUS_STEP and not took_a_full_step:
        raise UnboundLocalError("cannot access local variable 'h' where it is not associated with a value")
    return SamplerRun(config.name, len(sigmas) - 1, evaluations)
