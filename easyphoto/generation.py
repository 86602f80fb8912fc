"""The seam between the algorithms (portrait, try-on) and a diffusion host (ARCHITECTURE.md §4).

An algorithm builds requests and hands them to a :class:`Generator`; it never knows whether the WebUI
(`backends/webui/`: modules.processing + the host's ControlNet) or diffusers (`backends/diffusers.py`,
standalone) does the work. Requests carry *prepared* condition images: every control map (canny edges, pose
rendering, colour, tile) is computed in-process, so both backends see the same pixels and no host preprocessor has
to download annotator weights at generation time. What every backend must do beyond these signatures (sizes,
determinism per seed, stopping, progress, refusing missing models, LoRAs, counting) is one test suite run against
each of them: tests/test_generator_contract.py.

Torch-free on purpose: importing this module must stay cheap for the WebUI tab and the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from easyphoto.errors import EasyPhotoError

# Control kinds the portrait and try-on pipelines use, and the ControlNet model each one needs (file stems as published;
# hosts append " [hash]"). The model manager's "controlnet" group downloads exactly these.
CONTROLNET_MODELS: dict[str, str] = {
    "canny": "control_v11p_sd15_canny",
    "openpose": "control_v11p_sd15_openpose",
    "color": "control_sd15_random_color",
    "tile": "control_v11f1e_sd15_tile",
    "depth": "control_v11f1p_sd15_depth",  # try-on (easyphoto.tryon): depth maps from easyphoto.tryon.depth
    "seg": "control_v11p_sd15_seg",  # garment design (easyphoto.design): a layout in ADE20K colour coding
}
# The SDXL ControlNets of the same kinds where one is published (file stems as the reference and the WebUI's users
# name them). SDXL portraits use canny (the reference's SDXL pass: diffusers_xl_canny_mid) and pose where present;
# kinds without an SDXL model (color, tile, seg) are left out of SDXL requests by the pipelines.
CONTROLNET_MODELS_SDXL: dict[str, str] = {
    "canny": "diffusers_xl_canny_mid",
    "openpose": "thibaud_xl_openpose_256lora",
    "depth": "diffusers_xl_depth_mid",
}
MODEL_FAMILIES = ("sd15", "sdxl")  # what a base checkpoint is; the ControlNets and LoRAs must be of the same family


def controlnet_models(family: str = "sd15") -> dict[str, str]:
    """Control kind -> ControlNet model stem for a base model of `family` ("sd15" or "sdxl")."""
    if family not in MODEL_FAMILIES:
        raise GenerationError(f"Unknown model family {family!r}.", hint=f"Use one of {MODEL_FAMILIES}.")
    return CONTROLNET_MODELS_SDXL if family == "sdxl" else CONTROLNET_MODELS


CONTROL_MODES = ("balanced", "prompt", "control")  # ControlNet's "Balanced" / "My prompt…" / "ControlNet is…"
INPAINT_FILLS = ("fill", "original", "latent noise", "latent nothing")  # the WebUI's masked-content choices


class GenerationError(EasyPhotoError):
    """A generation request the backend cannot carry out as asked (nothing was generated)."""

    phase = "generate"
    http_status = 422


class GenerationInterrupted(EasyPhotoError):
    """The user stopped the run (Interrupt button, job cancel); whatever finished before is kept."""

    phase = "generate"
    http_status = 409


@dataclass
class Control:
    """One ControlNet condition."""

    kind: str  # a key of CONTROLNET_MODELS
    image: Image.Image  # the prepared condition image (module "none"), the size of the request's image
    weight: float = 1.0  # 0..2, ControlNet's conditioning scale
    start: float = 0.0  # guidance start, fraction of the steps
    end: float = 1.0  # guidance end
    mode: str = "balanced"  # one of CONTROL_MODES

    def __post_init__(self) -> None:
        if self.kind not in CONTROLNET_MODELS:
            raise GenerationError(f"Unknown control kind {self.kind!r}.", hint=f"Use one of {sorted(CONTROLNET_MODELS)}.")
        if self.mode not in CONTROL_MODES:
            raise GenerationError(f"Unknown control mode {self.mode!r}.", hint=f"Use one of {CONTROL_MODES}.")
        if not (0.0 <= self.weight <= 2.0 and 0.0 <= self.start <= self.end <= 1.0):
            raise GenerationError(
                f"Control {self.kind}: weight {self.weight} must be in 0..2 and 0 ≤ start {self.start} ≤ end "
                f"{self.end} ≤ 1."
            )


@dataclass
class IdentityControl:
    """A training-free identity condition (easyphoto.identity_modes): the reference face, turned into the method's
    ControlNet/IP-Adapter unit(s) by the backend with the host's own face preprocessors."""

    method: str  # "instantid" | "faceid" | "pulid"
    face: Image.Image  # the identity's reference face photo (RGB), as the host's face embedder wants it
    weight: float = 0.8
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("instantid", "faceid", "pulid"):
            raise GenerationError(f"Unknown identity method {self.method!r}.",
                                  hint="Use one of instantid, faceid, pulid.")
        if not (0.0 <= self.weight <= 2.0 and 0.0 <= self.start <= self.end <= 1.0):
            raise GenerationError(f"Identity {self.method}: weight {self.weight} must be in 0..2 and 0 ≤ start "
                                  f"{self.start} ≤ end {self.end} ≤ 1.")


@dataclass
class LoraRef:
    """A LoRA by the name the WebUI knows it (file stem in the Lora folder) and, for file-loading backends, its path."""

    name: str
    weight: float
    path: Path | None = None


