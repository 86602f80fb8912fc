"""Face-ID validation of LoRA checkpoints (reference §3.5, without its per-validation model reloads).

At each checkpoint the face region of a few template photos is inpainted with the UNet and text encoder as they
are at that moment (the LoRA layers live in the same modules, so nothing is reloaded), and every result is scored
by the face embedder against the identity's own training faces: the mean cosine similarity of the largest face.
An image without a detectable face scores None and says so (tiny test models draw noise; real ones draw faces).

Templates: the reference's training templates when they are in `models/easyphoto/training_templates/`, else up to
four of the identity's kept photos (fully offline; the face is masked, so the model must redraw it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from easyphoto.errors import EasyPhotoError
from easyphoto.face.stacks import FaceStack
from easyphoto.face.types import cosine
from easyphoto.imageops import load_photo, to_array

MAX_TEMPLATES = 4
NEGATIVE_PROMPT = "lowres, blurry, deformed face, bad anatomy, extra fingers, watermark, text, nsfw"


class ValidationError(EasyPhotoError):
    phase = "validation"


@dataclass
class Template:
    name: str
    image: Image.Image  # RGB, sides multiples of 8 (tiny models) and of 64 at real sizes
    mask: Image.Image  # L, white = face region to redraw


@dataclass
class Score:
    image: str  # file name of the rendered validation image
    template: str
    score: float | None
    note: str = ""


def template_files(models_root: Path, kept_photos: Sequence[Path]) -> list[Path]:
    shipped = sorted((models_root / "training_templates").glob("*.jpg")) if models_root else []
    return (shipped or list(kept_photos))[:MAX_TEMPLATES]


def prepare_templates(files: Sequence[Path], stack: FaceStack, resolution: int) -> list[Template]:
    """Resize so the short side is `resolution` (both sides floored to a multiple of 8 — of 64 from 512 up), and
    mask the largest face box grown ×1.3, as the reference does. A template without a face is an error naming it."""
    templates = []
    multiple = 64 if resolution >= 512 else 8
    for path in files:
        image = load_photo(path).image
        scale = resolution / min(image.size)
        size = tuple(max(multiple, int(side * scale) // multiple * multiple) for side in image.size)
        image = image.resize(size, Image.LANCZOS)
        faces = stack.detector.detect(to_array(image))
        if not faces:
            raise ValidationError(f"Validation template {path.name} has no face.",
                                  hint="Use photos with one clearly visible face as validation templates.")
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rectangle(faces[0].expanded_box(1.3, image.size), fill=255)
        templates.append(Template(path.name, image, mask.filter(ImageFilter.GaussianBlur(2))))
    if not templates:
        raise ValidationError("There are no validation templates.", hint="Keep at least one photo with a face.")
    return templates


def reference_embeddings(images: Sequence[Path], stack: FaceStack) -> np.ndarray:
    """Embeddings of the identity's training faces (largest face of each image); images without a face are skipped."""
    vectors = []
    for path in images:
        array = to_array(load_photo(path).image)
        faces = stack.detector.detect(array)
        if faces:
            vectors.append(stack.embedder.embed(array, faces[0]))
    if not vectors:
        raise ValidationError("No face was found in the training images, so checkpoints cannot be scored.",
                              hint="Re-check the photos, or turn validation off for this training.")
    return np.stack(vectors)


def score_image(image: Image.Image, stack: FaceStack, references: np.ndarray) -> tuple[float | None, str]:
    array = to_array(image)
    faces = stack.detector.detect(array)
    if not faces:
        return None, "no face found in the validation image"
    vector = stack.embedder.embed(array, faces[0])
    return float(np.mean([cosine(vector, r) for r in references])), ""


def render(base, templates: Sequence[Template], prompt: str, *, seed: int, steps: int = 20, strength: float = 0.65,
           guidance: float = 9.0, device: str = "cpu", batched: bool = True) -> list[Image.Image]:
    """Inpaint each template's face with the modules as they are now (LoRA included); restores train mode after.

    `batched` renders the templates of one size in one call: template i keeps its own generator (seed + i), so
    each image is the one a call of its own would draw, up to float rounding."""
    import torch

    pipe = _inpaint_pipeline(base)
    pipe.set_progress_bar_config(disable=True)
    modules = (base.unet, base.text_encoder, getattr(base, "text_encoder_2", None), base.vae)
    modes = {m: m.training for m in modules if m is not None}
    for module in modes:
        module.eval()
    try:
        images: dict[int, Image.Image] = {}
        for group in _groups(templates, batched):
            chosen = [templates[i] for i in group]
            with torch.no_grad():
                out = pipe(prompt=[prompt] * len(group), negative_prompt=[NEGATIVE_PROMPT] * len(group),
                           image=[t.image for t in chosen], mask_image=[t.mask for t in chosen],
                           width=chosen[0].image.width, height=chosen[0].image.height, strength=strength,
                           num_inference_steps=steps, guidance_scale=guidance,
                           generator=[torch.Generator(device="cpu").manual_seed(seed + i) for i in group])
            images.update(zip(group, out.images, strict=True))
        return [images[i] for i in range(len(templates))]
    finally:
        for module, training in modes.items():
            module.train(training)


def _inpaint_pipeline(base):
    """An inpaint pipeline around the base's own modules (LoRA layers included): SD 1.5's, or SDXL's with both
    text encoders (its 4-channel UNet inpaints by blending the kept latents back at every step)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

    scheduler = DPMSolverMultistepScheduler.from_config(base.noise_scheduler.config)
    if getattr(base, "family", "sd15") == "sdxl":
        return StableDiffusionXLInpaintPipeline(
            vae=base.vae, text_encoder=base.text_encoder, text_encoder_2=base.text_encoder_2, tokenizer=base.tokenizer,
            tokenizer_2=base.tokenizer_2, unet=base.unet, scheduler=scheduler, requires_aesthetics_score=False,
            force_zeros_for_empty_prompt=True)
    return StableDiffusionInpaintPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _groups(templates: Sequence[Template], batched: bool) -> list[list[int]]:
    """Indices of the templates rendered together: one group per image size when batched, else one each."""
    if not batched:
        return [[i] for i in range(len(templates))]
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, template in enumerate(templates):
        by_size.setdefault(template.image.size, []).append(index)
    return list(by_size.values())


def validate(base, templates: Sequence[Template], stack: FaceStack, references: np.ndarray, prompt: str, *,
             step: int, out_dir: Path, seed: int, steps: int = 20, batched: bool = True) -> list[Score]:
    """Render, save (validation/step-NNNNNN-<template>.jpg) and score every template at this checkpoint."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = []
    rendered = render(base, templates, prompt, seed=seed, steps=steps, batched=batched)
    for template, image in zip(templates, rendered, strict=True):
        name = f"step-{step:06d}-{Path(template.name).stem}.jpg"
        image.save(out_dir / name, quality=92)
        value, note = score_image(image, stack, references)
        scores.append(Score(name, template.name, value, note))
    return scores


def mean_score(scores: Sequence[Score]) -> float | None:
    values = [s.score for s in scores if s.score is not None]
    return float(np.mean(values)) if values else None
