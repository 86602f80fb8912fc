"""The standalone :class:`~easyphoto.generation.Generator`: diffusers 0.31 pipelines on the identity LoRA's base.

    gen = DiffusersGenerator("models/v1-5-pruned-emaonly.safetensors", controlnet_dir=Path("models/ControlNet"))
    gen.capabilities()            # which control kinds have a model here, and what to do about the others
    gen.inpaint(InpaintRequest(...), progress, should_stop)   # -> [PIL image of exactly the request's size]
    gen.unload()

Models load lazily on the first request and stay cached: the base (a diffusers folder or a WebUI single-file SD 1.5
``.safetensors``, read by :func:`easyphoto.sd.base_model.load_base`, offline) and one ControlNet per kind, found
in ``controlnet_dir`` as ``<stem>/`` (diffusers folder) or ``<stem>.safetensors`` / ``<stem>.pth`` (WebUI single
file; stems from :data:`CONTROLNET_MODELS`). A request's LoRAs are baked into the weights
(:func:`easyphoto.sd.lora.apply_webui_style`, the WebUI's own arithmetic): the A1111 pin set (transformers 4.30)
has no diffusers PEFT backend, so ``load_lora_weights`` is not an option. The merged set stays while the next
requests use the same one (same files by path, mtime and size; same multipliers), so both passes of a portrait
merge once; another set, :meth:`~DiffusersGenerator.release_loras`, :meth:`~DiffusersGenerator.unload` or a failed
request puts back the saved copies of the changed weights, bit for bit. ``keep_loras=False`` is the previous
behaviour (merge and unmerge around every request), kept for bench/portrait.py's comparison.

How the WebUI's behaviour is reproduced, and where it is only approximated:

* Inpainting follows img2img "Inpaint masked / whole picture": the mask is Gaussian-blurred by ``mask_blur``, the
  pipeline denoises ``int(steps × strength)`` steps (diffusers' count; the WebUI clamps strength to 0.999, so at
  strength 1 it runs one step fewer), re-imposing the noised original outside the mask after every step (4-channel
  UNet; a 9-channel inpainting UNet gets mask + masked image instead), and the result is composited over the
  original through the blurred mask, so pixels outside it are exactly the input's.
* ``inpainting_fill``: "original" is the natural behaviour; "fill" pre-fills the masked area with the blurred
  colours around it (normalised convolution, in spirit the WebUI's fill); "latent noise" / "latent nothing" replace
  latents, which the diffusers pipelines do not expose, so they are refused unless the strength is 1, where the
  pipeline starts from pure noise and the fill makes no difference.
* Control modes (sd-webui-controlnet): "balanced" scales every ControlNet residual by the weight; "prompt" ("My
  prompt is more important") uses soft injection, residual k of 13 scaled by weight × 10^(k/12 - 1) (diffusers'
  guess-mode ramp 0.1 → 1, close to the extension's 0.825^(12-k)); "control" ("ControlNet is more important") is
  soft injection on the conditional half of the classifier-free-guidance batch only. Both are done per ControlNet by
  hooks around its forward, because diffusers' own ``guess_mode`` is one switch for all of a request's ControlNets.
  A ControlNet still runs (scale 0) outside its guidance start/end, as diffusers does; the counts show that.
* Prompts are encoded by diffusers: no ``(word:1.2)`` attention weighting and no chunking beyond 77 tokens.
* Sizes that are not multiples of 8 are generated on an edge-padded canvas and cropped back.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from easyphoto.errors import EasyPhotoError
from easyphoto.generation import (
    CONTROLNET_MODELS,
    Capabilities,
    Control,
    EvalCounter,
    GenerationError,
    GenerationInterrupted,
    InpaintRequest,
    LoraRef,
    Progress,
    ShouldStop,
    Txt2ImgRequest,
    controlnet_models,
    never_stop,
    no_progress,
)

NAME = "diffusers"
SHIPPED_CONTROLNET_CONFIG = Path(__file__).resolve().parents[1] / "sd" / "sd15" / "controlnet"
SHIPPED_SDXL_CONTROLNET_CONFIG = Path(__file__).resolve().parents[1] / "sd" / "sdxl" / "controlnet"
CONTROLNET_SUFFIXES = (".safetensors", ".pth")
LATENT_FACTOR = 8  # SD's VAE scale factor: pipeline sizes must be multiples of it
LORA_CACHE_SIZE = 4
_NO_SDXL_MODEL = "no SDXL ControlNet is published for {kind}: SDXL portraits go without it"
# Why the standalone backend has no training-free identity mode: InstantID, IP-Adapter-FaceID and PuLID all condition on
# an insightface (ArcFace) embedding, and insightface with its face models is neither installed nor downloadable offline.
TRAINING_FREE_REFUSAL = ("the standalone (diffusers) backend has no training-free identity mode: InstantID, "
                         "IP-Adapter-FaceID and PuLID need insightface face embeddings, which it does not have; use "
                         "the identity LoRA here, or run inside the WebUI with its ControlNet extension")


@dataclass(frozen=True)
class Sampler:
    scheduler: str  # diffusers scheduler class
    options: tuple[tuple[str, Any], ...] = ()
    karras: bool = True  # accepts use_karras_sigmas


# The WebUI's k-diffusion samplers walk sigmas from the top of the noise schedule (t = 999) down to the bottom
# (t = 0, sigma ≈ 0.029): that is diffusers' "linspace" spacing; its Karras sigmas then have the same end points.
# DDIM keeps the base model's own spacing ("leading" + steps_offset 1 for SD 1.5), the WebUI's DDIM discretisation.
_K = (("timestep_spacing", "linspace"),)
# WebUI sampler name -> diffusers scheduler (the correspondence diffusers documents for the k-diffusion samplers).
SAMPLERS: dict[str, Sampler] = {
    "DPM++ 2M": Sampler("DPMSolverMultistepScheduler", (*_K, ("algorithm_type", "dpmsolver++"), ("solver_order", 2))),
    "DPM++ 2M SDE": Sampler("DPMSolverMultistepScheduler",
                            (*_K, ("algorithm_type", "sde-dpmsolver++"), ("solver_order", 2))),
    "Euler a": Sampler("EulerAncestralDiscreteScheduler", _K, karras=False),
    "Euler": Sampler("EulerDiscreteScheduler", _K),
    "DDIM": Sampler("DDIMScheduler", karras=False),
    "UniPC": Sampler("UniPCMultistepScheduler", _K),
}
# The WebUI's "Automatic" schedule type is each sampler's own default: Karras for DPM++ 2M, Exponential for
# DPM++ 2M SDE. diffusers 0.31's exponential sigmas are broken for the multistep solvers (set_timesteps fails, and
# the sigmas come out ascending), so DPM++ 2M SDE gets Karras here: same end points, a similar low-noise density.
AUTOMATIC_SCHEDULES = {"DPM++ 2M": "Karras", "DPM++ 2M SDE": "Karras"}
DEFAULT_SCHEDULES = (None, "", "Automatic")


# ---------------------------------------------------------------------------------------------- samplers


def resolve_sampler(sampler: str, schedule: str | None) -> tuple[str, bool]:
    """(WebUI sampler, schedule type) -> (a key of SAMPLERS, whether to use Karras sigmas).

    Also takes the pre-1.9 combined names ("DPM++ 2M Karras") that older presets carry.
    """
    if sampler.endswith(" Karras") and schedule in DEFAULT_SCHEDULES:
        sampler, schedule = sampler[: -len(" Karras")], "Karras"
    if sampler not in SAMPLERS:
        raise GenerationError(f"Sampler {sampler!r} is not supported by the diffusers backend.",
                              hint=f"Use one of {', '.join(SAMPLERS)}.")
    if schedule in DEFAULT_SCHEDULES:
        schedule = AUTOMATIC_SCHEDULES.get(sampler, "Uniform")
    if schedule not in ("Uniform", "Karras"):
        raise GenerationError(f"Schedule type {schedule!r} is not supported by the diffusers backend.",
                              hint="Use Automatic, Uniform or Karras.")
    if schedule == "Karras" and not SAMPLERS[sampler].karras:
        raise GenerationError(f"Sampler {sampler!r} has no Karras schedule in diffusers.",
                              hint="Set the schedule type to Automatic for this sampler.")
    return sampler, schedule == "Karras"


def make_scheduler(sampler: str, schedule: str | None, base_config: Mapping[str, Any]):
    """A fresh diffusers scheduler for one request, on the base model's noise schedule (betas, offsets)."""
    import diffusers

    name, karras = resolve_sampler(sampler, schedule)
    spec = SAMPLERS[name]
    options = dict(spec.options, **({"use_karras_sigmas": True} if karras else {}))
    return getattr(diffusers, spec.scheduler).from_config(dict(base_config), **options)


