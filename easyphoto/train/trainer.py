"""The LoRA trainer core (SD 1.5 and SDXL): peft LoRA on the UNet (and the text encoders), AdamW, constant LR, exact
resume.

    train_lora(base, dataset_dir, out_dir, config, steps=N, progress=, should_stop=, on_checkpoint=, resume=)

What it does per optimizer step (reference §3.4): `gradient_accumulation_steps` micro-steps of `batch_size`
samples each; a sample is a dataset photo or its mirror image, VAE-encoded (latents sampled from the encoder's
distribution, times the VAE scaling factor), noised at a uniform random timestep of the model's DDPM schedule;
the loss is the MSE between the UNet's prediction and the noise (or the velocity for v-prediction models). Then
gradient clipping at norm 1.0 and one AdamW step (β 0.9/0.999, weight decay 1e-2, ε 1e-8), UNet LoRA at
`learning_rate`, text encoder LoRA at `text_encoder_learning_rate`. `steps` counts optimizer steps.

SDXL (``base.family == "sdxl"``): the UNet's text condition is the penultimate hidden states of both text
encoders side by side, plus the second encoder's pooled projection and six size numbers (the photo's size, the
crop's corner, the bucket's size); photos are resized into aspect-ratio buckets of about resolution² pixels
(`load_bucketed`) instead of a centre square, and micro-steps of different bucket sizes run as one forward per
size. LoRA keys are "text_encoder." and "text_encoder_2." for the two encoders (kohya lora_te1_/lora_te2_).

Determinism, which is what makes resume exact: nothing depends on a global RNG or on how many steps ran before
in this process. The LoRA initialisation comes from a generator seeded by (seed, "init"); the order of samples
is, per epoch, a permutation from a generator seeded by (seed, epoch); the flip choice, the VAE sample, the
noise and the timesteps of micro-step m come from a generator seeded by (seed, m). A run resumed from the
checkpoint of step N (LoRA tensors in float32 + AdamW state) therefore continues exactly like the uninterrupted
run would have (bit-identical on CPU in float32).

Files in `out_dir` (all written atomically):

    step-000100.safetensors         the LoRA at step 100, kohya/WebUI format (float32), metadata with the step
    step-000100.optim.safetensors   AdamW state as tensors; param groups/names/scaler as JSON in the metadata
    state.json                      last step, seed, config snapshot, targets, dataset fingerprint, checkpoints
                                    (with the validation score `on_checkpoint` returned for each)

Pruning (each checkpoint is ~0.9 GB at the defaults): after every checkpoint only these files stay: the last
checkpoint with its optimizer state (what resume needs), the LoRAs of the `merge_top_k` best-scored checkpoints
(what the merge at the end may use; a checkpoint that falls out of them never comes back, scores being final) and
the `keep_checkpoints` best ones (best-scored first, else the latest). `prune_checkpoints(..., finished=True)`,
called once the LoRA is exported, keeps only the `keep_checkpoints` LoRAs. Entries stay in state.json either way.

No pickle anywhere. Speed levers (TrainConfig), each described in TrainConfig and listed by `levers_in_use`:

- exact (the same learned weights up to float rounding; each one tested against the lever-off run):
  cache_latents, batch_micro_steps, shared_text_pass, shared_cross_attention, small_conv_matmul (these two in
  easyphoto.train.kernels), fused_optimizer, channels_last, gradient_checkpointing, attention, low_vram, and one
  host-device sync per optimizer step (the loss is read once per step, not per micro-step);
- not exact, labelled so: mixed_precision (fp16/bf16 autocast; bf16 also on a CPU with bf16 instructions), tf32;
- opt-in: compile_unet (torch.compile of the UNet's training pass; its compile time is reported).

Batched micro-steps draw every random number from the same (seed, micro-step) generators as the one-by-one
path and average the same per-sample losses, so the gradient is the same sum; so is the shared text pass, which
runs the text encoder once per caption and step, lets every micro-step's backward stop at its output, and sends
the summed gradient through the text encoder once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from easyphoto.config import TrainConfig
from easyphoto.errors import EasyPhotoError
from easyphoto.sd import lora
from easyphoto.sd.base_model import BaseModel
from easyphoto.store import atomic_path, atomic_write_json, read_json
from easyphoto.train import kernels
from easyphoto.train.lora import ADAPTER, from_peft, load_into_peft

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1
ADAM_BETAS = (0.9, 0.999)
ADAM_WEIGHT_DECAY = 1e-2
ADAM_EPS = 1e-8
MAX_GRAD_NORM = 1.0
# Fields whose change makes a resumed run a different training (checked against state.json on resume).
RESUME_FIELDS = (
    "rank",
    "network_alpha",
    "learning_rate",
    "text_encoder_learning_rate",
    "train_text_encoder",
    "resolution",
    "batch_size",
    "gradient_accumulation_steps",
)
_CHECKPOINT_RE = re.compile(r"step-(\d{6})(\.optim)?\.safetensors")

Progress = Callable[[int, int, float], None]
ShouldStop = Callable[[], bool]
OnCheckpoint = Callable[[int, Path], Any]  # may return the checkpoint's validation score (float or None)
OnTiming = Callable[[str, int, float], None]  # ("step" | "checkpoint", step, seconds): the speed readout's input
MERGE_TOP_K = 3  # checkpoints the merge can use (easyphoto.train.pipeline passes its own MERGE_TOP_K)


class TrainError(EasyPhotoError):
    phase = "train"
    http_status = 422


@dataclass
class TrainResult:
    final_checkpoint: Path
    steps: int  # optimizer steps completed in total (including those before a resume)
    losses: list[float] = field(default_factory=list)  # one per optimizer step run by this call
    checkpoints: list[Path] = field(default_factory=list)  # every checkpoint of the training, oldest first
    seconds_per_step: float = 0.0  # wall time per optimizer step in this call, checkpoints excluded
    step_seconds: list[float] = field(default_factory=list)  # wall time of each optimizer step of this call
    levers: list[str] = field(default_factory=list)  # the speed levers in effect (levers_in_use)
    seed: int = 0
    resumed_from: int = 0  # the step this call started after (0 = fresh)


# ---------------------------------------------------------------------------------------------- randomness


def _seed_for(seed: int, kind: str, index: int) -> int:
    digest = hashlib.sha256(f"easyphoto-train:{kind}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _generator(seed: int, kind: str, index: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(_seed_for(seed, kind, index))


class _SampleOrder:
    """Sample s of the endless sample stream = item perm(seed, s // n)[s % n]; a fresh permutation per epoch."""

    def __init__(self, seed: int, count: int):
        self.seed, self.count = seed, count
        self._perms: dict[int, list[int]] = {}

    def __call__(self, sample: int) -> int:
        epoch, position = divmod(sample, self.count)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.count, generator=_generator(self.seed, "epoch", epoch)).tolist()}
        return self._perms[epoch][position]