@dataclass
class Txt2ImgRequest:
    prompt: str
    negative_prompt: str = ""
    loras: list[LoraRef] = field(default_factory=list)  # applied on top of the prompt (no <lora:> tags in it)
    controls: list[Control] = field(default_factory=list)
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = 0  # always fixed by the caller: results must be reproducible
    sampler: str = "DPM++ 2M"
    scheduler: str | None = "Karras"
    width: int = 512
    height: int = 512
    label: str = ""  # the pass name ("pass 1", "pass 2") for progress text and evaluation counts
    identity: IdentityControl | None = None  # training-free identity units, after `controls`


@dataclass
class InpaintRequest(Txt2ImgRequest):
    """Repaint the white part of `mask` in `image`; `width`/`height` default to the image's size."""

    image: Image.Image | None = None
    mask: Image.Image | None = None  # "L", white = repaint
    denoising_strength: float = 0.45
    mask_blur: int = 8  # px, Gaussian; the WebUI's "Mask blur"
    inpainting_fill: str = "original"  # one of INPAINT_FILLS

    def __post_init__(self) -> None:
        if self.image is None or self.mask is None:
            raise GenerationError("An inpaint request needs an image and a mask.")
        if self.mask.size != self.image.size:
            raise GenerationError(f"Mask size {self.mask.size} differs from the image size {self.image.size}.")
        if self.inpainting_fill not in INPAINT_FILLS:
            raise GenerationError(f"Unknown inpainting fill {self.inpainting_fill!r}.", hint=f"Use one of {INPAINT_FILLS}.")
        self.width, self.height = self.image.size
        for control in self.controls:
            if control.image.size != self.image.size:
                raise GenerationError(
                    f"Control {control.kind} image is {control.image.size}, the request's image is {self.image.size}."
                )


@dataclass
class Capabilities:
    backend: str  # "webui-a1111", "webui-forge", "diffusers"
    controls: dict[str, str]  # control kind -> the model name the backend will use
    missing: dict[str, str]  # control kind -> why it is unavailable, with what to do
    max_controls: int  # ControlNet units per generation
    samplers: tuple[str, ...] = ()
    family: str = "sd15"  # the loaded base model's family (MODEL_FAMILIES): which ControlNets and LoRAs fit it
    identity: dict[str, str] = field(default_factory=dict)  # training-free method -> its resolved model names
    identity_missing: dict[str, str] = field(default_factory=dict)  # method -> why it cannot run, with what to do

    def require(self, kinds: list[str] | set[str]) -> None:
        """Raise before any generation when a needed control model is missing (the host would only log it)."""
        absent = [k for k in sorted(set(kinds)) if k not in self.controls]
        if absent:
            reasons = "; ".join(f"{k}: {self.missing.get(k, 'not available')}" for k in absent)
            group = "controlnet_sdxl" if self.family == "sdxl" else "controlnet"
            raise GenerationError(f"Missing ControlNet models for {', '.join(absent)} ({reasons}).",
                                  hint=f"Download them in EasyPhoto → Models (group “{group}”).")

    def require_identity(self, method: str) -> None:
        """Raise before any generation when a training-free identity method cannot run here (its models missing, the
        host's ControlNet without it, a base family it has no models for)."""
        if method not in self.identity:
            why = self.identity_missing.get(method, f"{self.backend} does not support it")
            raise GenerationError(f"Training-free identity ({method}) cannot run: {why}.",
                                  hint="Download its models in EasyPhoto → Models (group “identity”), or use the "
                                       "identity LoRA (identity mode “lora”).")


@dataclass
class EvalCounter:
    """UNet and ControlNet forward evaluations, per pass label (the cost measure of bench/portrait.py).

    One evaluation = one forward call of the network on the whole batch; classifier-free guidance runs the
    conditional and unconditional halves in one call on both backends, so it counts once.
    """

    unet: dict[str, int] = field(default_factory=dict)
    controlnet: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, *, unet: int = 0, controlnet: int = 0) -> None:
        self.unet[label] = self.unet.get(label, 0) + unet
        self.controlnet[label] = self.controlnet.get(label, 0) + controlnet

    def reset(self) -> None:
        self.unet.clear()
        self.controlnet.clear()

    def totals(self) -> dict[str, int]:
        return {"unet": sum(self.unet.values()), "controlnet": sum(self.controlnet.values())}


Progress = Callable[[float, str], None]  # fraction of this request done (0..1), short message
ShouldStop = Callable[[], bool]  # polled between steps; True = stop as soon as possible


def no_progress(fraction: float, message: str) -> None:
    """The default Progress: report nothing."""


def never_stop() -> bool:
    return False


@runtime_checkable
class Generator(Protocol):
    name: str
    counter: EvalCounter

    def capabilities(self) -> Capabilities:
        """Which control kinds have a model, and how many controls one generation may carry."""

    def inpaint(self, req: InpaintRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list[Image.Image]:
        """Images of the request's size; raises GenerationInterrupted if stopped, GenerationError if impossible."""

    def txt2img(self, req: Txt2ImgRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list[Image.Image]: ...


def planned_steps(steps: int, denoising_strength: float | None) -> int:
    """Sampling steps a diffusers img2img run really takes: int(steps × strength) (the WebUI runs one more:
    backends.webui.host_sampling)."""
    if denoising_strength is None:
        return steps
    return max(int(steps * min(denoising_strength, 0.999)), 1) if denoising_strength > 0 else 0


class Upscaler(Protocol):
    """Enlarges an image to side×side; holds its model until `unload()` (a later call loads it again). The WebUI's
    own upscalers (backends.webui.upscaler) and the standalone Real-ESRGAN engines (easyphoto.upscale) are ones."""

    name: str

    def __call__(self, image: Image.Image, side: int) -> Image.Image: ...

    def unload(self) -> None: ...