# ---------------------------------------------------------------------------------------------- ControlNet files


def find_controlnet(controlnet_dir: Path, stem: str) -> Path | None:
    """``<dir>/<stem>/`` with a config.json, else ``<dir>/<stem>.safetensors`` or ``.pth``; None if none is there."""
    folder = controlnet_dir / stem
    if (folder / "config.json").is_file():
        return folder
    return next((p for p in (controlnet_dir / f"{stem}{s}" for s in CONTROLNET_SUFFIXES) if p.is_file()), None)


def _expected_files(controlnet_dir: Path, stem: str) -> str:
    return (f"put {stem}.pth or {stem}.safetensors (or a diffusers folder {stem}/ with config.json) "
            f"into {controlnet_dir}")


def read_state_dict(path: Path) -> dict:
    """Tensors of a single-file checkpoint. A ``.pth`` is a pickle: only tensors and plain containers are
    unpickled (``weights_only``), so a tampered file cannot run code."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # Lightning-style wrapping
        state = state["state_dict"]
    return state


DIFFUSERS_CONTROLNET_KEY = "controlnet_cond_embedding.conv_in.weight"


def controlnet_config_for(state: Mapping[str, Any], config: dict) -> dict:
    """The ControlNet config of a diffusers-format state dict: the family's shipped config with the transformer
    depth of each level read from the tensors, so the "mid" and "small" SDXL ControlNets (fewer transformer
    blocks than the full one) load against the same shipped file."""
    import re

    depth: dict[str, int] = {}
    for key in state:
        found = re.match(r"(down_blocks\.\d+|mid_block)\.attentions\.0\.transformer_blocks\.(\d+)\.", key)
        if found:
            depth[found[1]] = max(depth.get(found[1], 0), int(found[2]) + 1)
    levels = len(config["block_out_channels"])
    per_level = [depth.get(f"down_blocks.{i}", 0) for i in range(levels)]
    if not any(per_level):
        return config
    kinds = ["CrossAttnDownBlock2D" if n else "DownBlock2D" for n in per_level]
    return {**config, "down_block_types": kinds, "transformer_layers_per_block": [max(n, 1) for n in per_level]}


def _controlnet_from_diffusers_state(state: dict, config_dir: Path, dtype):
    import json

    from diffusers import ControlNetModel

    shipped = json.loads((Path(config_dir) / "config.json").read_text(encoding="utf-8"))
    config = controlnet_config_for(state, {k: v for k, v in shipped.items() if not k.startswith("_")})
    net = ControlNetModel.from_config(config)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{len(missing)} tensors missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                         f"(e.g. {unexpected[:2]}) for the {config_dir.parent.name} ControlNet layout")
    return net.to(dtype)


def load_controlnet(path: Path, config_dir: Path, dtype):
    """A ControlNetModel from a diffusers folder, or from a WebUI single file against a local config (offline)."""
    from diffusers import ControlNetModel

    from easyphoto.sd.base_model import BaseModelError, require_safetensors

    if path.is_dir():  # safetensors only: a diffusion_pytorch_model.bin in it would be unpickled
        try:
            require_safetensors(path, "diffusion_pytorch_model", what=f"The ControlNet folder {path.name}")
        except BaseModelError as exc:
            raise GenerationError(exc.message, hint=exc.hint) from None
    try:
        if path.is_dir():
            return ControlNetModel.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True,
                                                   use_safetensors=True)
        state = read_state_dict(path)
        if DIFFUSERS_CONTROLNET_KEY in state:  # a single file with diffusers' own names (SDXL "diffusers_xl_*")
            return _controlnet_from_diffusers_state(state, config_dir, dtype)
        return ControlNetModel.from_single_file(state, config=str(config_dir), torch_dtype=dtype,
                                                local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise GenerationError(f"The ControlNet {path.name} could not be loaded: {type(exc).__name__}: {exc}",
                              hint="The file may be incomplete or not an SD 1.5 ControlNet; download it again.") from exc


# ---------------------------------------------------------------------------------------------- images


def padded_size(width: int, height: int) -> tuple[int, int]:
    up = LATENT_FACTOR
    return -(-width // up) * up, -(-height // up) * up


def pad_to(image: Image.Image, size: tuple[int, int], *, edge: bool = True) -> Image.Image:
    """Extend right/bottom to `size`: by repeating the edge (images, control maps) or with black (masks)."""
    if image.size == size:
        return image
    array = np.asarray(image)
    pad = [(0, size[1] - image.height), (0, size[0] - image.width)] + [(0, 0)] * (array.ndim - 2)
    return Image.fromarray(np.pad(array, pad, mode="edge" if edge else "constant"))


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """The WebUI's "Mask blur": a Gaussian of `radius` px on the L mask."""
    mask = mask.convert("L")
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def composite(generated: Image.Image, original: Image.Image, soft_mask: Image.Image) -> Image.Image:
    """generated × m + original × (1 − m): outside the (blurred) mask the original's pixels come back unchanged."""
    m = np.asarray(soft_mask.convert("L"), np.float32)[..., None] / 255.0
    out = np.asarray(generated.convert("RGB"), np.float32) * m + np.asarray(original.convert("RGB"), np.float32) * (1 - m)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _box_1d(array: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a window of 2r+1 along `axis` (edge-padded), via cumulative sums: O(n) for any radius."""
    pad = [(0, 0)] * array.ndim
    pad[axis] = (radius + 1, radius)
    sums = np.cumsum(np.pad(array, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = array.shape[axis]
    upper = np.take(sums, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    return (upper - np.take(sums, np.arange(n), axis=axis)) / (2 * radius + 1)


def _smooth(array: np.ndarray, radius: int) -> np.ndarray:
    """Three box passes per axis: close to a Gaussian, and cheap at the large radii the fill needs."""
    for axis in (0, 1):
        for _ in range(3):
            array = _box_1d(array, radius, axis)
    return array


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The "fill" masked content: masked pixels take the blurred colours of the unmasked ones around them.

    Normalised convolution from coarse to fine radii: the coarse pass reaches every masked pixel, each finer pass
    overrides it wherever enough unmasked neighbours are close, so edges continue smoothly into the hole.
    """
    keep = (np.asarray(mask.convert("L")) < 128).astype(np.float32)
    if keep.all() or not keep.any():
        return image
    rgb = np.asarray(image.convert("RGB"), np.float32)
    out, hole = rgb.copy(), keep == 0
    for radius in sorted({max(image.size), 32, 8, 2}, reverse=True):
        weight = _smooth(keep, radius)
        colour = _smooth(rgb * keep[..., None], radius) / np.maximum(weight, 1e-6)[..., None]
        reached = hole & (weight > 0.01)
        out[reached] = colour[reached]
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------- the generator


class DiffusersGenerator:
    """:class:`~easyphoto.generation.Generator` on diffusers: lazy, cached models; one request at a time."""

    name = NAME

    def __init__(
        self,
        base: Path | str,
        *,
        controlnet_dir: Path | str | None = None,
        controlnet_paths: Mapping[str, Path | str] | None = None,
        device: str = "cpu",
        dtype: Any = None,
        base_config_dir: Path | str | None = None,
        controlnet_config_dir: Path | str | None = None,
        keep_loras: bool = True,
    ):
        """`base`: diffusers folder or SD 1.5 ``.safetensors``; `controlnet_dir`: where ControlNets are looked up by
        stem; `controlnet_paths`: kind -> file/folder, overriding the lookup; `dtype`: torch dtype or its name
        (default float16 on CUDA, float32 otherwise); `base_config_dir` / `controlnet_config_dir`: the local
        diffusers configs for single files (default: the shipped SD 1.5 ones); `keep_loras`: keep a merged LoRA set
        for the next request (False: merge and unmerge around every request, the previous behaviour)."""
        self.base = Path(base)
        self.controlnet_dir = Path(controlnet_dir) if controlnet_dir is not None else None
        self.controlnet_paths = {k: Path(v) for k, v in (controlnet_paths or {}).items()}
        unknown = sorted(set(self.controlnet_paths) - set(CONTROLNET_MODELS))
        if unknown:
            raise GenerationError(f"Unknown control kinds {unknown} in controlnet_paths.",
                                  hint=f"Use kinds of {sorted(CONTROLNET_MODELS)}.")
        self.device = device
        self._dtype_spec = dtype
        self.base_config_dir = Path(base_config_dir) if base_config_dir is not None else None
        from easyphoto.sd.family import model_family

        self.family = model_family(self.base)  # from the header: SDXL picks SDXL ControlNets and pipelines
        shipped = SHIPPED_SDXL_CONTROLNET_CONFIG if self.family == "sdxl" else SHIPPED_CONTROLNET_CONFIG
        self.controlnet_config_dir = Path(controlnet_config_dir or shipped)
        self.counter = EvalCounter()
        self._lock = threading.Lock()  # LoRA merging mutates shared weights: one request at a time
        self._label: str | None = None  # the running request's label; hooks count only while it is set
        self._base_model = None
        self._lora_keys: list[str] = []
        self._controlnets: dict[Path, Any] = {}
        self._hooks: list[Any] = []
        self._loras: OrderedDict[tuple, Any] = OrderedDict()
        self.keep_loras = keep_loras
        self.lora_applications = 0  # LoRA sets merged into the weights (bench/portrait.py shows it per portrait)
        self._merged: MergedLoras | None = None

    # ------------------------------------------------------------------------------------------ protocol

    def capabilities(self) -> Capabilities:
        controls, missing = {}, {}
        for kind in CONTROLNET_MODELS:
            stem = controlnet_models(self.family).get(kind)
            path, reason = self._controlnet_path(kind, stem) if stem else (None, _NO_SDXL_MODEL.format(kind=kind))
            if path is not None:
                controls[kind] = path.name
            else:
                missing[kind] = reason
        return Capabilities(backend=NAME, controls=controls, missing=missing,
                            max_controls=len(CONTROLNET_MODELS), samplers=tuple(SAMPLERS), family=self.family,
                            identity_missing={m: TRAINING_FREE_REFUSAL for m in ("instantid", "faceid", "pulid")})

    def inpaint(self, req: InpaintRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list[Image.Image]:
        self._validate(req)
        _check_fill(req)
        if not 0 < req.denoising_strength <= 1:
            raise GenerationError(f"Denoising strength {req.denoising_strength} must be in (0, 1].")
        if int(req.steps * req.denoising_strength) < 1:
            raise GenerationError(f"{req.steps} steps at strength {req.denoising_strength} leave no step to run.",
                                  hint="Raise the steps or the denoising strength.")
        size = padded_size(req.width, req.height)
        soft_mask = blur_mask(req.mask, req.mask_blur)
        init = req.image.convert("RGB")
        if req.inpainting_fill == "fill":
            init = fill_masked(init, soft_mask)
        call = {
            "image": pad_to(init, size),
            "mask_image": pad_to(soft_mask, size, edge=False),
            "strength": req.denoising_strength,
        }
        if req.controls:
            call["control_image"] = _control_images(req.controls, (req.width, req.height), size)
        generated = self._generate(req, call, size, inpaint=True, progress=progress, should_stop=should_stop)
        return [composite(generated.crop((0, 0, req.width, req.height)), req.image, soft_mask)]

    def txt2img(self, req: Txt2ImgRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list[Image.Image]:
        self._validate(req)
        size = padded_size(req.width, req.height)
        call = {"image": _control_images(req.controls, (req.width, req.height), size)} if req.controls else {}
        generated = self._generate(req, call, size, inpaint=False, progress=progress, should_stop=should_stop)
        return [generated.crop((0, 0, req.width, req.height))]

    def unload(self) -> None:
        """Take out a merged LoRA set and drop every cached model (and the LoRA cache); the next request loads
        again."""
        with self._lock:
            self._release_loras()
            for handle in self._hooks:
                handle.remove()
            self._hooks.clear()
            self._controlnets.clear()
            self._loras.clear()
            self._base_model = None
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------------------ checks

    def _validate(self, req: Txt2ImgRequest) -> None:
        """Everything that can be refused without loading a model: a bad request fails at once, not after loading."""
        resolve_sampler(req.sampler, req.scheduler)
        if req.identity is not None:
            self.capabilities().require_identity(req.identity.method)
        self.capabilities().require([c.kind for c in req.controls])
        if req.steps < 1 or req.width < LATENT_FACTOR or req.height < LATENT_FACTOR:
            raise GenerationError(f"{req.steps} steps at {req.width}x{req.height}: need ≥ 1 step and ≥ 8 px.")
        for ref in req.loras:
            if ref.path is None:
                raise GenerationError(f"LoRA {ref.name!r} has no file path; the diffusers backend loads LoRA files.")
            if not Path(ref.path).is_file():
                raise GenerationError(f"LoRA {ref.name!r}: {ref.path} does not exist.")
        if not self.base.exists():
            raise GenerationError(f"The base model {self.base} does not exist.",
                                  hint="Download an SD 1.5 checkpoint or point the backend at one.")

    def _controlnet_path(self, kind: str, stem: str) -> tuple[Path | None, str]:
        if kind in self.controlnet_paths:
            path = self.controlnet_paths[kind]
            return (path, "") if path.exists() else (None, f"{path} does not exist")
        if self.controlnet_dir is None:
            return None, f"no ControlNet folder is configured for the diffusers backend (it looks for {stem})"
        found = find_controlnet(self.controlnet_dir, stem)
        return (found, "") if found else (None, _expected_files(self.controlnet_dir, stem))

    # ------------------------------------------------------------------------------------------ models

    def _dtype(self):
        import torch

        spec = self._dtype_spec
        if spec is None:
            return torch.float16 if self.device.startswith("cuda") else torch.float32
        return getattr(torch, spec) if isinstance(spec, str) else spec

    def _count_hook(self, network: str) -> Callable:
        def hook(module, args, output):
            if self._label is not None:
                self.counter.add(self._label, **{network: 1})

        return hook

    def _base(self):
        if self._base_model is None:
            from easyphoto.sd.base_model import load_base
            from easyphoto.sd.lora import TEXT_TARGETS, UNET_TARGETS, module_keys

            try:
                base = load_base(self.base, config_dir=self.base_config_dir, dtype=self._dtype(), device=self.device,
                                 allow_inpaint=True, allow_sdxl=True)
            except EasyPhotoError as exc:
                raise GenerationError(exc.message, hint=exc.hint) from exc
            self._hooks.append(base.unet.register_forward_hook(self._count_hook("unet")))
            # The module keys decode kohya names of LoRA files written by other trainers (no easyphoto metadata).
            self._lora_keys = module_keys(base.unet, "unet", UNET_TARGETS)
            for prefix, encoder in _lora_models(base).items():
                if prefix != "unet":
                    self._lora_keys += module_keys(encoder, prefix, TEXT_TARGETS)
            self._base_model = base
        return self._base_model

    def _controlnet(self, kind: str):
        stem = controlnet_models(self.family).get(kind, "")
        path, reason = self._controlnet_path(kind, stem)
        if path is None:  # deleted since _validate
            raise GenerationError(f"Missing ControlNet model for {kind} ({reason}).")
        if path not in self._controlnets:
            net = load_controlnet(path, self.controlnet_config_dir, self._dtype()).to(self.device).eval()
            net.requires_grad_(False)
            self._hooks.append(net.register_forward_hook(self._count_hook("controlnet")))
            self._controlnets[path] = net
        return self._controlnets[path]

    def _lora(self, ref: LoraRef) -> tuple[tuple, Any]:
        """(cache key, weights) of the LoRA, cached by path, modification time and size (a retrained LoRA is read
        again)."""
        from easyphoto.sd.lora import LoraFormatError, load_lora

        path = Path(ref.path).resolve()
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._loras:
            try:
                weights = load_lora(path, keys=self._lora_keys)[0]
            except LoraFormatError as exc:
                raise GenerationError(f"LoRA {ref.name!r}: {exc.message}", hint=exc.hint) from exc
            _check_lora_fits(self._base(), weights, ref.name)
            self._loras[key] = weights
            while len(self._loras) > LORA_CACHE_SIZE:
                self._loras.popitem(last=False)
        self._loras.move_to_end(key)
        return key, self._loras[key]

    # ------------------------------------------------------------------------------------------ LoRA sets

    def release_loras(self) -> None:
        """Put back the base weights a kept LoRA set changed (exactly: from the saved copies)."""
        with self._lock:
            self._release_loras()

    def _release_loras(self) -> None:
        merged, self._merged = self._merged, None
        if merged is not None:
            _restore_weights(merged.backups)

    def _keep_merged(self, base, loras: list[tuple[tuple, Any, float]]) -> None:
        """Make `loras` ((key, weights, multiplier) in request order) the merged set, unless it already is.

        A different set is taken out first and the new one merged onto the restored base, in order: the weights
        are then bit for bit those a fresh generator would merge for this request.
        """
        key = tuple((lora_key, multiplier) for lora_key, _, multiplier in loras)
        if self._merged is not None and self._merged.key == key:
            return
        self._release_loras()
        if not loras:
            return
        models = _lora_models(base)
        pairs = [(weights, multiplier) for _, weights, multiplier in loras]
        # Recorded before the first change: a failure halfway through is restored from these copies too.
        self._merged = MergedLoras(key, _backup_weights(models, pairs))
        _apply_all(models, pairs)
        self.lora_applications += 1

    def _lora_context(self, base, loras: list[tuple[tuple, Any, float]]):
        """The request's LoRAs for the pipeline run: kept merged, or (keep_loras=False) merged around it only."""
        if self.keep_loras:
            self._keep_merged(base, loras)
            return contextlib.nullcontext()
        self._release_loras()  # a set kept before the switch to per-request merging
        self.lora_applications += bool(loras)
        return merged_loras(base, [(weights, multiplier) for _, weights, multiplier in loras])

    # ------------------------------------------------------------------------------------------ running

    def _generate(self, req: Txt2ImgRequest, call: dict, size: tuple[int, int], *, inpaint: bool,
                  progress: Progress, should_stop: ShouldStop) -> Image.Image:
        """Load what the request needs, then run the pipeline with LoRAs merged and the counters on."""
        with self._lock:
            if should_stop():
                raise GenerationInterrupted(f"{req.label or 'generation'} stopped before it started.")
            try:
                return self._run(req, call, size, inpaint=inpaint, progress=progress, should_stop=should_stop)
            except BaseException:
                self._release_loras()  # whatever failed, the base weights are left exactly as loaded
                raise

    def _run(self, req: Txt2ImgRequest, call: dict, size: tuple[int, int], *, inpaint: bool,
             progress: Progress, should_stop: ShouldStop) -> Image.Image:
        """The request under the lock: models, LoRA set, pipeline call."""
        import torch

        base = self._base()
        scheduler = make_scheduler(req.sampler, req.scheduler, base.noise_scheduler.config)
        nets = [self._controlnet(c.kind) for c in req.controls]
        loras = [(*self._lora(ref), float(ref.weight)) for ref in req.loras]
        pipe = _pipeline(base, scheduler, nets, inpaint=inpaint)
        call.update(
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            width=size[0],
            height=size[1],
            num_inference_steps=req.steps,
            guidance_scale=req.cfg_scale,
            generator=torch.Generator("cpu").manual_seed(int(req.seed)),
            callback_on_step_end=_step_callback(req.label, progress, should_stop),
            output_type="pil",
        )
        if nets:
            call.update(_control_arguments(req.controls, single=len(nets) == 1))
        with ExitStack() as stack:
            stack.enter_context(self._lora_context(base, loras))
            stack.enter_context(control_modes(req.controls, nets, cfg=req.cfg_scale > 1))
            stack.enter_context(self._counting(req.label))
            return pipe(**call).images[0]

    @contextmanager
    def _counting(self, label: str) -> Iterator[None]:
        self._label = label
        try:
            yield
        finally:
            self._label = None


# ---------------------------------------------------------------------------------------------- pipeline pieces


def _lora_models(base) -> dict:
    """LoRA key prefix -> the model its modules live in (SDXL adds the second text encoder)."""
    models = {"unet": base.unet, "text_encoder": base.text_encoder}
    if getattr(base, "text_encoder_2", None) is not None:
        models["text_encoder_2"] = base.text_encoder_2
    return models


def _pipeline(base, scheduler, nets: list, *, inpaint: bool):
    """The diffusers pipeline for this request, built around the cached models (construction is cheap)."""
    import diffusers

    parts = {"vae": base.vae, "text_encoder": base.text_encoder, "tokenizer": base.tokenizer, "unet": base.unet,
             "scheduler": scheduler}
    sdxl = getattr(base, "family", "sd15") == "sdxl"
    if sdxl:  # the second encoder and tokenizer; the 4-channel UNet inpaints by blending, as SD 1.5's does
        parts.update(text_encoder_2=base.text_encoder_2, tokenizer_2=base.tokenizer_2)
        if inpaint:
            parts["requires_aesthetics_score"] = False
    else:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    family = "StableDiffusionXL" if sdxl else "StableDiffusion"
    if nets:
        name = f"{family}ControlNetInpaintPipeline" if inpaint else f"{family}ControlNetPipeline"
        parts["controlnet"] = nets[0] if len(nets) == 1 else _multi_controlnet(nets)
    else:
        name = f"{family}InpaintPipeline" if inpaint else f"{family}Pipeline"
    pipe = getattr(diffusers, name)(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _multi_controlnet(nets: list):
    try:
        from diffusers.pipelines.controlnet import MultiControlNetModel  # diffusers ≤ 0.31
    except ImportError:  # pragma: no cover - later diffusers moved it
        from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
    return MultiControlNetModel(nets)


def _control_images(controls: list[Control], request_size: tuple[int, int], size: tuple[int, int]) -> Any:
    """Condition images at the request's size (resized if a caller made them otherwise), padded like the image."""
    images = [c.image.convert("RGB") for c in controls]
    images = [pad_to(i if i.size == request_size else i.resize(request_size, Image.LANCZOS), size) for i in images]
    return images[0] if len(images) == 1 else images


def _control_arguments(controls: list[Control], *, single: bool) -> dict:
    """Per-control scale and guidance window; one ControlNet takes a float scale, a MultiControlNet a list."""
    scales = [float(c.weight) for c in controls]
    return {
        "controlnet_conditioning_scale": scales[0] if single else scales,
        "control_guidance_start": [float(c.start) for c in controls],
        "control_guidance_end": [float(c.end) for c in controls],
    }


def _step_callback(label: str, progress: Progress, should_stop: ShouldStop) -> Callable:
    """callback_on_step_end: report "label step i/n"; stop by raising, so the remaining steps and the VAE decode
    are skipped (diffusers' own ``_interrupt`` flag would still decode)."""

    def on_step_end(pipe, step: int, timestep, tensors: dict) -> dict:
        total = max(int(getattr(pipe, "num_timesteps", 0) or 0), step + 1)
        progress((step + 1) / total, f"{label} step {step + 1}/{total}".strip())
        if should_stop():
            pipe._interrupt = True
            raise GenerationInterrupted(f"{label or 'generation'} stopped after step {step + 1}/{total}.")
        return tensors

    return on_step_end


def _check_fill(req: InpaintRequest) -> None:
    if req.inpainting_fill in ("latent noise", "latent nothing") and req.denoising_strength < 1:
        raise GenerationError(
            f"Masked content {req.inpainting_fill!r} is not supported by the diffusers backend below strength 1.",
            hint="Use 'original' or 'fill', or denoising strength 1 (pure noise: every fill is the same there).",
        )


# ---------------------------------------------------------------------------------------------- LoRA merging


@dataclass(frozen=True)
class MergedLoras:
    """A LoRA set kept merged: its key ((file key, multiplier) per LoRA, in order) and the copies to restore."""

    key: tuple
    backups: list[tuple[Any, Any]]


def _apply_all(models: dict, loras: list[tuple[dict, float]]) -> None:
    """Merge each (weights, multiplier) into every model, in order."""
    from easyphoto.sd.lora import apply_webui_style

    for weights, multiplier in loras:
        for prefix, model in models.items():
            apply_webui_style(model, prefix, weights, multiplier)


@contextmanager
def merged_loras(base, loras: list[tuple[dict, float]]) -> Iterator[None]:
    """Bake each (weights, multiplier) into the UNet and text encoder for the block; always take them out again.

    The per-request behaviour (``keep_loras=False``); kept generators use :class:`MergedLoras` instead.

    float32 weights are restored by subtracting the same ΔW (exact to float rounding). Half-precision weights are
    restored from copies instead: subtracting in fp16 leaves a rounding error per request that would random-walk
    the base model over a long session.
    """
    import torch

    from easyphoto.sd.lora import apply_webui_style, unapply_webui_style

    models = _lora_models(base)
    exact = all(next(m.parameters()).dtype in (torch.float32, torch.float64) for m in models.values())
    backups = [] if exact else _backup_weights(models, loras)
    applied: list[tuple[str, dict, float]] = []
    try:
        for weights, multiplier in loras:
            for prefix, model in models.items():
                apply_webui_style(model, prefix, weights, multiplier)
                applied.append((prefix, weights, multiplier))
        yield
    finally:
        if exact:
            for prefix, weights, multiplier in reversed(applied):
                unapply_webui_style(models[prefix], prefix, weights, multiplier)
        else:
            _restore_weights(backups)


def _target_weight(models: dict, key: str):
    """The weight a LoRA module key ("unet.<path>") changes, or None if the model has no such layer."""
    prefix, _, path = key.partition(".")
    try:
        module = models[prefix].get_submodule(path)
    except (KeyError, AttributeError):
        return None
    weight = getattr(getattr(module, "base_layer", module), "weight", None)
    return weight if weight is not None and weight.ndim in (2, 4) else None


def _check_lora_fits(base, weights: dict, name: str) -> None:
    """Refuse a LoRA for another architecture before any weight changes.

    apply_webui_style checks that the layers exist but meets a wrong shape only halfway through its loop, after
    changing earlier layers; here every ΔW shape (out, in, kh, kw) is compared to its weight first.
    """
    models = _lora_models(base)
    for key, module in weights.items():
        weight = _target_weight(models, key)
        shape = (int(module.up.shape[0]), *(int(d) for d in module.down.shape[1:]))
        if weight is None or tuple(weight.shape) != shape:
            found = "no such layer" if weight is None else f"the layer is {tuple(weight.shape)}"
            raise GenerationError(f"LoRA {name!r} does not fit the base model: {key} changes a {shape} weight, "
                                  f"{found}.", hint="Use a LoRA trained on this base model's family (SD 1.5 LoRAs "
                                  "on SD 1.5 bases, SDXL LoRAs on SDXL bases).")


def _touched_weights(models: dict, loras: list[tuple[dict, float]]) -> dict[str, Any]:
    return {key: _target_weight(models, key) for weights, _ in loras for key in weights}


def _backup_weights(models: dict, loras: list[tuple[dict, float]]) -> list[tuple[Any, Any]]:
    """(parameter, CPU copy) of every weight a LoRA will change: host memory, not scarce GPU memory."""
    import torch

    with torch.no_grad():
        return [(weight, weight.detach().to("cpu", copy=True)) for weight in _touched_weights(models, loras).values()]


def _restore_weights(backups: list[tuple[Any, Any]]) -> None:
    import torch

    with torch.no_grad():
        for weight, saved in backups:
            weight.copy_(saved.to(weight.device))


# ---------------------------------------------------------------------------------------------- control modes


@contextmanager
def control_modes(controls: list[Control], nets: list, *, cfg: bool) -> Iterator[None]:
    """Per-ControlNet "prompt" / "control" modes through forward hooks, removed when the block ends.

    "prompt": the ControlNet is called with guess_mode=True, which in ``ControlNetModel.forward`` only scales its 13
    residuals by the 0.1 → 1 ramp (soft injection); the pipeline, told nothing, still applies them to both CFG halves.
    "control": the same, plus the unconditional half's residuals are zeroed (the pipeline concatenates
    [negative, positive]), which is what diffusers' guess_mode does for all ControlNets at once.
    If one ControlNet model serves two controls in a request, the first non-balanced mode applies to both.
    """
    handles = []
    seen: set[int] = set()
    try:
        for control, net in zip(controls, nets, strict=True):
            if control.mode == "balanced" or id(net) in seen:
                continue
            seen.add(id(net))
            handles.append(net.register_forward_pre_hook(_soft_injection, with_kwargs=True))
            if control.mode == "control" and cfg:
                handles.append(net.register_forward_hook(_conditional_half_only))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _soft_injection(module, args, kwargs):
    return args, {**kwargs, "guess_mode": True}


def _conditional_half_only(module, args, output):
    import torch

    down, mid = output[0], output[1]

    def cond_only(tensor):
        half = tensor.shape[0] // 2
        return torch.cat([torch.zeros_like(tensor[:half]), tensor[half:]])

    return [cond_only(t) for t in down], cond_only(mid)
