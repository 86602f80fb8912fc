"""One identity's training, as the child process runs it: train → validate each checkpoint → merge → export.

    run(spec, emit, should_stop) -> result dict        # spec: easyphoto.train.spec.TrainSpec (or its dict)

The merge (reference §3.5, done right): the best checkpoints by validation score are combined in weight-change
space, weighted by their scores (easyphoto.train.merge), then the merged LoRA is validated on the same templates.
It is exported only if it scores at least as well as the best single checkpoint; otherwise the best single one
is exported and the result says so. Without usable scores (validation off, or no face in any image) the final
checkpoint is exported. The export is atomic, so a cancel or crash never leaves a partial <id>.safetensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from easyphoto import __version__
from easyphoto.config import TrainConfig
from easyphoto.errors import EasyPhotoError
from easyphoto.store import atomic_write_json, read_json
from easyphoto.train.spec import TrainSpec, as_spec, resolve_device

MERGE_TOP_K = 3
Emit = Callable[[dict], None]


class _Validator:
    """Holds what validation needs across checkpoints; records scores in validation/scores.json."""

    def __init__(self, spec: TrainSpec, config: TrainConfig, base, emit: Emit):
        from easyphoto.face import stacks
        from easyphoto.train import validation

        self.base, self.config, self.emit = base, config, emit
        self.out_dir = spec.validation
        paths = spec.store_paths()
        self.stack = stacks.load(spec.face_stack, paths)
        from easyphoto.train.dataset import read_holdout

        dataset = spec.dataset
        images = sorted((dataset / "train").glob("*.jpg"))
        files = validation.template_files(paths.models_root, images)
        self.templates = validation.prepare_templates(files, self.stack, config.resolution)
        held_out = [spec.layout.photos / name for name in read_holdout(dataset)]
        # Score against photos the LoRA never saw when there are enough of them, else against the training faces.
        self.reference_source = "held-out photos" if held_out else "training images"
        self.references = validation.reference_embeddings(held_out or images, self.stack)
        # A resumed training keeps the scores of the checkpoints validated before it stopped (the merge needs them).
        previous = self.out_dir / "scores.json"
        self.scores: dict[str, dict] = read_json(previous) if spec.resume and previous.is_file() else {}
        self.scores.pop("merged", None)
        self.seed = config.seed or 0
        self.unscored = "no face in any validation image"  # why no checkpoint got a score, when none did

    def __call__(self, label: str, step: int) -> float | None:
        from easyphoto.train import validation

        results = validation.validate(self.base, self.templates, self.stack, self.references, self.config.caption,
                                      step=step, out_dir=self.out_dir, seed=self.seed,
                                      steps=self.config.validation_steps, batched=self.config.validation_batch)
        score = validation.mean_score(results)
        self.scores[label] = {"step": step, "score": score, "against": self.reference_source,
                              "images": [r.__dict__ for r in results]}
        atomic_write_json(self.out_dir / "scores.json", self.scores)
        preview = str(self.out_dir / results[0].image) if results else None
        self.emit({"event": "validation", "step": step, "score": score, "image": preview, "label": label})
        return score


def _make_validator(spec: TrainSpec, config: TrainConfig, base, emit: Emit):
    """Face-ID scores for an identity; garment fidelity on the garment's own photos for a garment."""
    if spec.subject == "garment":
        from easyphoto.tryon.training import GarmentValidator

        return GarmentValidator(spec, config, base, emit)
    return _Validator(spec, config, base, emit)


