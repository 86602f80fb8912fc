"""What the WebUI's sampler runs for a request: its steps (the progress total) and its UNet evaluations.

Mirrors the host's own arithmetic (sd_samplers_common.setup_img2img_steps and the k-diffusion loop), so the
generator can refuse a schedule the host cannot run and count evaluations it cannot observe.
"""

from __future__ import annotations

import dataclasses

# Samplers of the host's sd_samplers_timesteps; all others are k-diffusion samplers (sd_samplers_kdiffusion).
_TIMESTEP_SAMPLERS = frozenset({"DDIM", "DDIM CFG++", "PLMS", "UniPC"})
MIN_HOST_STEPS = 2  # DPM++ 2M SDE crashes in k-diffusion on a one-step schedule (UnboundLocalError on 'h')


@dataclasses.dataclass(frozen=True)
class HostSampling:
    """What the host's sampler runs for a request: `steps` (its progress total) and `evaluations` (UNet calls)."""

    sampler: str
    steps: int
    evaluations: int


def host_samplers() -> tuple[str, ...]:
    """The sampler names the host offers (informative: empty on an unusual host)."""
    try:
        from modules import sd_samplers

        return tuple(sd_samplers.all_samplers_map)
    except Exception:  # an unusual host: the list is informative only
        return ()


def sampler_config(name: str) -> tuple[str, bool]:
    """(canonical sampler name, second order?) the host's way: a legacy "DPM++ 2M Karras" is split first."""
    try:
        from modules import sd_samplers

        canonical, _ = sd_samplers.get_sampler_and_scheduler(name, None)
        config = sd_samplers.find_sampler_config(canonical)
    except Exception:  # an unusual host: count it as a first-order sampler under the given name
        return name, False
    if config is None:
        return name, False
    return config.name, bool(config.options.get("second_order"))


def host_sampling(sampler: str, steps: int, denoising_strength: float | None, *, fix_steps: bool = False) -> HostSampling:
    """The sampler steps and UNet evaluations A1111 / Forge run (sd_samplers_common.setup_img2img_steps and the
    k-diffusion loop): img2img keeps `t_enc = int(steps × min(strength, 0.999))` and runs `t_enc + 1` steps (with
    the "img2img_fix_steps" option: exactly `steps`); txt2img runs `steps`. Second-order k-diffusion samplers
    (Heun, DPM2, DPM++ SDE, ...) evaluate twice per step except the last one, which ends at sigma 0; timestep
    samplers (DDIM, PLMS, UniPC) evaluate `t_enc` times in img2img. Adaptive ones (DPM adaptive) cannot be known
    in advance and count as first order."""
    name, second_order = sampler_config(sampler)
    if denoising_strength is None:
        run = evaluations = int(steps)
    else:
        t_enc = int(steps) - 1 if fix_steps else int(min(denoising_strength, 0.999) * steps)
        run = t_enc + 1
        evaluations = t_enc if name in _TIMESTEP_SAMPLERS else run
    if second_order and name not in _TIMESTEP_SAMPLERS and evaluations > 0:
        evaluations = 2 * evaluations - 1
    return HostSampling(name, run, evaluations)
