"""The "design_train" job (the native generator's trainer) and inference from a layout (the design's route 2).

    result = design_train_operation(ctx, DesignTrainParams(model_name="shirts", dataset="/data/fgvc6"), job)
    image = generate_from_layout(ctx, "shirts", labels, seed=7)      # PIL RGB, white outside the layout's mask

Order, so that every mistake is said before anything is deleted or trained: the name, resume/overwrite against
what is on disk, the VGG19 file (downloaded when online and missing; MissingWeights offline), the dataset (every
photo paired with its layout, labels checked) → the offline resize cache (reused when the dataset has not changed)
→ training, with progress per step, a sample grid every `sample_every` steps and a checkpoint every
`checkpoint_every` (each one's step recorded with job.resumable). A cancel stops between two steps and saves a
checkpoint there first. The model's folder:

    <data>/designs/<name>/model.json              settings, dataset, state, latest step
    <data>/designs/<name>/generator.safetensors   the latest generator (what inference loads)
    <data>/designs/<name>/checkpoints/            step_XXXXX.safetensors + .json (resumable state)
    <data>/designs/<name>/losses.jsonl            one line per step: every loss term
    <data>/designs/<name>/samples/step_XXXXX.png  layout | generated | real, per sample step
    <data>/designs/<name>/cache/                  the resized dataset

The training runs in this process (the networks are small next to a diffusion model): inside the WebUI, as for the
LoRA trainer, the host's checkpoint is moved off the GPU meanwhile (AppContext.host_offload).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from easyphoto import weights
from easyphoto.context import AppContext
from easyphoto.design.layout import NUM_CLASSES, check_layout
from easyphoto.design.smis.cache import LayoutCache, build_cache
from easyphoto.design.smis.checkpoint import checkpoint_steps, read_checkpoint, save_tensors, write_checkpoint
from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.design.smis.fgvc6 import LAYOUT_HELP, DesignDatasetError, scan_dataset
from easyphoto.design.smis.params import DesignTrainParams
from easyphoto.design.smis.trainer import SMISTrainer, build_generator, needs_vgg, pick_device, render, sample_grid
from easyphoto.errors import Cancelled, Conflict, EasyPhotoError, InvalidRequest
from easyphoto.jobs import JobContext
from easyphoto.store import _validate_slug, atomic_write_json, atomic_write_text, read_json

VGG_ID = "vgg19-features"
MODEL_FILE, GENERATOR_FILE, LOSSES_FILE = "model.json", "generator.safetensors", "losses.jsonl"
CACHE_SHARE = 0.05  # of the job's fraction: building the resize cache
MODEL_FORMAT = "easyphoto-smis-1"


class InvalidDesignName(EasyPhotoError):
    phase = "design"
    http_status = 422


class DesignModelNotFound(EasyPhotoError):
    phase = "design"
    http_status = 404


class DesignModelDamaged(EasyPhotoError):
    phase = "design"
    http_status = 409


def designs_dir(ctx: AppContext) -> Path:
    return ctx.paths.data_root / "designs"


def model_folder(ctx: AppContext, model_name: str) -> Path:
    """`<data>/designs/<name>`; InvalidDesignName unless the name is a safe slug."""
    return designs_dir(ctx) / _validate_slug(model_name, "design model", InvalidDesignName)


# ---------------------------------------------------------------------------------------------- the job


def check_request(ctx: AppContext, params: DesignTrainParams) -> DesignTrainConfig:
    """The checks the API and the CLI can make before they submit (cheap: nothing read but small files); returns
    the settings the training will use."""
    folder = model_folder(ctx, params.model_name)
    if params.resume and params.overwrite:
        raise InvalidRequest("resume and overwrite exclude each other.", phase="design",
                             hint="resume continues the model, overwrite starts it again: choose one.")
    if not Path(params.dataset).is_dir():
        raise DesignDatasetError(f"The dataset folder {params.dataset} does not exist.", hint=LAYOUT_HELP)
    exists = (folder / MODEL_FILE).is_file()
    if params.resume:
        if not exists or not checkpoint_steps(folder / "checkpoints"):
            raise Conflict(f"Design model {params.model_name!r} has no checkpoint to resume from.", phase="design",
                           hint="Start it without resume.")
        config = _resume_config(folder, params.config)
        reached = checkpoint_steps(folder / "checkpoints")[-1]
        if config.steps < reached:
            raise InvalidRequest(f"Design model {params.model_name!r} is at step {reached} already; steps "
                                 f"{config.steps} would end before it.", phase="design",
                                 hint=f"Resume with steps above {reached}.")
        return config
    if exists and not params.overwrite:
        raise Conflict(f"Design model {params.model_name!r} exists.", phase="design",
                       hint="Resume it (resume), start it again (overwrite), or choose another name.")
    return params.config or DesignTrainConfig()


def _resume_config(folder: Path, requested: DesignTrainConfig | None) -> DesignTrainConfig:
    saved = DesignTrainConfig.from_dict(read_json(folder / MODEL_FILE)["config"])
    if requested is None:
        return saved
    before, after = saved.architecture(), requested.architecture()
    changed = sorted(k for k in before if before[k] != after[k])
    if changed:
        raise InvalidRequest(f"A resumed training keeps its settings; these differ from the model's: "
                             f"{', '.join(changed)}.", phase="design",
                             hint="Resume without a config (the model's own is used), or change only steps, "
                                  "sample_every, checkpoint_every or keep_checkpoints.")
    return requested


def design_train_operation(ctx: AppContext, params: DesignTrainParams, job: JobContext) -> dict:
    config = check_request(ctx, params)
    folder = model_folder(ctx, params.model_name)
    vgg_file = _vgg_file(ctx, job) if needs_vgg(config) else None
    index = scan_dataset(params.dataset)
    if params.overwrite:  # only now: a typo in the dataset must not cost the old model
        _clear(folder)
    cache = build_cache(folder / "cache", index, config.image_size, progress=_cache_progress(job),
                        should_stop=lambda: job.cancelled)
    job.check_cancelled()
    from easyphoto.train.runner import _host_offload

    with _host_offload(ctx):
        device = pick_device(params.device)
        trainer = SMISTrainer(config, device, _load_vgg(vgg_file, device))
        start = _start_step(folder, trainer, params.resume, job)
        _write_model(folder, config, params.dataset, start, "training")
        return _train(folder, trainer, cache, start, job)


def _vgg_file(ctx: AppContext, job: JobContext) -> Path:
    def progress(entry_id: str, done: int, total: int | None) -> None:
        job.check_cancelled()
        job.progress(phase="downloading", message=f"{entry_id} (VGG19 for the perceptual and style losses)",
                     fraction=None)

    return weights.ensure([VGG_ID], ctx.paths, offline=ctx.offline, progress=progress,
                          cancel=lambda: job.cancelled)[0]


def _load_vgg(path: Path | None, device):
    from easyphoto.design.smis.vgg import load_vgg19

    return None if path is None else load_vgg19(path, device)


def _cache_progress(job: JobContext):
    def report(done: int, total: int, name: str) -> None:
        job.progress(phase="caching", fraction=CACHE_SHARE * done / max(total, 1), message=name, step=done,
                     total=total)

    return report


def _clear(folder: Path) -> None:
    """Everything of a model but its resize cache (keyed by the dataset, it stays valid)."""
    for name in (MODEL_FILE, GENERATOR_FILE, LOSSES_FILE):
        (folder / name).unlink(missing_ok=True)
    for name in ("checkpoints", "samples"):
        shutil.rmtree(folder / name, ignore_errors=True)


def _start_step(folder: Path, trainer: SMISTrainer, resume: bool, job: JobContext) -> int:
    if not resume:
        return 0
    step = checkpoint_steps(folder / "checkpoints")[-1]
    tensors, _info = read_checkpoint(folder / "checkpoints", step)
    trainer.restore(tensors)
    kept = [r for r in read_losses_file(folder / LOSSES_FILE) if r.get("step", 0) <= step]
    atomic_write_text(folder / LOSSES_FILE, "".join(json.dumps(r) + "\n" for r in kept))
    job.resumable(step)
    return step


def _write_model(folder: Path, config: DesignTrainConfig, dataset: str, step: int, state: str) -> None:
    atomic_write_json(folder / MODEL_FILE, {"format": MODEL_FORMAT, "config": config.to_dict(), "dataset": dataset,
                                            "classes": NUM_CLASSES, "step": step, "state": state})


def _set_state(folder: Path, state: str, step: int) -> None:
    model = read_json(folder / MODEL_FILE)
    atomic_write_json(folder / MODEL_FILE, {**model, "state": state, "step": step})


def _train(folder: Path, trainer: SMISTrainer, cache: LayoutCache, start: int, job: JobContext) -> dict:
    cfg, saved, shown = trainer.config, start, []
    for step in range(start, cfg.steps):
        try:
            job.check_cancelled()
        except Cancelled:
            if step > saved:
                _save(folder, trainer, step, job)
            _set_state(folder, "cancelled", step)
            raise Cancelled(f"Training stopped at step {step}; the checkpoint there is kept.",
                            hint="Resume the model to continue from it.") from None
        values = trainer.train_step(cache, step)
        done = step + 1
        _append_losses(folder / LOSSES_FILE, {"step": done, **values})
        preview = None
        if done % cfg.sample_every == 0 or done == cfg.steps:
            grid = sample_grid(trainer.generator, cache, cfg, trainer.device, folder / "samples" / f"step_{done:05d}.png")
            preview = job.work_dir / _share(grid, job.work_dir)
            shown.append(preview.name)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _save(folder, trainer, done, job, values)
            saved = done
        job.progress(phase="training", fraction=CACHE_SHARE + (1 - CACHE_SHARE) * done / cfg.steps, step=done,
                     total=cfg.steps, message=_summary(values), preview=preview)
    final = max(saved, start)
    _set_state(folder, "done", final)
    job.progress(phase="done", fraction=1.0, message=f"trained to step {final}")
    return {"model_name": folder.name, "step": final, "steps": cfg.steps, "images": shown,
            "generator": str(folder / GENERATOR_FILE), "losses": str(folder / LOSSES_FILE),
            "samples": str(folder / "samples"), "photos": len(cache), "skipped": list(cache.skipped),
            "device": str(trainer.device)}


def _save(folder: Path, trainer: SMISTrainer, step: int, job: JobContext, values: dict | None = None) -> None:
    cfg = trainer.config
    write_checkpoint(folder / "checkpoints", step, trainer.tensors(),
                     {"seed": cfg.seed, "config": cfg.to_dict(), "losses": values or {}}, cfg.keep_checkpoints)
    generator = {k: v.detach().cpu().contiguous() for k, v in trainer.generator.state_dict().items()}
    save_tensors(folder / GENERATOR_FILE, generator, {"step": str(step)})
    _set_state(folder, "training", step)
    job.resumable(step)


def _append_losses(path: Path, record: dict) -> None:
    """An append-only log: a crash can cut its last line at worst, which read_losses_file skips; a resume rewrites
    it atomically up to the checkpoint's step."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _summary(values: dict) -> str:
    return ", ".join(f"{k} {values[k]:.3f}" for k in ("g_total", "d_total", "g_vgg", "g_feat"))


