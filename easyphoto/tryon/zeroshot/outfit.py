"""The digital model's outfit swap with a zero-shot backend: the kept garment stays pixel for pixel, any garment
photo goes on the outfit region, no training.

    result = zero_shot_outfit(ctx, DigitalModelParams(person=..., outfit_image=..., config={"mode": "outfit",
                              "outfit_backend": "leffa", "category": "upper", "outfit_category": "lower"}), job)

The kept garment's mask comes from the digital model's own sources (parsing of its category, clicks, or a drawn /
editor mask); the outfit region is the agnostic silhouette of `outfit_category` (agnostic.py) minus that mask grown
by KEEP_MARGIN px, so the backend never touches the kept garment; the try-on itself is the `tryon_any` operation
with that region as a drawn mask, so the licence gate, the host's GPU hand-over and Interrupt work the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto.config import AnyGarmentConfig
from easyphoto.context import AppContext
from easyphoto.errors import InvalidRequest
from easyphoto.imageops import dilate, load_photo, to_array
from easyphoto.job_params import AnyGarmentParams, DigitalModelParams
from easyphoto.jobs import JobContext
from easyphoto.store import atomic_path
from easyphoto.tryon.masks import EmptyTryOnMask
from easyphoto.tryon.zeroshot.agnostic import CATEGORY_OF, agnostic_mask

KEEP_MARGIN = 8  # px between the kept garment and the repainted outfit region


def check_outfit_request(params: DigitalModelParams) -> None:
    config = params.config
    if config.outfit_category not in CATEGORY_OF:
        raise InvalidRequest(f"A zero-shot outfit swap has no outfit_category {config.outfit_category!r}.",
                             phase="digital_model", hint=f"Use one of {', '.join(sorted(CATEGORY_OF))}, or "
                                                         "outfit_backend 'lora' with a trained garment.")
    if not params.outfit_image and not params.outfit_id:
        raise InvalidRequest("A zero-shot outfit swap needs the other garment: outfit_image (a photo) or outfit_id.",
                             phase="digital_model", hint="Upload the outfit garment's photo.")


def zero_shot_outfit(ctx: AppContext, params: DigitalModelParams, job: JobContext) -> dict:
    from easyphoto.tryon.run import _segment_points, clothes_parser, mask_input
    from easyphoto.tryon.zeroshot.run import any_garment_operation, check_request

    check_outfit_request(params)
    config = params.config
    any_params = AnyGarmentParams(
        person=params.person, garment_image=params.outfit_image,
        garment_id=None if params.outfit_image else params.outfit_id, mask=str(job.work_dir / "outfit-mask.png"),
        config=AnyGarmentConfig(backend=config.outfit_backend, category=config.outfit_category, mask_source="mask",
                                seed=config.seed, batch_size=config.batch_size, steps=config.outfit_steps,
                                work_size=config.outfit_work_size),
        out=params.out)
    check_request(ctx, any_params)  # the licence gate before any model loads
    job.progress(phase="loading", fraction=0.0, message="the kept garment and the outfit region")
    pixels = to_array(load_photo(Path(params.person), max_megapixels=ctx.settings.max_upload_megapixels).image)
    parser, _ = clothes_parser(ctx, "parsing")
    try:
        parsing = parser.parse(pixels)
    finally:
        parser.unload()
    if config.mask_source == "points":
        keep = _segment_points(ctx, params, pixels)
    elif config.mask_source == "mask":
        keep = mask_input(ctx, params, (pixels.shape[1], pixels.shape[0])).mask
    else:
        keep = parsing.category_mask(config.category)
    region = outfit_region(pixels, parsing, np.asarray(keep), config.outfit_category)
    with atomic_path(any_params.mask) as tmp:
        Image.fromarray(region).save(tmp, format="PNG")
    result = any_garment_operation(ctx, any_params, job)
    keep = (np.asarray(keep) > 0).astype(np.uint8) * 255
    results = [_kept_summary(item, pixels, keep) for item in result["tryons"]]
    return {**result, "mode": "outfit", "kept_garment_pixels": int(np.count_nonzero(keep)), "results": results}


def _kept_summary(item: dict, photo: np.ndarray, keep: np.ndarray) -> dict:
    """The digital model's per-image summary: how well the kept garment was kept (1.0: pixel for pixel)."""
    from easyphoto.tryon.fidelity import EmptyGarmentRegion, garment_fidelity

    with Image.open(item["file"]) as image:
        out = np.asarray(image.convert("RGB"))
    try:
        kept = garment_fidelity(out, keep, photo, keep).to_dict()
    except EmptyGarmentRegion:
        kept = None
    return {"file": item["file"], "seed": item["seed"], "mode": "outfit", "notes": item["notes"],
            "garment_kept": kept, "licence": item["licence"]}


def outfit_region(pixels: np.ndarray, parsing, keep: np.ndarray, outfit_category: str) -> np.ndarray:
    """The outfit category's agnostic silhouette minus the kept garment grown by KEEP_MARGIN (uint8 0/255)."""
    from easyphoto.tryon.pipeline import _default_pose

    pose = _default_pose()
    keypoints = pose(pixels) if pose is not None else None
    region = agnostic_mask(pixels.shape[:2], outfit_category, parsing=parsing, keypoints=keypoints,
                           pose_checked=pose is not None).mask
    region[dilate((keep > 0).astype(np.uint8) * 255, KEEP_MARGIN) > 0] = 0
    if not region.any():
        raise EmptyTryOnMask(f"The {outfit_category!r} region lies entirely inside the kept garment.",
                             hint="Choose another outfit_category, or mark a smaller kept garment.")
    return region


__all__ = ["check_outfit_request", "outfit_region", "zero_shot_outfit"]
