"""The "portrait_compare" job: LoRA vs training-free on one template, so users judge the methods on their own photos.

Both renders use the same PortraitConfig, seed, template face, face stack and likeness gate; only the identity
mode differs (the LoRA's, then `compare.training_free_mode`). Everything both need is checked before the first
generation: the LoRA and the reference face, every ControlNet and face model, enough units.
"""

from __future__ import annotations

from pathlib import Path

from easyphoto.context import AppContext
from easyphoto.face import stacks
from easyphoto.imageops import load_photo
from easyphoto.job_params import ComparePortraitParams, PortraitParams
from easyphoto.jobs import JobContext
from easyphoto.portrait import outputs
from easyphoto.portrait.pipeline import PortraitPipeline, resolve_seed
from easyphoto.portrait.run import (
    _share,
    _unload,
    _upscaler,
    load_identity,
    make_generator,
    require_ready,
    template_path,
)
from easyphoto.portrait.template import analyse


def check_request(ctx: AppContext, params: ComparePortraitParams) -> None:
    """Cheap checks the API and the CLI run before submitting: a trained identity (its LoRA is one side) with a
    reference face (the other side), and a template that exists."""
    require_ready(ctx, params.identity_id, "lora")
    require_ready(ctx, params.identity_id, params.compare.training_free_mode)
    template_path(ctx, params.template)


def compare_operation(ctx: AppContext, params: ComparePortraitParams, job: JobContext) -> dict:
    check_request(ctx, params)
    job.progress(phase="loading", fraction=0.0, message="face models and identity")
    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    lora_config = params.config.updated(identity_mode="lora", batch_size=1)
    free_config = lora_config.updated(identity_mode=params.compare.training_free_mode,
                                      identity_weight=params.compare.identity_weight)
    sides = [("lora", lora_config), ("training_free", free_config)]
    identities = {name: load_identity(ctx, params.identity_id, stack, cfg.identity_mode) for name, cfg in sides}
    generator = make_generator(ctx, PortraitParams.checked({
        "identity_ids": [params.identity_id], "templates": [params.template], "config": lora_config.to_dict(),
        "base": params.base, "config_dir": params.config_dir}, "portrait"))
    upscaler = _upscaler(ctx, lora_config)
    try:
        pipelines = {name: PortraitPipeline(generator, stack, cfg, upscaler=upscaler) for name, cfg in sides}
        for pipeline in pipelines.values():
            pipeline.check()  # both sides' models and units, before either generates
        if hasattr(generator, "interrupt"):
            job.on_cancel(generator.interrupt)
        path = template_path(ctx, params.template)
        analysis = analyse(load_photo(path, max_megapixels=ctx.settings.max_upload_megapixels).image, path.name,
                           stack.detector)
        seed = resolve_seed(params.config.seed)
        faces = [params.face_index] if params.face_index is not None else None
        out_dir = Path(params.out) if params.out else ctx.paths.outputs_dir
        result = {"identity_id": params.identity_id, "template": path.name, "seed": seed,
                  "training_free_mode": params.compare.training_free_mode, "backend": generator.name, "images": []}
        for number, (name, _) in enumerate(sides):
            cfg = pipelines[name].config  # with the checkpoint family's defaults (check() applied them)
            share = (number / 2, (number + 1) / 2)

            def progress(fraction: float, message: str, share=share, name=name) -> None:
                job.progress(phase="generating", fraction=share[0] + (share[1] - share[0]) * fraction,
                             message=f"{name}: {message}")

            rendered = pipelines[name].render(analysis, [identities[name]], faces, seed, progress,
                                              lambda: job.cancelled)
            job.check_cancelled()
            saved = outputs.save(rendered, cfg, out_dir)
            result["images"].append(_share(saved, job.work_dir))
            result[name] = {"file": str(saved), "image": result["images"][-1], "identity_mode": cfg.identity_mode,
                            "likeness": rendered.likeness, "attempts": rendered.attempts,
                            "face_model_licence": outputs.metadata(rendered, cfg)["face_model_licence"]}
    finally:
        _unload(upscaler)
    job.progress(phase="done", fraction=1.0, message="LoRA vs training-free: done")
    return result
