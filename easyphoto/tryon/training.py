"""A garment LoRA: the identity trainer with a garment subject (issue 13).

    garment_train_operation(ctx, params, job)     # job side: dataset → TrainSpec(subject="garment") → child process
    GarmentValidator(spec, config, base, emit)    # child side: garment fidelity of each checkpoint
    write_garment_json(spec, base, summary)       # child side: garments/<id>/garment.json once exported

Training itself is the identity trainer unchanged (easyphoto.train.trainer reads dataset/metadata.jsonl: one
caption per image, here trigger + category + tags). What differs is what a checkpoint is judged by: there is no face
to recognise, so each checkpoint redraws the garment on a few of the garment's own dataset images — the garment
region painted flat grey and repainted from noise (strength 1.0) with the caption as prompt — and the result is
scored by garment fidelity (easyphoto.tryon.fidelity: colour histogram and structure in the garment mask) against
the original crop. The best checkpoints are merged and exported exactly as for identities (train/pipeline.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from easyphoto import __version__
from easyphoto.store import atomic_write_json, read_json

MAX_VALIDATION_IMAGES = 2
GREY = 127  # what the garment region is painted with before it is redrawn: no colour or texture hint is left
WHITE_LEVEL = 245  # dataset crops lie on white: a pixel with any channel below this belongs to the garment


@dataclass
class _Reference:
    name: str
    caption: str
    image: np.ndarray  # the dataset crop, RGB
    mask: np.ndarray  # uint8 0/255, the garment in the crop


def dataset_entries(dataset_dir: Path) -> list[tuple[str, str]]:
    """(file name, caption) of every training image listed in metadata.jsonl that exists."""
    meta = Path(dataset_dir) / "metadata.jsonl"
    if not meta.is_file():
        return []
    entries = []
    for line in meta.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else None
        if record and (Path(dataset_dir) / record["file_name"]).is_file():
            entries.append((record["file_name"], str(record["text"])))
    return entries


def crop_mask(dataset_dir: Path, file_name: str, image: np.ndarray) -> np.ndarray:
    """The garment mask of a dataset crop: the one the dataset step saved beside it when there is one, else every
    pixel that is not the white background (the crops are cut out onto white)."""
    for saved in (Path(dataset_dir) / "masks" / (Path(file_name).stem + ".png"),):
        if saved.is_file():
            mask = Image.open(saved).convert("L").resize((image.shape[1], image.shape[0]), Image.NEAREST)
            return (np.asarray(mask) >= 128).astype(np.uint8) * 255
    return ((image < WHITE_LEVEL).any(axis=2) * 255).astype(np.uint8)


def validation_references(dataset_dir: Path, count: int = MAX_VALIDATION_IMAGES) -> list[_Reference]:
    """Up to `count` dataset images spread over the dataset, each with a garment mask that is not empty."""
    entries = dataset_entries(dataset_dir)
    picked = [entries[i] for i in np.linspace(0, len(entries) - 1, min(count, len(entries))).round().astype(int)]
    references = []
    for name, caption in dict.fromkeys(picked):  # a 1-image dataset picks it once
        image = np.asarray(Image.open(Path(dataset_dir) / name).convert("RGB"))
        mask = crop_mask(dataset_dir, name, image)
        if mask.any():
            references.append(_Reference(name, caption, image, mask))
    return references


def blank_garment(reference: _Reference) -> tuple[Image.Image, Image.Image]:
    """(the crop with the garment painted grey, the repaint mask grown a little and softened)."""
    from easyphoto.imageops import dilate

    grown = dilate(reference.mask, max(reference.image.shape[0] // 64, 1))
    pixels = reference.image.copy()
    pixels[grown > 0] = GREY
    mask = Image.fromarray(grown, "L").filter(ImageFilter.GaussianBlur(2))
    return Image.fromarray(pixels, "RGB"), mask


class GarmentValidator:
    """Scores each checkpoint by how faithfully it redraws the garment; records validation/scores.json in the
    identity validator's format (the merge and the UI read both the same way)."""

    def __init__(self, spec, config, base, emit):
        from easyphoto.train.validation import ValidationError

        self.base, self.config, self.emit = base, config, emit
        self.out_dir = spec.validation
        self.references = validation_references(spec.dataset)
        if not self.references:
            raise ValidationError(f"The dataset of garment {spec.identity_id!r} has no image with a garment region to "
                                  "validate against.", hint="Rebuild the garment dataset, or turn validation off.")
        self.reference_source = "garment photos (garment region redrawn)"
        previous = self.out_dir / "scores.json"
        self.scores: dict[str, dict] = read_json(previous) if spec.resume and previous.is_file() else {}
        self.scores.pop("merged", None)
        self.seed = config.seed or 0
        self.unscored = "no validation image could be scored"

    def __call__(self, label: str, step: int) -> float | None:
        results = [self._score_one(index, reference, step) for index, reference in enumerate(self.references)]
        values = [r["score"] for r in results if r["score"] is not None]
        score = float(np.mean(values)) if values else None
        self.scores[label] = {"step": step, "score": score, "against": self.reference_source, "images": results}
        atomic_write_json(self.out_dir / "scores.json", self.scores)
        preview = str(self.out_dir / results[0]["image"]) if results else None
        self.emit({"event": "validation", "step": step, "score": score, "image": preview, "label": label})
        return score

    def _score_one(self, index: int, reference: _Reference, step: int) -> dict:
        from easyphoto.train.validation import Template, render
        from easyphoto.tryon.fidelity import garment_fidelity

        image, mask = blank_garment(reference)
        template = Template(reference.name, image, mask)
        rendered = render(self.base, [template], reference.caption, seed=self.seed + index, strength=1.0,
                          device=str(next(self.base.unet.parameters()).device))[0]
        name = f"step-{step:06d}-{Path(reference.name).stem}.jpg"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rendered.save(self.out_dir / name, quality=92)
        fidelity = garment_fidelity(np.asarray(rendered.convert("RGB")), reference.mask, reference.image,
                                    reference.mask)
        return {"image": name, "template": reference.name, "score": round(float(fidelity.score), 4),
                "note": fidelity.describe()}


