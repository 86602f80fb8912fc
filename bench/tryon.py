"""UNet and ControlNet evaluations per try-on (counted in the Generator layer), next to the reference's defaults.

Runs the real try-on pipeline (easyphoto.tryon) on the standalone diffusers backend with the kit's tiny SD 1.5
architecture, its tiny ControlNets (openpose, canny, colour) plus a tiny depth ControlNet and a tiny DPT-hybrid
depth estimator (tests/kit/tiny_depth.py), on a real person photo (the kit's photo of Biden) with a parsing built
from its pose, and a random garment LoRA. The TryOnConfig defaults are the reference's steps (pass 1: 50 steps ×
0.70; pass 2, the inner boundary: 30 × 0.7 under canny + depth); pass 1 runs openpose + canny + depth (three units,
a WebUI's default number) where the reference ran canny + depth + colour on its pasted garment.
The reference's cost is computed from its defaults the way diffusers and the WebUI sample img2img (planned_steps:
int(steps × denoise) model steps; the WebUI runs one more, see backends.webui.host_sampling), one UNet call per
step (conditional and unconditional halves batched), one call per ControlNet unit per step.

    python bench/tryon.py                      tiny models (CPU is fine): counts per pass, ratios ours/reference
    python bench/tryon.py --first-steps 8      override step counts (the ratios stay those of one measured run)
    python bench/tryon.py --no-openpose        the reference's exact control set (canny + depth + colour 0.5)
    python bench/tryon.py --zero-shot          the zero-shot backends instead (bench/tryon_backends.py)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE = {  # aigc-apps/sd-webui-EasyPhoto scripts/easyphoto_tryon_infer.py: steps, denoise, ControlNet units
    "pass 1": (50, 0.70, 3),  # canny 1.0 + depth 1.0 + colour 0.5
    "pass 2": (30, 0.70, 2),  # inner-boundary refine: canny + depth
}


def reference_counts(webui: bool = False) -> dict[str, tuple[int, int]]:
    """(UNet, ControlNet) evaluations of the reference's passes: planned_steps per pass (+1 inside the WebUI)."""
    from easyphoto.generation import planned_steps

    counts = {}
    for label, (steps, denoise, units) in REFERENCE.items():
        unet = planned_steps(steps, denoise) + (1 if webui else 0)
        counts[label] = (unet, unet * units)
    return counts


def scene(work: Path, args: argparse.Namespace):
    """(generator, pipeline, photo, garment, mask input) of one try-on on the kit's tiny models."""
    import cv2
    import numpy as np
    from PIL import Image

    from easyphoto.backends.diffusers import DiffusersGenerator
    from easyphoto.config import TryOnConfig
    from easyphoto.generation import LoraRef
    from easyphoto.imageops import load_photo, to_array
    from easyphoto.pose.openpose import body_keypoints_from_mediapipe
    from easyphoto.tryon.depth import DepthEstimator
    from easyphoto.tryon.pipeline import GarmentAssets, MaskInput, TryOnPipeline
    from tests.kit import photos, tiny_sd_paths
    from tests.kit.tiny_depth import tiny_depth_controlnet_dir, tiny_dpt_dir
    from tests.test_tryon_pipeline import person_parsing, tiny_lora

    tiny = tiny_sd_paths(work / "kit")
    controlnets = {**{k: tiny.controlnets[k] for k in ("canny", "openpose", "color")},
                   "depth": tiny_depth_controlnet_dir(work / "kit")}
    image = load_photo(photos.photo_other_person(work / "kit")).image
    pixels = to_array(image.resize((image.width // 4, image.height // 4), Image.LANCZOS))
    parsing = person_parsing(pixels.shape[:2], body_keypoints_from_mediapipe(pixels))
    reference = to_array(load_photo(photos.photo_astronaut()).image)[250:506, 100:356].copy()
    mask = np.zeros(reference.shape[:2], np.uint8)
    cv2.ellipse(mask, (128, 128), (110, 120), 0, 0, 360, 255, -1)
    lora = tiny_lora(tiny.txt2img, work / "garment.safetensors")
    garment = GarmentAssets("garment", LoraRef("garment", 0.8, lora), "easyphoto, 1thing", "upper", reference, mask)
    overrides = {k: v for k, v in (("first_steps", args.first_steps), ("second_steps", args.second_steps)) if v}
    controls = {"openpose_weight": 0, "color_weight": 0.5} if args.no_openpose else {}  # the reference's set
    config = TryOnConfig(seed=1, short_side=256, **controls, **overrides)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = DiffusersGenerator(tiny.txt2img, controlnet_paths=controlnets, device=device)
    pipeline = TryOnPipeline(generator, config, depth=DepthEstimator(tiny_dpt_dir(work / "kit"), device))
    pipeline.check()
    return generator, pipeline, pixels, garment, MaskInput(parsing=parsing)


def print_counts(counter, config, seconds: float, device: str) -> None:
    from easyphoto.generation import planned_steps

    reference = reference_counts()
    print(f"tiny SD-1.5 architecture on {device}; config steps {config.first_steps}/{config.second_steps}; one try-on "
          f"in {seconds:.1f} s (the first: model loading included)")
    print(f"{'pass':8} {'ours UNet':>10} {'planned':>8} {'ref UNet':>9} {'ours CN':>8} {'ref CN':>7}")
    planned = {"pass 1": planned_steps(config.first_steps, config.first_denoising_strength),
               "pass 2": planned_steps(config.second_steps, config.second_denoising_strength)}
    for label in REFERENCE:
        ours = (counter.unet.get(label, 0), counter.controlnet.get(label, 0))
        print(f"{label:8} {ours[0]:>10} {planned[label]:>8} {reference[label][0]:>9} {ours[1]:>8} "
              f"{reference[label][1]:>7}")
    totals = counter.totals()
    ref_unet = sum(v[0] for v in reference.values())
    ref_cn = sum(v[1] for v in reference.values())
    print(f"{'total':8} {totals['unet']:>10} {sum(planned.values()):>8} {ref_unet:>9} {totals['controlnet']:>8} "
          f"{ref_cn:>7}")
    print(f"UNet evaluations ratio ours/reference: {totals['unet'] / ref_unet:.2f}; "
          f"ControlNet: {totals['controlnet'] / ref_cn:.2f} (the WebUI runs one more step per pass: "
          f"{sum(v[0] for v in reference_counts(webui=True).values())} UNet evaluations for the reference there)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-steps", type=int, default=None)
    parser.add_argument("--second-steps", type=int, default=None)
    parser.add_argument("--no-openpose", action="store_true", help="the reference's control set only")
    parser.add_argument("--zero-shot", action="store_true", help="count the zero-shot backends (Leffa, CatVTON, "
                        "OOTDiffusion) against their papers' defaults instead")
    from bench import tryon_backends

    tryon_backends.add_arguments(parser)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.zero_shot:
        from bench import tryon_backends

        return tryon_backends.run(args)
    with tempfile.TemporaryDirectory() as tmp:
        generator, pipeline, pixels, garment, mask_input = scene(Path(tmp), args)
        generator.counter.reset()
        start = time.perf_counter()
        result = pipeline.render(pixels, garment, mask_input)
        seconds = time.perf_counter() - start
        print_counts(generator.counter, pipeline.config, seconds, generator.device)
        print(f"controls sent: {result.controls}")
        print(f"notes: {result.notes}")
        print(result.fidelity.describe() if result.fidelity else "no fidelity score")
        generator.unload()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
