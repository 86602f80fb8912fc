"""Seconds per optimizer step of our trainer with each speed lever, and a bare diffusers + peft loop beside it.

Everything runs in this one process on the same dataset, rank and targets. The bare loop is what a plain
diffusers training script does each step (batch 1, no accumulation): encode the image with the VAE and the
caption with the text encoder, add noise, predict it, backprop. The lever matrix runs our trainer at its
defaults (gradient accumulation 4, text encoder trained, every exact lever on, fp16 autocast on a GPU) and then
with one lever changed at a time, printing the median seconds per optimizer step (step 1, the warm-up, left out),
the ratio to the defaults and, on a GPU, the peak VRAM.

    python bench/train_step.py [--steps 6]             # the kit's tiny SD-1.5-architecture model, CPU or GPU
    python bench/train_step.py --real-size [--steps 8] # full SD 1.5 architecture (random weights) at 512 px, GPU
    python bench/train_step.py --real-size --allow-cpu --resolution 128   # the same on a CPU, slowly

--json FILE also writes the table as JSON. --only NAME[,NAME] runs just those rows (names as printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_dataset(folder: Path, resolution: int, count: int = 4) -> Path:
    import json

    import numpy as np
    from PIL import Image

    (folder / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        pixels = rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "train" / f"{i}.jpg")
        (folder / "train" / f"{i}.txt").write_text("easyphoto_face, easyphoto, 1person")
        lines.append(json.dumps({"file_name": f"train/{i}.jpg", "text": "easyphoto_face, easyphoto, 1person"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def bare_loop(model_dir: Path, dataset: Path, resolution: int, steps: int, rank: int, device: str) -> float:
    """A plain diffusers + peft step: VAE and text encoder run every step; returns seconds per step."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig, inject_adapter_in_model
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    from easyphoto.sd import lora

    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet").to(device)
    vae = AutoencoderKL.from_pretrained(model_dir / "vae").to(device)
    text = CLIPTextModel.from_pretrained(model_dir / "text_encoder").to(device)
    tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
    scheduler = DDPMScheduler.from_pretrained(model_dir / "scheduler")
    for module in (unet, vae, text):
        module.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=lora.UNET_TARGETS), unet)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    files = sorted((dataset / "train").glob("*.jpg"))
    generator = torch.Generator().manual_seed(0)
    start = None
    for step in range(steps + 1):  # the first step warms up and is not timed
        if step == 1:
            start = time.perf_counter()
        image = Image.open(files[step % len(files)]).convert("RGB").resize((resolution, resolution))
        pixels = torch.from_numpy(__import__("numpy").asarray(image, dtype="float32") / 127.5 - 1).permute(2, 0, 1)[None]
        with torch.no_grad():
            latents = vae.encode(pixels.to(device)).latent_dist.sample(generator) * vae.config.scaling_factor
            ids = tokenizer(["easyphoto_face, easyphoto, 1person"], padding="max_length", max_length=77,
                            truncation=True, return_tensors="pt").input_ids.to(device)
            states = text(ids)[0]
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=generator).to(device)
        pred = unet(scheduler.add_noise(latents, noise, t), t, states).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / steps


def random_sd15(folder: Path) -> Path:
    """A diffusers folder of the SD 1.5 architecture (shipped configs) with random weights: real size, no download."""
    import shutil

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = ROOT / "easyphoto" / "sd" / "sd15"
    shutil.copytree(configs, folder)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder"))
    text.save_pretrained(folder / "text_encoder", safe_serialization=True)  # transformers 4.30 defaults to .bin
    return folder