def write_garment_json(spec, base, summary: dict) -> Path:
    """garments/<id>/garment.json: what try-on and the UI read about the trained garment (previous keys kept)."""
    path = Path(spec.identity_dir) / "garment.json"
    previous = read_json(path) if path.is_file() else {}
    return atomic_write_json(path, {
        **previous,
        "garment_id": spec.identity_id,
        "category": spec.category,
        "lora_file": summary["lora_file"],
        "base_model": {"file": spec.base_path().name, "hash": base.model_hash},
        "training": {k: v for k, v in summary.items() if k != "scores"},
        "config": spec.config.to_dict(),
        "easyphoto_version": __version__,
        "trained_at": time.time(),
    })


# ---------------------------------------------------------------------------------------------- the job side


def ensure_garment_dataset(ctx, params, job) -> tuple[list[str], float]:
    """(the dataset's training images, the job fraction used): the dataset is (re)built first when there is none or
    it no longer matches the settings, photos, masks or clicks; a resumed training keeps the one it started with."""
    from easyphoto.train.runner import PREPARE_SHARE, dataset_images
    from easyphoto.tryon import dataset

    layout = ctx.garments.get(params.garment_id)
    images = dataset_images(layout.dataset)
    if images and (params.resume or not dataset.dataset_out_of_date(layout, params.dataset)):
        return images, 0.0

    def report(index: int, total: int, name: str) -> None:
        job.check_cancelled()
        job.progress(phase="preparing", fraction=PREPARE_SHARE * index / max(total, 1), message=name,
                     step=index, total=total)

    job.progress(phase="preparing", fraction=0.0, message="cutting the garment out of its photos")
    dataset.build_garment_dataset(ctx, params.garment_id, params.dataset, progress=report,
                                  should_stop=lambda: job.cancelled)
    job.check_cancelled()
    return dataset_images(layout.dataset), PREPARE_SHARE


def garment_train_operation(ctx, params, job) -> dict:
    """garment_train: dataset → TrainSpec(subject="garment") → the training child process → garment.json."""
    from easyphoto.store import check_lora_target
    from easyphoto.train.runner import _host_offload, _state_step, base_model, run_child
    from easyphoto.train.spec import TrainSpec, write_spec

    layout = ctx.garments.get(params.garment_id)
    check_lora_target(layout.lora_file, layout.garment_id)  # never replace a LoRA EasyPhoto did not write
    base = base_model(ctx, params)
    images, offset = ensure_garment_dataset(ctx, params, job)
    config = params.config.updated(resolution=params.dataset.resolution)  # the crops' size is the dataset's
    steps = config.train_steps(len(images))
    spec = TrainSpec(
        identity_id=layout.garment_id, identity_dir=layout.root, subject="garment", category=params.dataset.category,
        dataset_dir=layout.dataset, checkpoints_dir=layout.checkpoints, validation_dir=layout.validation,
        lora_file=layout.lora_file, base=base, config_dir=Path(params.config_dir) if params.config_dir else None,
        config=config, steps=steps, resume=params.resume, device=params.device,
        models_root=ctx.paths.models_root, paths=ctx.paths.to_dict(), face_stack=ctx.settings.face_stack,
        max_upload_megapixels=ctx.settings.max_upload_megapixels,
    )
    spec_file = write_spec(job.work_dir / "spec.json", spec)
    if params.resume and _state_step(layout.checkpoints):
        job.resumable(_state_step(layout.checkpoints))
    with _host_offload(ctx):
        return {**run_child(spec_file, job, steps=steps, offset=offset), "garment_id": layout.garment_id}
