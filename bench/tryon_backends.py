"""UNet evaluations per zero-shot try-on for each backend (Leffa, CatVTON, OOTDiffusion), next to each paper's
defaults; with --real-size on a GPU, the time of one 1024×768 try-on on full-size random-weight models.

Runs the real backends (easyphoto.tryon.zeroshot) loaded from their published file layouts, written by
tests/kit/tiny_tryon.py: tiny models (CPU is fine) by default, SD 1.5 / CLIP ViT-L/14-size models with
--real-size. The papers' counts come from their published inference loops at their apps' defaults (one UNet call
per step with the guidance halves batched: 2 evaluations per step):
  Leffa        30 steps × (generative UNet + reference UNet), both every step   → 60 + 60
  CatVTON      50 steps × one UNet on the person + garment latent (double height) → 100
  OOTDiffusion 20 steps × denoising UNet, + the outfitting UNet once            → 40 + 2

    python bench/tryon.py --zero-shot                          counts (tiny models, 64 px high)
    python bench/tryon.py --zero-shot --real-size              full-size models at 1024×768 (needs CUDA)
    python bench/tryon.py --zero-shot --real-size --backends catvton --steps 2    one backend, quick
    python bench/tryon.py --zero-shot --real-size --allow-cpu --height 64 --steps 1
                                    full-size models in the published layouts, loaded and run at 48×64 on a CPU
                                    (checks every real key and shape end to end, minutes instead of hours)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PAPER = {  # unet label → (evaluations per step, evaluations once) in each published loop (guidance batch of 2)
    "leffa": {"unet": (2, 0), "reference unet": (2, 0)},
    "catvton": {"unet": (2, 0)},
    "ootd": {"denoising unet": (2, 0), "outfitting unet": (0, 2)},
}


def paper_counts(name: str, steps: int) -> dict[str, int]:
    """The published loop's UNet evaluations at `steps` steps."""
    return {unet: per_step * steps + once for unet, (per_step, once) in PAPER[name].items()}


def build(root: Path, names: list[str], real_size: bool) -> dict:
    from tests.kit import artefacts
    from tests.kit.tiny_tryon import TINY, build_catvton, build_leffa, build_ootd, full_family

    family = full_family() if real_size else TINY
    builders = {"leffa": lambda: build_leffa(root, family, variants=1),
                "catvton": lambda: build_catvton(root, family, variants=1),
                "ootd": lambda: build_ootd(root, artefacts.tokenizer_dir(root / "kit"), family, variants=1)}
    for name in names:
        builders[name]()
    return {name: root for name in names}


def load(name: str, root: Path, device: str, reuse_reference: bool = False):
    from easyphoto.tryon.zeroshot.catvton import CatVTONBackend, CatVTONFiles
    from easyphoto.tryon.zeroshot.leffa import LeffaBackend, LeffaFiles
    from easyphoto.tryon.zeroshot.ootd import OOTDBackend, OOTDFiles

    tryon = root / "tryon"
    if name == "leffa":
        return LeffaBackend(LeffaFiles(tryon / "leffa" / "stable-diffusion-inpainting",
                                       tryon / "leffa" / "virtual_tryon.pth"), device=device,
                            reuse_reference=reuse_reference)
    if name == "catvton":
        base = tryon / "catvton" / "stable-diffusion-inpainting"
        return CatVTONBackend(CatVTONFiles(base / "unet", base / "scheduler" / "scheduler_config.json",
                                           tryon / "catvton" / "sd-vae-ft-mse",
                                           tryon / "catvton" / "mix-48k-1024" / "attention" / "model.safetensors"),
                              device=device)
    return OOTDBackend(OOTDFiles(tryon / "ootd" / "checkpoints" / "ootd", tryon / "clip-vit-large-patch14"),
                       device=device)


def inputs(size: tuple[int, int]):
    import numpy as np

    from easyphoto.tryon.zeroshot.base import TryOnInputs

    width, height = size
    rng = np.random.default_rng(0)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4:3 * height // 4, width // 6:5 * width // 6] = 255
    parsing = np.zeros((height, width), np.uint8)
    parsing[height // 8:, width // 10:9 * width // 10] = 4
    return TryOnInputs(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                       rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mask, "upper", None, parsing)


def measure(backend, size, steps: int | None) -> tuple[dict, float, float | None]:
    """(evaluations, seconds, peak GiB on CUDA) of one try-on at the backend's default guidance."""
    import torch

    info = backend.info
    cuda = str(backend.device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    backend.run(inputs(size), steps=steps or info.steps, guidance=info.guidance, seed=0)
    if cuda:
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return dict(backend.evals.counts), time.perf_counter() - start, peak


def report(name: str, counts: dict, seconds: float, peak, steps: int | None, label: str = "") -> None:
    from easyphoto.tryon.zeroshot.registry import BACKENDS

    ran = steps or BACKENDS[name].steps
    paper = paper_counts(name, ran)
    ours, theirs = sum(counts.values()), sum(paper.values())
    detail = ", ".join(f"{k} {counts.get(k, 0)} (paper {v})" for k, v in paper.items())
    memory = f", peak {peak:.1f} GiB" if peak is not None else ""
    print(f"{name + label:16} {detail} at {ran} steps; total {ours} vs {theirs} (ratio {ours / max(theirs, 1):.2f}); "
          f"{seconds:.1f} s{memory}")


def run(args: argparse.Namespace) -> int:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.real_size and device == "cpu" and not args.allow_cpu:
        print("--real-size needs CUDA (a 1024×768 try-on on full-size models takes hours on a CPU); "
              "pass --allow-cpu to run it anyway")
        return 2
    names = args.backends or list(PAPER)
    height = args.height or (1024 if args.real_size else 64)
    size = (height * 3 // 4 // 8 * 8, height)
    print(f"{'full-size' if args.real_size else 'tiny'} models on {device}, {size[0]}×{size[1]}; counts are UNet "
          "evaluations (a batch of 2 counts 2)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        build(root, names, args.real_size)
        print(f"models written in their published layouts in {time.perf_counter() - start:.0f} s")
        for name in names:
            start = time.perf_counter()
            backend = load(name, root, device)
            print(f"{name}: loaded in {time.perf_counter() - start:.1f} s")
            report(name, *measure(backend, size, args.steps), args.steps)
            backend.unload()
            if name == "leffa":
                fast = load(name, root, device, reuse_reference=True)
                report(name, *measure(fast, size, args.steps), args.steps, label=" (reuse ref)")
                fast.unload()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--real-size", action="store_true", help="full-size models at 1024×768 (CUDA)")
    parser.add_argument("--allow-cpu", action="store_true", help="with --real-size: run on the CPU anyway")
    parser.add_argument("--backends", nargs="*", choices=list(PAPER), help="default: all three")
    parser.add_argument("--steps", type=int, default=None, help="default: each backend's own")
    parser.add_argument("--height", type=int, default=None, help="image height (width = 3/4 of it); default 1024 "
                        "with --real-size, else 64")