LEVER_ROWS: dict[str, dict] = {
    "defaults": {},
    "no latent cache (VAE every step)": {"cache_latents": False},
    "micro-steps one by one": {"batch_micro_steps": "off"},
    "text encoder per micro-step": {"shared_text_pass": False},
    "cross-attention keys per sample": {"shared_cross_attention": False},
    "small maps by the convolution (CPU)": {"small_conv_matmul": False},
    "plain AdamW (not fused)": {"fused_optimizer": False},
    "no channels-last": {"channels_last": False},
    "classic attention": {"attention": "classic"},
    "every exact lever off": {"cache_latents": False, "batch_micro_steps": "off", "shared_text_pass": False,
                              "shared_cross_attention": False, "small_conv_matmul": False,
                              "fused_optimizer": False, "channels_last": False, "attention": "classic"},
    "gradient checkpointing": {"gradient_checkpointing": True},
    "low-VRAM tier": {"low_vram": True},
    "float32 (no autocast)": {"mixed_precision": "no"},
    "float32 + TF32": {"mixed_precision": "no", "tf32": True},
    "bf16 autocast": {"mixed_precision": "bf16"},
    "torch.compile (opt-in)": {"compile_unet": True},
}


@dataclass
class Row:
    name: str
    seconds_per_step: float
    peak_vram_mib: float | None
    levers: list[str]
    compile_seconds: float | None = None
    timed: list[float] | None = None  # every timed step's seconds (pooled over --rounds)