# ---------------------------------------------------------------------------------------------- dataset


@dataclass
class _Item:
    image: Path
    caption: str


def read_dataset(dataset_dir: Path) -> list[_Item]:
    """The (image, caption) pairs of a prepared dataset (easyphoto.train.dataset's metadata.jsonl)."""
    dataset_dir = Path(dataset_dir)
    meta = dataset_dir / "metadata.jsonl"
    if not meta.is_file():
        raise TrainError(f"The dataset {dataset_dir} has no metadata.jsonl.", hint="Prepare the dataset first.")
    items = []
    for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image, caption = dataset_dir / record["file_name"], str(record["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TrainError(f"{meta} line {number} is not a dataset record ({exc}).",
                             hint="Prepare the dataset again.") from exc
        if not image.is_file():
            raise TrainError(f"The dataset image {image} listed in {meta.name} is missing.",
                             hint="Prepare the dataset again.")
        items.append(_Item(image, caption))
    if not items:
        raise TrainError(f"The dataset {dataset_dir} is empty.", hint="Prepare the dataset first (photos kept > 0).")
    return items


def dataset_fingerprint(items: list[_Item]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.image.name.encode() + b"\0" + item.caption.encode() + b"\0")
        digest.update(hashlib.sha256(item.image.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _load_pixels(path: Path, resolution: int) -> torch.Tensor:
    """[3, res, res] float32 in [-1, 1]; non-square images are centre-cropped first."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        side = min(image.size)
        if image.width != image.height:
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        if side != resolution:
            image = image.resize((resolution, resolution), Image.LANCZOS)
        array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous() / 127.5 - 1.0


@dataclass(frozen=True)
class SampleSize:
    """An SDXL training image's size conditioning (the UNet's six "time ids"): the photo's size, where the crop
    starts in the resized photo, and the bucket's size; all in pixels, (height, width) order."""

    original: tuple[int, int]
    crop_top_left: tuple[int, int]
    target: tuple[int, int]
    resized_width: int  # the photo's width once resized to cover the bucket

    def time_ids(self, flipped: bool) -> list[int]:
        top, left = self.crop_top_left
        if flipped:  # the mirror image's crop starts as far from the other edge
            left = self.resized_width - left - self.target[1]
        return [*self.original, top, left, *self.target]


def bucket_for(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(width, height) of the aspect-ratio bucket for a photo: sides multiples of a step (64 px at 1024, as SDXL's
    training buckets), about resolution² pixels, aspect ratios from 1:4 to 4:1, the closest to the photo's."""
    aspect = width / height
    step = max(16, resolution // 16)
    best = None
    for bucket_width in range(max(step, resolution // 2 // step * step), resolution * 2 + 1, step):
        bucket_height = max(step, (resolution * resolution // bucket_width) // step * step)
        error = abs(math.log((bucket_width / bucket_height) / aspect))
        if best is None or error < best[0] - 1e-9:
            best = (error, bucket_width, bucket_height)
    return best[1], best[2]


def load_bucketed(path: Path, resolution: int) -> tuple[torch.Tensor, SampleSize]:
    """[3, h, w] float32 in [-1, 1] at the photo's bucket size (resized to cover it, centre-cropped), and its size
    conditioning."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        target_width, target_height = bucket_for(image.width, image.height, resolution)
        scale = max(target_width / image.width, target_height / image.height)
        resized = (max(target_width, round(image.width * scale)), max(target_height, round(image.height * scale)))
        original = (image.height, image.width)
        image = image.resize(resized, Image.LANCZOS) if resized != image.size else image
        left, top = (resized[0] - target_width) // 2, (resized[1] - target_height) // 2
        image = image.crop((left, top, left + target_width, top + target_height))
        array = np.asarray(image, dtype=np.float32)
    pixels = torch.from_numpy(array).permute(2, 0, 1).contiguous() / 127.5 - 1.0
    return pixels, SampleSize(original, (top, left), (target_height, target_width), resized[0])


# ---------------------------------------------------------------------------------------------- models

TextState = tuple[torch.Tensor, "torch.Tensor | None"]  # (hidden states, SDXL's pooled embedding or None)


@contextlib.contextmanager
def _vae_upcast(vae, sdxl: bool):
    """Encode in float32 when SDXL's VAE asks for it (config force_upcast: its activations overflow float16 and the
    latents come out NaN); the VAE goes back to half precision afterwards (the pipelines expect it). SD 1.5's VAE
    runs in float16 as before (diffusers' force_upcast default is on for every VAE, so the family decides)."""
    dtype = vae.dtype
    upcast = sdxl and dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype)


def _cat_states(states: list[TextState]) -> TextState:
    hidden = torch.cat([h for h, _ in states])
    pooled = [p for _, p in states]
    return hidden, None if pooled[0] is None else torch.cat(pooled)


def _token_ids(tokenizer, captions: list[str]) -> dict[str, torch.Tensor]:
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return {caption: ids[i : i + 1] for i, caption in enumerate(captions)}



def _lora_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def _inject(
    model: torch.nn.Module, prefix: str, targets: list[str], rank: int, alpha: int, generator: torch.Generator
) -> list[tuple[str, torch.nn.Parameter]]:
    """Add (or reuse) peft LoRA adapter "default"; initialise it from `generator`; return (name, parameter)s."""
    import peft

    layers = _lora_layers(model)
    if not layers:
        config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0,
                                 init_lora_weights="gaussian", bias="none")
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER)
        layers = _lora_layers(model)
    else:
        ranks = {layer.r.get(ADAPTER) for layer in layers.values()}
        if ranks != {rank}:
            raise TrainError(f"The base model already carries a LoRA of rank {sorted(ranks)}, not {rank}.",
                             hint="Load the base model again for a training with another rank.")
    params = []
    with torch.no_grad():
        for name in sorted(layers):
            layer = layers[name]
            down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            # peft's "gaussian" init (std 1/rank for A, zero B), drawn from our generator, kept in float32.
            down.data = (torch.randn(down.shape, generator=generator) / rank).to(down.device, torch.float32)
            up.data = torch.zeros(up.shape, dtype=torch.float32, device=up.device)
            layer.lora_alpha[ADAPTER] = alpha
            layer.scaling[ADAPTER] = alpha / rank
            for kind, weight in (("down", down), ("up", up)):
                weight.requires_grad_(True)
                params.append((f"{prefix}.{name}.{kind}", weight))
    return params


def _disable_lora(model: torch.nn.Module) -> None:
    """A LoRA left in a model by an earlier training becomes exactly inactive (B = 0, so ΔW = 0)."""
    with torch.no_grad():
        for layer in _lora_layers(model).values():
            if ADAPTER in layer.lora_B:
                layer.lora_B[ADAPTER].weight.zero_()
                layer.lora_B[ADAPTER].weight.requires_grad_(False)
                layer.lora_A[ADAPTER].weight.requires_grad_(False)


def _grad_scaler():
    """fp16 loss scaling; torch.amp.GradScaler from torch 2.3, torch.cuda.amp's before (A1111 ships torch 2.1)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16/AMX): emulated bf16 would be slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype the trainer uses on `device` for `mixed_precision`; None = float32."""
    if mixed_precision == "fp16" and device.type == "cuda":
        return torch.float16
    if mixed_precision == "bf16" and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())):
        return torch.bfloat16
    return None


# On a CPU, one batch of the accumulated micro-steps measured 35 % faster at 128 px and 17 % slower at 512 px
# (full SD 1.5 UNet, 2 cores; bench/train_step.py prints it for a machine): the larger activations leave the
# caches. On a GPU a larger batch fills the device: 3.5× faster per step at 512 px on an H200, but the peak grew
# from 4.6 to 8.6 GiB (fp16, rank 128, accumulation 4): each extra sample in the batch ~1.3 GiB at 512 px. So on a
# GPU the batch is used where that fits: an 8 GiB card keeps the one-by-one steps it trained with before. With
# gradient checkpointing the batch always fits (measured 4.3 GiB batched, less than one by one without it), and
# low_vram alone asks for the small footprint, so it stays one by one.
CPU_BATCHED_MAX_RESOLUTION = 256
GPU_UNBATCHED_GIB = 4.7  # peak at 512 px, fp16, rank 128, micro-steps one by one (H200 measurement)
GPU_GIB_PER_EXTRA_SAMPLE = 1.3  # what each further sample of a batched step added there
GPU_MARGIN_GIB = 1.0  # the rest of the process, fragmentation


def batched_gpu_gib(config: TrainConfig) -> float:
    """Estimated peak VRAM (GiB) of batched micro-steps: the one-by-one peak plus the activations of the extra
    samples, scaled by pixel count, doubled in float32."""
    extra = config.gradient_accumulation_steps * config.batch_size - config.batch_size
    scale = (config.resolution / 512) ** 2 * (2.0 if config.mixed_precision == "no" else 1.0)
    return GPU_UNBATCHED_GIB * max(scale, 0.25) + GPU_GIB_PER_EXTRA_SAMPLE * extra * scale


def batches_micro_steps(config: TrainConfig, device: torch.device, gpu_gib: float | None = None) -> bool:
    """Whether the micro-steps of an optimizer step run as one batch (batch_micro_steps, "auto" resolved).
    `gpu_gib`: the GPU's memory (read from the device when None)."""
    if config.gradient_accumulation_steps == 1 or config.batch_micro_steps == "off":
        return False
    if config.batch_micro_steps == "on":
        return True
    if device.type != "cuda":
        return config.resolution <= CPU_BATCHED_MAX_RESOLUTION
    if config.gradient_checkpointing:
        return True
    if config.low_vram:
        return False
    if gpu_gib is None:
        gpu_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return batched_gpu_gib(config) + GPU_MARGIN_GIB <= gpu_gib


def shares_cross_attention(config: TrainConfig, device: torch.device) -> bool:
    """shared_cross_attention in effect: a batch of several samples (all of one caption in EasyPhoto's datasets),
    with the SDPA attention the broadcast path uses."""
    several = config.batch_size > 1 or batches_micro_steps(config, device)
    return config.shared_cross_attention and config.attention == "sdpa" and several


# The SD 1.5 UNet's lowest level is resolution / 64 pixels wide (SDXL's resolution / 32): maps of at most 4×4
# pixels, where small_conv_matmul acts, exist up to 256 px.
SMALL_CONV_MAX_RESOLUTION = 256


def uses_small_conv_matmul(config: TrainConfig, device: torch.device) -> bool:
    """small_conv_matmul in effect: a CPU, a resolution with feature maps that small, and no torch.compile (which
    generates its own kernels)."""
    return (config.small_conv_matmul and device.type == "cpu" and not config.compile_unet
            and config.resolution <= SMALL_CONV_MAX_RESOLUTION)


def levers_in_use(config: TrainConfig, device: str | torch.device) -> list[str]:
    """Short names of the speed levers in effect for `config` on `device`, for the progress readout and record."""
    device = torch.device(device)
    dtype = autocast_dtype(config.mixed_precision, device)
    accumulation = config.gradient_accumulation_steps
    text_runs = config.train_text_encoder or not config.cache_latents  # else its embeddings are cached
    used = [
        "cached latents" if config.cache_latents else "",
        f"batched micro-steps ×{accumulation}" if batches_micro_steps(config, device) else "",
        "one text-encoder pass per step" if config.shared_text_pass and accumulation > 1 and text_runs else "",
        "shared cross-attention keys" if shares_cross_attention(config, device) else "",
        "small convolutions as matrix products" if uses_small_conv_matmul(config, device) else "",
        "fused AdamW" if config.fused_optimizer else "",
        "channels-last" if config.channels_last and device.type == "cuda" else "",
        f"{'fp16' if dtype == torch.float16 else 'bf16'} autocast" if dtype is not None else "",
        "TF32" if config.tf32 and device.type == "cuda" else "",
        "gradient checkpointing" if config.gradient_checkpointing else "",
        "SDPA attention" if config.attention == "sdpa" else "",
        "low VRAM" if config.low_vram else "",
        "torch.compile" if config.compile_unet else "",
    ]
    return [name for name in used if name]


def _make_optimizer(groups: list[dict], device: torch.device, fused: bool) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for every tensor) when asked and torch has it for `device`, else foreach."""
    options = {"betas": ADAM_BETAS, "weight_decay": ADAM_WEIGHT_DECAY, "eps": ADAM_EPS}
    if fused:
        try:
            return torch.optim.AdamW(groups, fused=True, **options)
        except (RuntimeError, TypeError, ValueError) as exc:  # no fused kernel for this device/torch
            log.info("Fused AdamW is not available here (%s): using foreach.", exc)
        return torch.optim.AdamW(groups, foreach=True, **options)
    return torch.optim.AdamW(groups, foreach=False, **options)


COMPILE_BACKEND = "inductor"  # torch.compile's default (generated Triton/C++ kernels)


def _compiled(unet):
    """torch.compile of the UNet for the training pass only (validation keeps calling the plain module, which
    shares its weights): an OptimizedModule around the same parameters."""
    if not hasattr(torch, "compile"):
        raise TrainError(f"compile_unet needs torch 2.0 or newer (this is {torch.__version__}).",
                         hint="Turn compile_unet off.")
    return torch.compile(unet, backend=COMPILE_BACKEND)


def _set_tf32(enabled: bool) -> tuple[bool, bool]:
    """Set TF32 for CUDA matrix products and cuDNN convolutions; returns the previous settings."""
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return previous


def _restore_tf32(previous: tuple[bool, bool]) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


# ---------------------------------------------------------------------------------------------- state files


def _checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def read_state(out_dir: Path) -> dict | None:
    """state.json of `out_dir`, or None when no training state is there."""
    path = Path(out_dir) / STATE_FILE
    return read_json(path) if path.is_file() else None


def _save_optimizer(path: Path, optimizer: torch.optim.Optimizer, names: list[str], scaler) -> None:
    import safetensors.torch

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    metadata = {
        "format": "easyphoto-adamw-v1",
        "param_groups": json.dumps(state["param_groups"]),
        "param_names": json.dumps(names),
        "scalars": json.dumps(scalars),
        "scaler": json.dumps(scaler.state_dict() if scaler is not None else None),
    }
    if not tensors:  # safetensors cannot write an empty file
        tensors["empty"] = torch.zeros(0)
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata=metadata)


def _load_optimizer(path: Path, optimizer: torch.optim.Optimizer, names: list[str], scaler) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata() or {}
        tensors = {key: file.get_tensor(key) for key in file.keys() if key != "empty"}  # noqa: SIM118
    if metadata.get("format") != "easyphoto-adamw-v1" or json.loads(metadata["param_names"]) != names:
        raise TrainError(f"The optimizer state {path.name} does not belong to this LoRA (other targets or model).",
                         hint="Start a new training (resume off).")
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = tensor
    for key, value in json.loads(metadata["scalars"]).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = json.loads(metadata["param_groups"])
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scaler_state = json.loads(metadata.get("scaler") or "null")
    if scaler is not None and scaler_state:
        scaler.load_state_dict(scaler_state)


def _remove_stale(out_dir: Path) -> None:
    """A fresh (not resumed) training replaces the checkpoints of an earlier one in the same folder."""
    if not out_dir.is_dir():
        return
    for path in out_dir.iterdir():
        if _CHECKPOINT_RE.fullmatch(path.name) or path.name == STATE_FILE:
            path.unlink()


@contextlib.contextmanager
def _disk_errors(what: str, step: int, path: Path):
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise TrainError(f"The disk is full: saving the {what} of step {step} to {path.parent} failed.",
                             hint="Free some disk space, then resume the training.") from exc
        raise TrainError(f"Saving the {what} of step {step} to {path} failed: {exc}.",
                         hint="Check that the folder is writable, then resume the training.") from exc


# ---------------------------------------------------------------------------------------------- training


class _Trainer:
    def __init__(self, base: BaseModel, items: list[_Item], out_dir: Path, config: TrainConfig, seed: int,
                 steps: int, device: str | torch.device):
        self.base, self.items, self.out_dir, self.config = base, items, out_dir, config
        self.seed, self.steps = seed, steps
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.train_te = config.train_text_encoder
        self.sdxl = base.family == "sdxl"
        self.autocast_dtype = autocast_dtype(config.mixed_precision, self.device)
        if self.autocast_dtype is None and config.mixed_precision != "no":
            log.info("mixed_precision=%s is not available on this %s: training runs in float32.",
                     config.mixed_precision, self.device.type)
        self.batched = batches_micro_steps(config, self.device)
        self.shared_text = config.shared_text_pass
        self.shared_cross = shares_cross_attention(config, self.device)
        self.small_convs = uses_small_conv_matmul(config, self.device)
        self.channels_last = config.channels_last and self.cuda
        self.scaler = _grad_scaler() if self.autocast_dtype == torch.float16 else None
        self.order = _SampleOrder(seed, len(items))
        self.scheduler = base.noise_scheduler
        self.v_prediction = self.scheduler.config.get("prediction_type", "epsilon") == "v_prediction"
        self.scaling = float(base.vae.config.scaling_factor)
        self.timesteps = int(self.scheduler.config.num_train_timesteps)

    # --- setup
    def prepare_models(self) -> None:
        base, config = self.base, self.config
        encoders = self.encoders()
        self.modes = {m: m.training for m in (base.unet, base.vae, *encoders.values())}
        for model in (base.unet, base.vae, *encoders.values()):
            model.requires_grad_(False)
            model.to(self.device)
        init = _generator(self.seed, "init", 0)
        named = _inject(base.unet, "unet", lora.UNET_TARGETS, config.rank, config.network_alpha, init)
        if self.train_te:
            for prefix, encoder in encoders.items():
                named += _inject(encoder, prefix, lora.TEXT_TARGETS, config.rank, config.network_alpha, init)
        self.param_names = [name for name, _ in named]
        self.unet_params = [p for name, p in named if name.startswith("unet.")]
        self.te_params = [p for name, p in named if name.startswith("text_encoder")]
        if not self.train_te:
            for encoder in encoders.values():
                _disable_lora(encoder)
        kernels.set_attention(base.unet, config.attention, shared_text=self.shared_cross)
        self.small_conv_forwards = kernels.install_small_conv_matmul(base.unet) if self.small_convs else []
        base.unet.train()
        base.vae.eval()
        for encoder in encoders.values():
            encoder.train(self.train_te)
        if config.gradient_checkpointing:
            base.unet.enable_gradient_checkpointing()
            if self.train_te:
                for encoder in encoders.values():
                    try:  # transformers >= 4.35 takes the checkpoint kwargs; 4.30 (A1111's pin) does not
                        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                    except TypeError:
                        encoder.gradient_checkpointing_enable()
                    # transformers' (reentrant) checkpointing drops the LoRA gradients when no input needs grad.
                    encoder.enable_input_require_grads()
        groups = [{"params": self.unet_params, "lr": config.learning_rate}]
        if self.te_params:
            groups.append({"params": self.te_params, "lr": config.text_encoder_learning_rate})
        self.optimizer = _make_optimizer(groups, self.device, config.fused_optimizer)
        if self.channels_last:
            base.unet.to(memory_format=torch.channels_last)
        self.unet_forward = base.unet
        if config.compile_unet:
            self.unet_forward = _compiled(base.unet)
        self._tf32 = _set_tf32(config.tf32) if self.cuda else None
        self.step_text: dict[str, tuple[TextState, TextState]] = {}  # caption -> (outputs, the leaves handed out)

    def encoders(self) -> dict[str, torch.nn.Module]:
        """The text encoders by LoRA key prefix: SD 1.5's one, SDXL's two."""
        found = {"text_encoder": self.base.text_encoder}
        if self.sdxl:
            found["text_encoder_2"] = self.base.text_encoder_2
        return found

    def prepare_data(self) -> None:
        """Pixels (always), VAE latent distributions of each image and its mirror (cache_latents), token ids and,
        for a frozen text encoder, its embeddings (cache_latents). SDXL images are bucketed (aspect kept, about
        resolution² pixels) and carry their size/crop numbers for the UNet's added conditioning."""
        base, config = self.base, self.config
        if self.sdxl:
            loaded = [load_bucketed(item.image, config.resolution) for item in self.items]
            self.pixels = [pixels for pixels, _ in loaded]
            self.sizes = [size for _, size in loaded]
        else:
            self.pixels = [_load_pixels(item.image, config.resolution) for item in self.items]
        captions = sorted({item.caption for item in self.items})
        self.token_ids = _token_ids(base.tokenizer, captions)
        self.token_ids_2 = _token_ids(base.tokenizer_2, captions) if self.sdxl else {}
        self.latent_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.embedding_cache: dict[str, TextState] | None = None
        if not config.cache_latents:
            return
        with torch.no_grad():
            self.latent_cache = []
            for pixels in self.pixels:
                pair = torch.stack([pixels, torch.flip(pixels, dims=[-1])])
                mean, std = self._encode(pair)
                self.latent_cache.append((mean, std))
            if not self.train_te:
                self.embedding_cache = {c: self._embed_frozen(c) for c in captions}
        if config.low_vram:
            self._offload()

    def _offload(self) -> None:
        self.base.vae.to("cpu")
        if self.embedding_cache is not None:
            for encoder in self.encoders().values():
                encoder.to("cpu")
        if self.cuda:
            torch.cuda.empty_cache()

    def _onload(self) -> None:
        self.base.vae.to(self.device)
        for encoder in self.encoders().values():
            encoder.to(self.device)

    def _encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self.base.vae
        with _vae_upcast(vae, self.sdxl):
            dist = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
        return dist.mean.float(), dist.std.float()

    def _embed_frozen(self, caption: str) -> TextState:
        with torch.no_grad(), self._autocast():
            hidden, pooled = self._encode_text([caption])
            return hidden.float(), None if pooled is None else pooled.float()

    def _encode_text(self, captions: list[str]) -> TextState:
        """(hidden states for the UNet's cross-attention, pooled embedding or None). SDXL: the penultimate hidden
        states of both encoders side by side, and the second encoder's projected pooled output."""
        ids = torch.cat([self.token_ids[c] for c in captions]).to(self.device)
        if not self.sdxl:
            return self.base.text_encoder(ids)[0], None
        ids_2 = torch.cat([self.token_ids_2[c] for c in captions]).to(self.device)
        first = self.base.text_encoder(ids, output_hidden_states=True)
        second = self.base.text_encoder_2(ids_2, output_hidden_states=True)
        return torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1), second[0]

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    # --- one micro-step, or all of a step's micro-steps as one batch
    def micro_step(self, micro: int) -> torch.Tensor:
        """Loss of micro-step `micro` (0-based over the whole training), everything drawn from (seed, micro)."""
        return self._loss([self._draw(micro)])

    def batched_step(self, first_micro: int, count: int) -> torch.Tensor:
        """Mean loss of micro-steps first_micro .. first_micro + count - 1 in one forward pass: each micro-step's
        samples drawn exactly as micro_step draws them, so the gradient is the mean of theirs."""
        return self._loss([self._draw(first_micro + k) for k in range(count)])

    def _loss(self, draws: list[dict]) -> torch.Tensor:
        """Mean loss over the samples of `draws`; samples of different sizes (SDXL buckets) run as one forward per
        size, each sample weighing the same."""
        groups: dict[tuple, list[dict]] = {}
        for draw in draws:
            groups.setdefault(tuple(draw["noisy"].shape[1:]), []).append(draw)
        if len(groups) == 1:
            return self._group_loss(draws)
        counts = {shape: sum(len(d["captions"]) for d in group) for shape, group in groups.items()}
        total = sum(self._group_loss(group) * counts[shape] for shape, group in groups.items())
        return total / sum(counts.values())

    def _group_loss(self, draws: list[dict]) -> torch.Tensor:
        noisy = torch.cat([d["noisy"] for d in draws])
        target = torch.cat([d["target"] for d in draws])
        timesteps = torch.cat([d["timesteps"] for d in draws])
        captions = [c for d in draws for c in d["captions"]]
        if self.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            hidden, pooled = self._text_states(captions)
            if self.sdxl:
                added = {"text_embeds": pooled, "time_ids": torch.cat([d["time_ids"] for d in draws])}
                prediction = self.unet_forward(noisy, timesteps, hidden, added_cond_kwargs=added).sample
            else:
                prediction = self.unet_forward(noisy, timesteps, hidden).sample
        return F.mse_loss(prediction.float(), target.float(), reduction="mean")

    def _draw(self, micro: int) -> dict:
        """Samples, flips, VAE sample, noise and timesteps of micro-step `micro`, from its own generator."""
        batch = self.config.batch_size
        generator = _generator(self.seed, "step", micro)
        indices = [self.order(micro * batch + b) for b in range(batch)]
        flips = (torch.rand(batch, generator=generator) < 0.5).tolist()
        means, stds = [], []
        for index, flip in zip(indices, flips, strict=True):
            if self.latent_cache is not None:
                mean, std = self.latent_cache[index]
                means.append(mean[int(flip)])
                stds.append(std[int(flip)])
            else:
                pixels = self.pixels[index]
                with torch.no_grad():
                    mean, std = self._encode((torch.flip(pixels, dims=[-1]) if flip else pixels)[None])
                means.append(mean[0])
                stds.append(std[0])
        if len({tuple(m.shape) for m in means}) > 1:  # SDXL buckets of different sizes in one micro-step
            raise TrainError("The samples of one micro-step have different sizes.",
                             hint="Use batch_size 1 with photos of different aspect ratios (SDXL bucketing).")
        mean, std = torch.stack(means), torch.stack(stds)
        sample_noise = self._to_device(torch.randn(mean.shape, generator=generator))
        latents = (mean + std * sample_noise) * self.scaling
        noise = self._to_device(torch.randn(latents.shape, generator=generator))
        timesteps = self._to_device(torch.randint(0, self.timesteps, (batch,), generator=generator))
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        target = self.scheduler.get_velocity(latents, noise, timesteps) if self.v_prediction else noise
        draw = {"noisy": noisy, "target": target, "timesteps": timesteps,
                "captions": [self.items[i].caption for i in indices]}
        if self.sdxl:
            draw["time_ids"] = self._to_device(torch.tensor(
                [self.sizes[i].time_ids(flip) for i, flip in zip(indices, flips, strict=True)], dtype=torch.float32))
        return draw

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A CPU-drawn tensor on the device without stalling the host: pinned memory, non-blocking copy."""
        if not self.cuda:
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _text_states(self, captions: list[str]) -> TextState:
        """The text states of `captions` for one UNet call: one row per sample, or (shared_cross_attention) one
        row for a batch whose samples share the caption, the pooled embedding still one per sample."""
        if self.shared_cross and len(captions) > 1 and len(set(captions)) == 1:
            hidden, pooled = self._text_states(captions[:1])
            return hidden, None if pooled is None else pooled.expand(len(captions), -1)
        if self.embedding_cache is not None:
            return _cat_states([self.embedding_cache[c] for c in captions])
        if self.shared_text:
            return _cat_states([self._step_text_state(c) for c in captions])
        if self.train_te:
            return self._encode_text(captions)
        with torch.no_grad():
            return self._encode_text(captions)

    def _step_text_state(self, caption: str) -> TextState:
        """The caption's text-encoder output for this optimizer step, computed once. A trained encoder's output
        is handed out as a detached leaf: each micro-step's backward stops there and adds to its .grad, and
        finish_text_pass sends the sum through the encoder once (the same gradient as one pass per micro-step)."""
        if caption not in self.step_text:
            if self.train_te:
                outputs = self._encode_text([caption])
                leaves = tuple(None if o is None else o.detach().requires_grad_(True) for o in outputs)
                self.step_text[caption] = (outputs, leaves)
            else:
                with torch.no_grad():
                    outputs = self._encode_text([caption])
                self.step_text[caption] = (outputs, outputs)
        return self.step_text[caption][1]

    def finish_text_pass(self) -> None:
        """Backpropagate the summed gradient of each shared text-encoder output of this step, then forget them."""
        for outputs, leaves in self.step_text.values():
            pairs = [(o, leaf.grad) for o, leaf in zip(outputs, leaves, strict=True)
                     if o is not None and leaf is not o and leaf.grad is not None]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        self.step_text = {}

    # --- optimizer step
    def optimizer_step(self) -> None:
        params = self.unet_params + self.te_params
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor, parts: int) -> None:
        """Backward of one of the `parts` equal shares of an optimizer step's loss."""
        scaled = loss / parts
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()

    # --- checkpoints
    def lora_weights(self) -> lora.LoraWeights:
        weights = from_peft(self.base.unet, "unet", float(self.config.network_alpha))
        if self.train_te:
            for prefix, encoder in self.encoders().items():
                weights.update(from_peft(encoder, prefix, float(self.config.network_alpha)))
        return weights

    def save(self, step: int) -> Path:
        name = _checkpoint_name(step)
        path = self.out_dir / f"{name}.safetensors"
        metadata = {
            "ss_steps": str(step),
            "ss_seed": str(self.seed),
            "ss_resolution": f"({self.config.resolution}, {self.config.resolution})",
            "ss_learning_rate": str(self.config.learning_rate),
            "ss_text_encoder_lr": str(self.config.text_encoder_learning_rate if self.train_te else 0),
            "ss_unet_lr": str(self.config.learning_rate),
            "ss_sd_model_hash": self.base.model_hash or "",
            "ss_sd_model_name": Path(self.base.source).name,
            "easyphoto_step": str(step),
        }
        with _disk_errors("LoRA checkpoint", step, path):
            lora.save_lora(path, self.lora_weights(), metadata, dtype=torch.float32, family=self.base.family)
        optim = self.out_dir / f"{name}.optim.safetensors"
        with _disk_errors("optimizer state", step, optim):
            _save_optimizer(optim, self.optimizer, self.param_names, self.scaler)
        return path

    def restore(self, lora_path: Path, optim_path: Path) -> None:
        weights, _ = lora.load_lora(lora_path)
        load_into_peft(self.base.unet, "unet", {k: v for k, v in weights.items() if k.startswith("unet.")})
        if self.train_te:
            for prefix, encoder in self.encoders().items():
                load_into_peft(encoder, prefix, {k: v for k, v in weights.items() if k.startswith(prefix + ".")})
        _load_optimizer(optim_path, self.optimizer, self.param_names, self.scaler)

    def finish(self) -> None:
        """Leave the base usable for validation/inference: weights on the device, modes as they were."""
        base = self.base
        self._onload()
        self.step_text = {}
        kernels.remove_small_conv_matmul(self.small_conv_forwards)
        kernels.set_attention(base.unet, self.config.attention, shared_text=False)
        if self.channels_last:
            base.unet.to(memory_format=torch.contiguous_format)
        if self._tf32 is not None:
            _restore_tf32(self._tf32)
            self._tf32 = None
        if self.config.gradient_checkpointing:
            base.unet.disable_gradient_checkpointing()
            if self.train_te:
                for encoder in self.encoders().values():
                    encoder.gradient_checkpointing_disable()
                    encoder.disable_input_require_grads()
        for model, training in self.modes.items():
            model.train(training)
        for param in self.unet_params + self.te_params:
            param.requires_grad_(False)


def _snapshot(config: TrainConfig, seed: int, base: BaseModel, fingerprint: str) -> dict:
    return {
        "config": config.to_dict(),
        "seed": seed,
        "targets": {"unet": lora.UNET_TARGETS, "text_encoder": lora.TEXT_TARGETS if config.train_text_encoder else [],
                    **({"text_encoder_2": lora.TEXT_TARGETS if config.train_text_encoder else []}
                       if base.family == "sdxl" else {})},
        "base_model_hash": base.model_hash,
        "dataset": fingerprint,
    }


def _check_resumable(state: dict, config: TrainConfig, snapshot: dict, out_dir: Path) -> None:
    saved = state.get("config", {})
    changes = [f"{name} {saved.get(name)!r} → {getattr(config, name)!r}" for name in RESUME_FIELDS
               if saved.get(name) != getattr(config, name)]
    if config.seed is not None and state.get("seed") != config.seed:
        changes.append(f"seed {state.get('seed')!r} → {config.seed!r}")
    for key, label in (("targets", "LoRA targets"), ("base_model_hash", "base model"), ("dataset", "dataset")):
        if state.get(key) != snapshot[key]:
            changes.append(f"{label} {state.get(key)!r} → {snapshot[key]!r}")
    if changes:
        raise TrainError(
            f"Cannot resume the training in {out_dir} with a different config: {'; '.join(changes)}.",
            hint="Resume with the settings it was started with, or start a new training (resume off).",
        )


def train_lora(
    base: BaseModel,
    dataset_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    *,
    steps: int,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    merge_top_k: int = MERGE_TOP_K,
    on_timing: OnTiming | None = None,
) -> TrainResult:
    """Train the identity LoRA for `steps` optimizer steps (continuing a saved state when `resume`).

    The LoRA stays injected in `base.unet` (and `base.text_encoder`) afterwards, holding the final weights, so
    validation and merging can use the same models. Raises TrainError (phase "train") for a missing/empty
    dataset, a resume with a changed config, out-of-memory and a full disk; easyphoto.errors.Cancelled when
    `should_stop()` turned true (after saving a resumable checkpoint of the last completed step).
    """
    if steps < 1:
        raise TrainError(f"The number of training steps must be at least 1, not {steps}.")
    run = _open_run(base, Path(dataset_dir), Path(out_dir), config, steps=steps, resume=resume, device=device)
    run.on_checkpoint, run.merge_top_k, run.on_timing = on_checkpoint, merge_top_k, on_timing
    run.trainer.prepare_models()
    try:
        run.restore_start()
        run.trainer.prepare_data()
        if run.fresh:
            run.write_state(0)
        run.train(progress, should_stop)
    except _OOM_ERRORS as exc:
        if isinstance(exc, RuntimeError) and not _is_oom(exc):
            raise
        raise TrainError(
            f"Out of GPU memory at training step {run.step + 1} (rank {config.rank}, resolution {config.resolution}).",
            hint="Turn on low_vram (it also stops batching the micro-steps; or set batch_micro_steps off) and "
            "gradient_checkpointing, use mixed_precision fp16/bf16, or a smaller rank; then resume.",
        ) from exc
    finally:
        run.trainer.finish()
    return run.result()


def _open_run(base: BaseModel, dataset_dir: Path, out_dir: Path, config: TrainConfig, *, steps: int, resume: bool,
              device: str | torch.device) -> _Run:
    """Read the dataset and (when resuming) the saved state, check that they still agree, and set up the run:
    a fresh training clears the checkpoints of an earlier one in `out_dir`."""
    items = read_dataset(dataset_dir)
    state = read_state(out_dir) if resume else None
    seed = config.seed if config.seed is not None else (state or {}).get("seed")
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    snapshot = _snapshot(config, seed, base, dataset_fingerprint(items))
    if state is not None:
        _check_resumable(state, config, snapshot, out_dir)
    else:
        _remove_stale(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = int(state.get("last_step", 0)) if state is not None else 0
    return _Run(
        trainer=_Trainer(base, items, out_dir, config, seed, steps, device),
        out_dir=out_dir, config=config, steps=steps, seed=seed, snapshot=snapshot, start=start, fresh=state is None,
        checkpoints=[c for c in (state or {}).get("checkpoints", []) if c["step"] <= start],
    )


@dataclass
class _Run:
    """One call of train_lora: the trainer, the checkpoints written so far (state.json's list) and the counters."""

    trainer: _Trainer
    out_dir: Path
    config: TrainConfig
    steps: int
    seed: int
    snapshot: dict
    start: int  # the step this call continues after (0 = fresh)
    fresh: bool  # no saved state was resumed
    checkpoints: list[dict]
    on_checkpoint: OnCheckpoint | None = None
    merge_top_k: int = MERGE_TOP_K
    on_timing: OnTiming | None = None
    step: int = field(init=False)
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.step = self.start

    def write_state(self, step: int) -> None:
        path = self.out_dir / STATE_FILE
        with _disk_errors("training state", step, path):
            atomic_write_json(path, {"version": STATE_VERSION, "last_step": step, "total_steps": self.steps,
                                     **self.snapshot, "checkpoints": self.checkpoints})

    def checkpoint(self, step: int, notify: bool) -> Path:
        """Save the LoRA and optimizer state of `step`, let `on_checkpoint` score it (`notify`), then prune."""
        path = self.trainer.save(step)
        entry = {"step": step, "lora": path.name, "optimizer": f"{_checkpoint_name(step)}.optim.safetensors"}
        self.checkpoints.append(entry)
        self.write_state(step)
        if notify and self.on_checkpoint is not None:
            score = self._score(step, path)
            if score is not None:
                entry["score"] = score  # what pruning ranks by, also after a resume
                self.write_state(step)
        _prune(self.out_dir, self.checkpoints, keep=self.config.keep_checkpoints, merge_top_k=self.merge_top_k,
               finished=False)
        return path

    def _score(self, step: int, path: Path) -> float | None:
        """The validation score `on_checkpoint` returns, with the models back on the device while it runs."""
        if self.config.low_vram:
            self.trainer._onload()
        score = self.on_checkpoint(step, path)
        if self.config.low_vram:
            self.trainer._offload()
        return _as_score(score)

    def restore_start(self) -> None:
        """Load the LoRA and optimizer state of the step a resumed run continues after."""
        if self.start == 0:
            return
        last = next((c for c in self.checkpoints if c["step"] == self.start), None)
        if last is None or not all((self.out_dir / last[kind]).is_file() for kind in ("lora", "optimizer")):
            raise TrainError(f"The checkpoint of step {self.start} named in {self.out_dir / STATE_FILE} is missing.",
                             hint="Start a new training (resume off).")
        self.trainer.restore(self.out_dir / last["lora"], self.out_dir / last["optimizer"])

    def train(self, progress: Progress | None, should_stop: ShouldStop | None) -> None:
        """Optimizer steps up to `steps`, a checkpoint every `validation_every` steps and at the last one."""
        while self.step < self.steps:
            started = time.perf_counter()
            total = self._accumulate(should_stop)
            if not math.isfinite(total):
                raise TrainError(
                    f"The training loss became {total} at step {self.step + 1}.",
                    hint="Lower the learning rate, or use mixed_precision 'no' or 'bf16' instead of 'fp16'.",
                )
            self.trainer.optimizer_step()
            self.step += 1
            self.step_seconds.append(time.perf_counter() - started)
            self.train_seconds += self.step_seconds[-1]
            self.losses.append(total)
            if self.on_timing is not None:
                self.on_timing("step", self.step, self.step_seconds[-1])
            if progress is not None:
                progress(self.step, self.steps, total)
            if self.step % self.config.validation_every == 0 or self.step == self.steps:
                started = time.perf_counter()
                self.checkpoint(self.step, notify=True)
                if self.on_timing is not None:
                    self.on_timing("checkpoint", self.step, time.perf_counter() - started)

    def _accumulate(self, should_stop: ShouldStop | None) -> float:
        """The gradients of one optimizer step's micro-steps; returns their mean loss (read from the device once
        per step: no host-device sync per micro-step)."""
        trainer, accumulation = self.trainer, self.config.gradient_accumulation_steps
        first = self.step * accumulation
        if trainer.batched:
            if should_stop is not None and should_stop():
                _stop(trainer, self.step, self.steps, self.checkpoints, self.checkpoint)
            loss = trainer.batched_step(first, accumulation)
            trainer.backward(loss, parts=1)
            trainer.finish_text_pass()
            return float(loss.detach())
        total = None
        for k in range(accumulation):
            if should_stop is not None and should_stop():
                _stop(trainer, self.step, self.steps, self.checkpoints, self.checkpoint)
            loss = trainer.micro_step(first + k)
            trainer.backward(loss, parts=accumulation)
            part = loss.detach() / accumulation
            total = part if total is None else total + part
        trainer.finish_text_pass()
        return float(total)

    def result(self) -> TrainResult:
        checkpoints, step = self.checkpoints, self.step
        if not checkpoints or checkpoints[-1]["step"] != step:  # resumed at or past `steps`: nothing to train
            raise TrainError(f"The training in {self.out_dir} has no checkpoint of step {step}.",
                             hint="Start a new training (resume off).")
        return TrainResult(
            final_checkpoint=self.out_dir / checkpoints[-1]["lora"],
            steps=step,
            losses=self.losses,
            checkpoints=[self.out_dir / c["lora"] for c in checkpoints],
            seconds_per_step=self.train_seconds / len(self.losses) if self.losses else 0.0,
            seed=self.seed,
            resumed_from=self.start,
            step_seconds=list(self.step_seconds),
            levers=levers_in_use(self.config, self.trainer.device),
        )


_OOM_ERRORS: tuple[type[BaseException], ...] = (getattr(torch.cuda, "OutOfMemoryError", RuntimeError), RuntimeError)


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def _as_score(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def retained_steps(entries: list[dict], *, keep: int, merge_top_k: int, finished: bool) -> tuple[set[int], set[int]]:
    """(steps whose LoRA file stays, steps whose optimizer state stays) under the pruning rule (module docstring).

    Ranking matches the merge's (easyphoto.train.pipeline._choose): higher score first, ties to the later step."""
    scored = sorted((e for e in entries if e.get("score") is not None), key=lambda e: (e["score"], e["step"]),
                    reverse=True)
    unscored = sorted((e for e in entries if e.get("score") is None), key=lambda e: e["step"], reverse=True)
    loras = {e["step"] for e in (scored + unscored)[: max(keep, 0)]}
    if finished or not entries:
        return loras, set()
    last = max(e["step"] for e in entries)
    return loras | {e["step"] for e in scored[: max(merge_top_k, 0)]} | {last}, {last}


def _prune(out_dir: Path, entries: list[dict], *, keep: int, merge_top_k: int, finished: bool) -> list[str]:
    loras, optimizers = retained_steps(entries, keep=keep, merge_top_k=merge_top_k, finished=finished)
    removed = []
    for entry in entries:
        for kind, wanted in (("lora", loras), ("optimizer", optimizers)):
            path = out_dir / entry[kind]
            if entry["step"] not in wanted and path.is_file():
                try:
                    path.unlink()
                    removed.append(path.name)
                except OSError as exc:  # a file in use (Windows) is retried at the next checkpoint
                    log.warning("EasyPhoto: could not delete the old checkpoint %s (%s)", path, exc)
    return removed


def prune_checkpoints(out_dir: Path | str, *, keep: int, merge_top_k: int = MERGE_TOP_K,
                      finished: bool = True) -> list[str]:
    """Delete the checkpoint files of `out_dir` the rule no longer needs (after the export: `finished`); returns
    the names removed. The entries stay in state.json, so scores and the merge record still name them."""
    state = read_state(Path(out_dir)) or {}
    return _prune(Path(out_dir), list(state.get("checkpoints", [])), keep=keep, merge_top_k=merge_top_k,
                  finished=finished)


def _stop(trainer: _Trainer, step: int, steps: int, checkpoints: list[dict], checkpoint) -> None:
    """Save the last completed step (if not saved yet) and raise Cancelled; a partial accumulation is dropped."""
    from easyphoto.errors import Cancelled

    trainer.optimizer.zero_grad(set_to_none=True)
    if step > 0 and (not checkpoints or checkpoints[-1]["step"] != step):
        checkpoint(step, notify=False)
    raise Cancelled(f"Training stopped after step {step} of {steps}; the state is saved and can be resumed.")