def _share(saved: Path, work_dir: Path) -> str:
    """A link (else a copy) of a sample grid in the job's folder, where GET /jobs/{id}/result finds it."""
    target = work_dir / saved.name
    target.unlink(missing_ok=True)
    try:
        os.link(saved, target)
    except OSError:
        shutil.copy2(saved, target)
    return target.name


# ---------------------------------------------------------------------------------------------- reading models


def read_losses_file(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return records


def read_losses(ctx: AppContext, model_name: str) -> list[dict]:
    """Every logged step of a model ({"step": n, "g_gan": ..., ...}): its loss curves."""
    return read_losses_file(model_folder(ctx, model_name) / LOSSES_FILE)


def list_design_models(ctx: AppContext) -> list[dict]:
    """The design models on disk: name, state (training/cancelled/done), step, steps, image size, whether a
    generator can be used yet."""
    root = designs_dir(ctx)
    models = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        if (folder / MODEL_FILE).is_file():
            model = read_json(folder / MODEL_FILE)
            config = model.get("config", {})
            models.append({"name": folder.name, "state": model.get("state"), "step": model.get("step"),
                           "steps": config.get("steps"), "image_size": config.get("image_size"),
                           "trained": (folder / GENERATOR_FILE).is_file(), "dataset": model.get("dataset")})
    return models


# ---------------------------------------------------------------------------------------------- inference

_loaded: dict[tuple, object] = {}
_lock = threading.Lock()


def generate_from_layout(ctx: AppContext, model_name: str, labels: np.ndarray, seed: int, *,
                         device: str | None = None):
    """The model's garment for a layout ((H, W) labels at the model's size): a PIL RGB image, white wherever the
    layout has no class (composited by construction). Same seed, same image."""
    from PIL import Image

    if not 0 <= int(seed) < 2**63:
        raise InvalidRequest(f"The seed must be 0 or more, not {seed}.", phase="design")
    config, weights_file = trained_model(ctx, model_name)
    layout = check_layout(labels, size=(config.image_size, config.image_size))
    target = pick_device(device)
    generator = _generator(weights_file, config, target)
    pixels = render(generator, layout[None], int(seed), config.latent_size, target)[0]
    return Image.fromarray(pixels, "RGB")


def trained_model(ctx: AppContext, model_name: str) -> tuple[DesignTrainConfig, Path]:
    """(settings, generator file) of a model that can draw; DesignModelNotFound otherwise."""
    folder = model_folder(ctx, model_name)
    weights_file = folder / GENERATOR_FILE
    if not (folder / MODEL_FILE).is_file():
        raise DesignModelNotFound(f"There is no design model {model_name!r}.",
                                  hint="Train one first (design_train), or pick one of the listed models.")
    if not weights_file.is_file():
        raise DesignModelNotFound(f"Design model {model_name!r} has no generator yet (no checkpoint was saved).",
                                  hint="Let the training reach its first checkpoint, or resume it.")
    return DesignTrainConfig.from_dict(read_json(folder / MODEL_FILE)["config"]), weights_file


def _generator(path: Path, config: DesignTrainConfig, device):
    """The generator of `path`, kept loaded for the next request (one at a time; unload() frees it)."""
    from safetensors import SafetensorError

    from easyphoto.design.smis.checkpoint import load_tensors

    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, str(device))
    with _lock:
        if key not in _loaded:
            _loaded.clear()
            generator = build_generator(config)
            try:
                generator.load_state_dict(load_tensors(path))
            except (RuntimeError, OSError, SafetensorError) as exc:  # another architecture, a damaged file
                raise DesignModelDamaged(f"{path} does not hold this model's generator ({str(exc)[:300]}).",
                                         hint="Resume the training to write it again from the last checkpoint."
                                         ) from exc
            _loaded[key] = generator.to(device).eval()
        return _loaded[key]


def unload() -> None:
    with _lock:
        _loaded.clear()