def run(spec: TrainSpec | dict, emit: Emit, should_stop: Callable[[], bool]) -> dict:
    from easyphoto.sd.base_model import load_base
    from easyphoto.train.trainer import prune_checkpoints, train_lora

    spec = as_spec(spec)
    spec = spec.updated(device=resolve_device(spec.device))
    config = spec.config
    rebuilt = current_dataset(spec, config, emit) if spec.subject == "identity" else None
    if rebuilt is not None:  # the photo count may have changed with the selection settings: the reference rule again
        spec = spec.updated(steps=config.train_steps(rebuilt))
    emit({"event": "progress", "phase": "loading base model", "step": 0, "total": spec.steps, "loss": None,
          "message": spec.base_path().name})
    base = load_base(spec.base_path(), config_dir=spec.config_dir, dtype=_frozen_dtype(config, spec.device),
                     device=spec.device, allow_sdxl=True)
    validator = _make_validator(spec, config, base, emit) if config.validation else None
    started = time.monotonic()

    def on_checkpoint(step: int, path: Path) -> float | None:
        emit({"event": "checkpoint", "step": step, "path": str(path)})
        return validator(Path(path).name, step) if validator is not None else None  # the trainer prunes by it

    readout = _speed_readout(spec, config)

    def progress(step: int, total: int, loss: float) -> None:
        emit({"event": "progress", "phase": "training", "step": step, "total": total, "loss": loss,
              "message": readout.message(loss), "speed": readout.record()})

    def on_timing(kind: str, step: int, seconds: float) -> None:
        if kind == "step":
            readout.step_done(step, seconds)
        else:
            readout.checkpoint_done(seconds)

    result = train_lora(base, spec.dataset, spec.checkpoints, config, steps=spec.steps, progress=progress,
                        should_stop=should_stop, on_checkpoint=on_checkpoint, resume=spec.resume, device=spec.device,
                        merge_top_k=MERGE_TOP_K, on_timing=on_timing)
    chosen, weights, merged_info = _choose(result, validator, base, config, emit)
    lora_file = _export(spec, base, result.steps, chosen, weights)
    pruned = prune_checkpoints(spec.checkpoints, keep=config.keep_checkpoints, finished=True)
    summary = {"lora_file": str(lora_file), "steps": result.steps, "source": chosen, "merged": merged_info,
               "checkpoints": [str(c) for c in result.checkpoints if c.is_file()], "pruned": pruned,
               "scores": validator.scores if validator else {}, "seconds": round(time.monotonic() - started, 1),
               "speed": readout.record()}
    if spec.subject == "garment":
        from easyphoto.tryon.training import write_garment_json

        write_garment_json(spec, base, summary)
    else:
        _write_identity_json(spec, config, base, summary, validator)
    emit({"event": "progress", "phase": "exported", "step": result.steps, "total": spec.steps, "loss": None,
          "message": lora_file.name})
    return summary


def _export(spec: TrainSpec, base, steps: int, chosen: str, weights) -> Path:
    """Write the chosen LoRA (atomic) with the metadata the WebUI shows and EasyPhoto recognises its files by."""
    from easyphoto.sd import lora

    metadata = {"ss_output_name": spec.identity_id, "ss_steps": str(steps),
                "ss_sd_model_hash": base.model_hash or "", "ss_sd_model_name": spec.base_path().name,
                "easyphoto_version": __version__, "easyphoto_source": chosen, "easyphoto_subject": spec.subject}
    if spec.category:
        metadata["easyphoto_garment_category"] = spec.category
    return lora.save_lora(spec.lora_file, weights, metadata, family=getattr(base, "family", "sd15"))


def current_dataset(spec: TrainSpec | dict, config: TrainConfig, emit: Emit) -> int | None:
    """Make sure the dataset was prepared with this training's settings and the identity's current photos.

    A dataset made with another resolution, crop ratio, matting, caption, ... (or before photos were added or
    removed) is rebuilt here, and the number of training images is returned; None when it was current. A resumed
    training continues on the dataset it started with, so there only a settings change is an error."""
    from easyphoto.train import dataset

    spec = as_spec(spec)
    layout = spec.layout
    if spec.resume:
        changed = dataset.settings_changes(spec.dataset, config)
        if changed:
            raise EasyPhotoError(
                f"The dataset of {spec.identity_id!r} was prepared with other settings ({'; '.join(changed)}); a "
                "resumed training continues with the settings it started with.", phase="dataset",
                hint="Resume with the same settings, or start a new training (without resume) with the new ones.")
        return None
    from easyphoto.train import prepare

    changed = prepare.dataset_out_of_date(layout, config)
    if not changed:
        return None
    emit({"event": "progress", "phase": "preparing", "step": 0, "total": spec.steps, "loss": None,
          "message": f"dataset out of date ({'; '.join(changed)}): preparing it again"})
    from easyphoto.face import stacks
    from easyphoto.upscale import model_upscaler

    paths = spec.store_paths()
    upscaler = model_upscaler(paths) if config.upscale_small else None
    try:
        items = prepare.rebuild_dataset(layout, stacks.load(spec.face_stack, paths), config,
                                        max_megapixels=spec.max_upload_megapixels, upscaler=upscaler)
    finally:  # the upscaler's weights must not hold VRAM the training is about to need
        if upscaler is not None:
            upscaler.unload()
    return len(items)


def _speed_readout(spec: TrainSpec, config: TrainConfig):
    """The "time to a usable LoRA" readout of this training (easyphoto.train.speed)."""
    from easyphoto.train.speed import SpeedReadout
    from easyphoto.train.trainer import levers_in_use, read_state

    state = read_state(spec.checkpoints) if spec.resume else None
    return SpeedReadout(total_steps=spec.steps, start_step=int((state or {}).get("last_step", 0)),
                        checkpoint_every=config.validation_every, validation=config.validation,
                        levers=levers_in_use(config, spec.device), compiling=config.compile_unet)


