"""The `design` job: a layout PNG → garment image(s) on a clean background, by route "diffusion" (segmentation
ControlNet, easyphoto.design.diffusion) or "smis" (a generator trained with the `design_train` job).

Every input error is said before a model loads: the layout (labels outside 0–45, empty, unreadable, wrong size for
a trained generator), the garment LoRA (trained or not), the route's model.
"""

from __future__ import annotations

from pathlib import Path

from easyphoto import __version__
from easyphoto.context import AppContext
from easyphoto.design.layout import read_layout
from easyphoto.errors import Cancelled, InvalidRequest
from easyphoto.generation import GenerationInterrupted, LoraRef
from easyphoto.job_params import DesignParams
from easyphoto.jobs import JobContext
from easyphoto.portrait.pipeline import resolve_seed
from easyphoto.store import read_json


def load_layout(ctx: AppContext, params: DesignParams):
    path = Path(params.layout)
    if not path.is_file():
        raise InvalidRequest(f"The layout file {path} does not exist.", phase="design",
                             hint="Send the layout PNG (the editor's download, or a label PNG).")
    return read_layout(path.read_bytes())


def garment_lora(ctx: AppContext, params: DesignParams) -> tuple[LoraRef | None, str]:
    """(the garment LoRA at the config's weight, its trigger word) when one is chosen."""
    if not params.garment_id:
        return None, ""
    from easyphoto.tryon.run import require_trained_garment

    _info, path = require_trained_garment(ctx, params.garment_id)
    layout = ctx.garments.get(params.garment_id)
    settings = read_json(layout.dataset / "dataset.json").get("settings", {}) \
        if (layout.dataset / "dataset.json").is_file() else {}
    trigger = str(settings.get("trigger") or f"{params.garment_id}_garment")
    return LoraRef(path.stem, params.config.lora_weight, path), trigger


def check_request(ctx: AppContext, params: DesignParams):
    """The layout and the route's inputs, checked; returns the layout's labels."""
    labels = load_layout(ctx, params)
    if params.config.route == "smis":
        if params.garment_id:
            raise InvalidRequest("A garment LoRA belongs to route 'diffusion'; route 'smis' draws with its own "
                                 "trained generator.", phase="design", hint="Leave garment_id out, or use route "
                                                                            "'diffusion'.")
        if not params.config.smis_model:
            raise InvalidRequest("Route 'smis' needs smis_model: the trained design model to draw with.",
                                 phase="design", hint="Train one (Design → Train, `design train`), or use route "
                                                      "'diffusion'.")
        from easyphoto.design.layout import check_layout
        from easyphoto.design.smis.run import trained_model

        trained, _ = trained_model(ctx, params.config.smis_model)  # 404 naming the model, or why it cannot draw
        check_layout(labels, size=(trained.image_size, trained.image_size))
    else:
        garment_lora(ctx, params)
    return labels


def design_operation(ctx: AppContext, params: DesignParams, job: JobContext) -> dict:
    labels = check_request(ctx, params)
    first = resolve_seed(params.config.seed)
    seeds = [(first + i) % (2**32 - 1) for i in range(params.config.batch_size)]
    job.progress(phase="loading", fraction=0.0, message=f"route {params.config.route}")
    try:
        if params.config.route == "smis":
            results = _smis(ctx, params, labels, seeds, job)
        else:
            results = _diffusion(ctx, params, labels, seeds, job)
    except GenerationInterrupted as exc:
        raise Cancelled(exc.message, hint="Generate the design again.") from exc
    from easyphoto.tryon.run import _share, write_png

    out_dir = Path(params.out) if params.out else ctx.paths.outputs_dir
    saved = [write_png(out_dir, image, infotext, _meta(params, seed), f"design-{params.config.route}")
             for image, infotext, seed in results]
    job.progress(phase="done", fraction=1.0, message=f"{len(saved)} design(s)")
    return {"images": [_share(path, job.work_dir) for path in saved], "files": [str(p) for p in saved],
            "seeds": seeds, "route": params.config.route, "size": [int(labels.shape[1]), int(labels.shape[0])]}


def _diffusion(ctx: AppContext, params: DesignParams, labels, seeds: list[int], job: JobContext) -> list:
    from easyphoto.design.diffusion import check_generator, design_from_layout
    from easyphoto.portrait.run import make_generator

    lora, trigger = garment_lora(ctx, params)
    generator = make_generator(ctx, {"base": params.base, "config_dir": params.config_dir})
    check_generator(generator)
    if hasattr(generator, "interrupt"):
        job.on_cancel(generator.interrupt)
    results = []
    for index, seed in enumerate(seeds):
        def progress(fraction: float, message: str, index=index) -> None:
            job.progress(phase="generating", fraction=(index + fraction) / len(seeds), message=message)

        made = design_from_layout(generator, labels, params.config, seed=seed, lora=lora, trigger=trigger,
                                  progress=progress, should_stop=lambda: job.cancelled)
        results.append((made.image, made.infotext, seed))
    return results


def _smis(ctx: AppContext, params: DesignParams, labels, seeds: list[int], job: JobContext) -> list:
    from easyphoto.design.smis.run import generate_from_layout

    results = []
    for index, seed in enumerate(seeds):
        job.check_cancelled()
        job.progress(phase="generating", fraction=index / len(seeds), message=f"design {index + 1}/{len(seeds)}")
        image = generate_from_layout(ctx, params.config.smis_model, labels, seed)
        infotext = (f"garment design from a layout\nSeed: {seed}, Size: {image.size[0]}x{image.size[1]}, "
                    f"EasyPhoto design route: smis, EasyPhoto design model: {params.config.smis_model}, "
                    f"Version: EasyPhoto {__version__}")
        results.append((image, infotext, seed))
    return results


def _meta(params: DesignParams, seed: int) -> dict:
    return {"easyphoto_version": __version__, "kind": "design", "seed": seed, "layout": Path(params.layout).name,
            "garment_id": params.garment_id, "config": params.config.to_dict()}


__all__ = ["check_request", "design_operation", "garment_lora", "load_layout"]
