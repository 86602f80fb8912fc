"""Seconds per optimizer step: our trainer vs a bare diffusers + peft loop, and the effect of each speed lever.

Both run in this one process on the kit's tiny SD-1.5-architecture model (random weights, CPU), on the same 4-image
dataset at the same resolution, batch 1 × grad-accum 1 (so a step is one forward/backward), the same LoRA rank
and targets. The bare loop is what a plain diffusers training script does each step: encode the image with the
VAE and the caption with the text encoder, add noise, predict it, backprop. Ours caches latents and text
embeddings (captions are fixed) unless the lever is off. On a CUDA machine, --real-size runs the same comparison
with the full SD 1.5 architecture (the shipped configs, random weights: no download) at 512 px, rank 128.

    python bench/train_step.py [--steps 12] [--real-size]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
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
    UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")).save_pretrained(folder / "unet")
    AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")).save_pretrained(folder / "text_encoder")
    return folder


def ours(model_dir: Path, dataset: Path, out: Path, resolution: int, steps: int, rank: int, device: str,
         **levers) -> float:
    from easyphoto.config import TrainConfig
    from easyphoto.sd.base_model import load_base
    from easyphoto.train.trainer import train_lora

    base = load_base(model_dir, device=device)
    config = TrainConfig(resolution=resolution, rank=rank, network_alpha=rank, batch_size=1,
                         gradient_accumulation_steps=1, train_text_encoder=False, validation=False,
                         validation_every=10_000, seed=0, **levers)
    result = train_lora(base, dataset, out, config, steps=steps + 1, device=device)
    return result.seconds_per_step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--real-size", action="store_true", help="SD 1.5 size, random weights (needs CUDA)")
    args = parser.parse_args()
    import torch

    from tests.kit import tiny_sd_paths

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.real_size and device != "cuda":
            print("--real-size trains the full SD 1.5 UNet: run it on a CUDA machine.")
            return 1
        if args.real_size:
            model_dir, resolution, rank = random_sd15(work / "sd15"), 512, 128
        else:
            model_dir, resolution, rank = tiny_sd_paths(work / "kit").txt2img, 256, 4
        dataset = make_dataset(work / "data", resolution)
        bare = bare_loop(model_dir, dataset, resolution, args.steps, rank, device)
        runs = {
            "ours (defaults: cached latents, sdpa)": {},
            "ours, no latent cache": {"cache_latents": False},
            "ours, classic attention": {"attention": "classic"},
            "ours, gradient checkpointing": {"gradient_checkpointing": True},
            "ours, low-VRAM tier": {"low_vram": True},
        }
        size = "SD 1.5 (random weights)" if args.real_size else "tiny SD-1.5 architecture"
        print(f"device {device}, {size}, {resolution}px, rank {rank}, {args.steps} timed steps")
        print(f"bare diffusers+peft loop: {bare * 1000:.1f} ms/step")
        for index, (label, levers) in enumerate(runs.items()):
            seconds = ours(model_dir, dataset, work / f"out{index}", resolution, args.steps, rank, device, **levers)
            print(f"{label}: {seconds * 1000:.1f} ms/step, ratio to bare {seconds / bare:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