def ours(bases: dict, model_dir: Path, dataset: Path, out: Path, resolution: int, steps: int, rank: int, device: str,
         name: str, levers: dict) -> Row:
    import statistics

    import torch

    from easyphoto.config import TrainConfig
    from easyphoto.sd.base_model import load_base
    from easyphoto.train.trainer import train_lora

    values = dict(resolution=max(resolution, 256), rank=rank, network_alpha=max(rank // 2, 1), batch_size=1,
                  gradient_accumulation_steps=4, train_text_encoder=True, validation=False,
                  validation_every=100_000, seed=0, keep_checkpoints=0, **levers)
    config = at_resolution(TrainConfig(**values), resolution)
    dtype = _frozen_dtype(config.mixed_precision, device)
    if dtype not in bases:  # the trainer re-initialises its LoRA in a reused base from the seed
        bases.clear()
        bases[dtype] = load_base(model_dir, dtype=dtype, device=device)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    result = train_lora(bases[dtype], dataset, out, config, steps=steps + 1, device=device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    timed = result.step_seconds[1:]
    compile_seconds = result.step_seconds[0] - statistics.median(timed) if config.compile_unet else None
    return Row(name, statistics.median(timed), peak, result.levers, compile_seconds, list(timed))


def at_resolution(config, resolution: int):
    """`config`, built at max(resolution, 256), at `resolution`: below the UI's minimum of 256 (the tiny model's
    sizes, the 128 px CPU comparison) the value is set unchecked, as the tests do."""
    if resolution >= 256:
        return config
    construct = getattr(type(config), "model_construct", None) or type(config).construct
    return construct(**{**config.__dict__, "resolution": resolution})


def _frozen_dtype(mixed_precision: str, device: str):
    """The frozen weights' dtype the training job uses (easyphoto.train.pipeline._frozen_dtype)."""
    import torch

    if device != "cuda" or mixed_precision == "no":
        return torch.float32
    return torch.bfloat16 if mixed_precision == "bf16" else torch.float16


def check_exact(model_dir: Path, dataset: Path, work: Path, resolution: int, rank: int, device: str) -> float:
    """Train 3 steps in float32 with every exact lever on, then off, from the same seed; print and return the
    largest LoRA difference (the tests check the same on the tiny model on a CPU; this checks it on `device`)."""
    from easyphoto.sd import lora

    weights = []
    for index, levers in enumerate(({}, LEVER_ROWS["every exact lever off"])):
        bases: dict = {}
        ours(bases, model_dir, dataset, work / f"exact{index}", resolution, 2, rank, device, "exact",
                   {**levers, "mixed_precision": "no"})
        final = sorted((work / f"exact{index}").glob("step-*.safetensors"))
        weights.append(lora.load_lora([f for f in final if ".optim." not in f.name][-1])[0])
    worst = 0.0
    for key, module in weights[0].items():
        other = weights[1][key]
        worst = max(worst, float((module.up - other.up).abs().max()), float((module.down - other.down).abs().max()))
    print(f"exact levers on vs off, float32 on {device}, 3 steps at lr 1e-4: largest LoRA difference {worst:.2e}",
          flush=True)
    return worst


def run_rows(rows: dict[str, dict], rounds: int, run) -> list[Row]:
    """Each row `rounds` times in turn (row order alternates through the rounds, so a slow spell of the machine
    hits every row alike), then the median over all of a row's timed steps; printed per row."""
    import statistics

    pooled: dict[str, Row] = {}
    for round_index in range(rounds):
        for index, (label, levers) in enumerate(rows.items()):
            try:
                row = run(index, label, levers)
            except Exception as exc:  # one lever failing on a machine must not hide the others' numbers
                print(f"{label}: FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            print(f"  round {round_index + 1}, {label}: {row.seconds_per_step:.3f} s/step", flush=True)
            if label in pooled:
                kept = pooled[label]
                kept.timed += row.timed
                kept.seconds_per_step = statistics.median(kept.timed)
                if row.peak_vram_mib is not None:
                    kept.peak_vram_mib = max(kept.peak_vram_mib or 0.0, row.peak_vram_mib)
            else:
                pooled[label] = row
    results = list(pooled.values())
    for row in results:
        first = results[0].seconds_per_step
        vram = f", peak VRAM {row.peak_vram_mib:.0f} MiB" if row.peak_vram_mib is not None else ""
        compiled = f", compiled in {row.compile_seconds:.0f} s" if row.compile_seconds is not None else ""
        print(f"{row.name}: {row.seconds_per_step:.3f} s/step, {row.seconds_per_step / first:.2f}× the first row"
              f"{vram}{compiled}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per row (plus one warm-up)")
    parser.add_argument("--real-size", action="store_true", help="SD 1.5 size, random weights, 512 px (a GPU)")
    parser.add_argument("--allow-cpu", action="store_true", help="let --real-size run on a CPU")
    parser.add_argument("--resolution", type=int, help="pixels (default 512 real size, 64 tiny)")
    parser.add_argument("--only", help="comma-separated row names to run (default: all)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the rows this many times, alternating, and pool their steps (a noisy machine)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare diffusers loop")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--work", type=Path, help="keep the model and dataset here (default: a temp folder)")
    parser.add_argument("--check-exact", action="store_true", help="only compare every exact lever on vs off")
    args = parser.parse_args()
    import torch

    from tests.kit import tiny_sd_paths

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.real_size and device != "cuda" and not args.allow_cpu:
        print("--real-size trains the full SD 1.5 UNet: run it on a CUDA machine (or add --allow-cpu).")
        return 1
    rows = {k: v for k, v in LEVER_ROWS.items() if not args.only or k in args.only.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if args.real_size:
            folder = work / "sd15"
            model_dir = folder if (folder / "unet").is_dir() else random_sd15(folder)
            resolution, rank = args.resolution or 512, 128
        else:
            model_dir, resolution, rank = tiny_sd_paths(work / "kit").txt2img, args.resolution or 64, 4
        dataset = work / f"data-{resolution}"
        if not (dataset / "metadata.jsonl").is_file():
            make_dataset(dataset, resolution)
        if args.check_exact:
            check_exact(model_dir, dataset, work, resolution, rank, device)
            return 0
        name = "SD 1.5 (random weights)" if args.real_size else "tiny SD-1.5 architecture"
        gpu = f" ({torch.cuda.get_device_name()}, torch {torch.__version__})" if device == "cuda" else ""
        print(f"device {device}{gpu}, {name}, {resolution}px, rank {rank}, batch 1 × accumulation 4, text encoder "
              f"trained, {args.steps} timed steps per row", flush=True)
        if not args.no_bare:
            bare = bare_loop(model_dir, dataset, resolution, args.steps, rank, device)
            print(f"bare diffusers+peft loop (batch 1, no accumulation, fp32): {bare:.3f} s/step", flush=True)
        bases: dict = {}
        results = run_rows(rows, args.rounds, lambda index, label, levers: ours(
            bases, model_dir, dataset, work / f"out{index}", resolution, args.steps, rank, device, label, levers))
        if args.json:
            args.json.write_text(json.dumps([row.__dict__ for row in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