def _frozen_dtype(config: TrainConfig, device: str):
    """Frozen base weights in half precision on CUDA when mixed precision is on (the reference's memory budget);
    the LoRA weights stay float32 either way. On the CPU everything stays float32."""
    import torch

    if not str(device).startswith("cuda") or config.mixed_precision == "no":
        return torch.float32
    return torch.bfloat16 if config.mixed_precision == "bf16" else torch.float16


def _choose(result, validator: _Validator | None, base, config: TrainConfig, emit: Emit):
    """(label of what is exported, its LoraWeights, merge record)."""
    from easyphoto.sd import lora
    from easyphoto.train import merge

    final = Path(result.checkpoints[-1])
    if validator is None:
        return final.name, lora.load_lora(final)[0], {"used": False, "reason": "validation is off"}
    scored = sorted(((v["score"], k) for k, v in validator.scores.items() if v["score"] is not None), reverse=True)
    if not scored:
        return final.name, lora.load_lora(final)[0], {"used": False,
                                                       "reason": f"{validator.unscored}: final checkpoint"}
    best_score, best_name = scored[0]
    by_name = {Path(c).name: Path(c) for c in result.checkpoints}
    scored = [(s, n) for s, n in scored if n in by_name]
    best = lora.load_lora(by_name[best_name])[0]
    # All scores go in, so the baseline is the best checkpoint left out of the top k (every one kept then gets a
    # positive share); with k or fewer scored checkpoints the lowest of them is the baseline and gets none.
    weights = merge.score_weights([s for s, _ in scored], top_k=MERGE_TOP_K)
    top = [(s, n, w) for (s, n), w in zip(scored, weights, strict=True) if w > 0]
    if len(top) < 2:
        return best_name, best, {"used": False, "reason": "fewer than two checkpoints to merge", "best": best_name}
    shares = [w for _, _, w in top]
    device = next(base.unet.parameters()).device  # SVD on the GPU when training ran there: seconds, not minutes
    merged = merge.merge_weighted([lora.load_lora(by_name[n])[0] for _, n, _ in top], shares, config.rank,
                                  device=device)
    _load_weights(base, merged)
    merged_score = validator("merged", result.steps)
    record = {"checkpoints": [n for _, n, _ in top], "weights": shares, "score": merged_score,
              "best_single": best_name, "best_single_score": best_score}
    if merged_score is not None and merged_score >= best_score:
        return "merged", merged, {**record, "used": True}
    emit({"event": "progress", "phase": "merge rejected", "step": result.steps, "total": result.steps, "loss": None,
          "message": f"merged {merged_score} < best single {best_score:.4f}: exporting {best_name}"})
    return best_name, best, {**record, "used": False, "reason": "the merge scored lower than the best checkpoint"}


def _load_weights(base, weights) -> None:
    from easyphoto.train import lora

    lora.load_into_peft(base.unet, "unet", {k: v for k, v in weights.items() if k.startswith("unet.")})
    for prefix in ("text_encoder", "text_encoder_2"):  # SD 1.5 has the first only; SDXL both
        text = {k: v for k, v in weights.items() if k.startswith(prefix + ".")}
        if text:
            lora.load_into_peft(getattr(base, prefix), prefix, text)


def _write_identity_json(spec: TrainSpec, config: TrainConfig, base, summary: dict, validator) -> None:
    path = spec.layout.identity_json
    previous = read_json(path) if path.is_file() else {}
    report = spec.layout.report
    embedding = None
    if validator is not None:
        refs = validator.references
        mean = refs.mean(axis=0)
        embedding = {"embedder": validator.stack.embedder.name, "count": len(refs),
                     "mean": [round(float(v), 6) for v in mean / (float((mean**2).sum()) ** 0.5 + 1e-12)],
                     "mean_pairwise_similarity": round(float((refs @ refs.T).mean()), 4)}
    atomic_write_json(path, {
        **previous,
        "identity_id": spec.identity_id,
        "lora_file": summary["lora_file"],
        "reference_face": "reference.jpg",
        "base_model": {"file": spec.base_path().name, "hash": base.model_hash, "family": base.family},
        "training": {k: v for k, v in summary.items() if k != "scores"},
        "reference_photo": read_json(report).get("reference") if report.is_file() else None,
        "embedding": embedding,
        "config": config.to_dict(),
        "easyphoto_version": __version__,
        "trained_at": time.time(),
    })
