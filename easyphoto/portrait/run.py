"""The "portrait" job: identities + templates + PortraitConfig → saved portraits with likeness scores.

Everything that can be checked is checked before the first generation: identities exist and have a LoRA and a
reference face, the backend has every ControlNet model the config needs, every template has the faces asked for.
With several templates, a template that cannot be used is reported in the result and the others still render.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from easyphoto.config import DEFAULT_CAPTION, PortraitConfig
from easyphoto.context import AppContext
from easyphoto.errors import Cancelled, EasyPhotoError, InvalidRequest
from easyphoto.face import stacks
from easyphoto.face.stacks import FaceStack
from easyphoto.face.types import largest_first
from easyphoto.generation import GenerationInterrupted, LoraRef
from easyphoto.identity_modes import is_training_free
from easyphoto.imageops import load_photo, to_array
from easyphoto.job_params import PortraitParams
from easyphoto.jobs import JobContext
from easyphoto.portrait import outputs, templates
from easyphoto.portrait.fusion import FaceImage, face_masks
from easyphoto.portrait.pipeline import IdentityAssets, PortraitPipeline, resolve_seed
from easyphoto.portrait.template import TemplateError, analyse
from easyphoto.store import read_json

log = logging.getLogger("easyphoto")
MAX_SCORING_PHOTOS = 8  # embeddings to score likeness against when identity.json has none for this face stack


class IdentityNotReady(EasyPhotoError):
    phase = "identity"
    http_status = 409


def require_trained(ctx: AppContext, identity_id: str) -> tuple[dict, Path]:
    """(identity.json, its LoRA file) of a trained identity; IdentityNotReady (409) before any job when it is not.
    Cheap (no model, no face stack), so the API and the CLI call it before they submit a portrait job."""
    layout = ctx.identities.get(identity_id)  # InvalidIdentityId / IdentityNotFound
    info = read_json(layout.identity_json) if layout.identity_json.is_file() else {}
    lora_file = info.get("lora_file")
    lora_path = Path(lora_file) if lora_file else ctx.paths.lora_dir / f"{identity_id}.safetensors"
    if not lora_path.is_absolute():
        lora_path = ctx.paths.lora_dir / lora_path
    if not info or not lora_path.is_file():
        raise IdentityNotReady(f"Identity {identity_id!r} has no trained LoRA yet (expected {lora_path}).",
                               hint="Train it first in EasyPhoto → Train, or import a bundle that contains its LoRA.")
    return info, lora_path


def require_ready(ctx: AppContext, identity_id: str, identity_mode: str = "lora") -> dict:
    """identity.json ({} before training) of an identity that can be rendered in `identity_mode`: trained (LoRA
    mode), or with checked photos and so a reference face (training-free modes). IdentityNotReady (409) before any
    job otherwise; cheap, like require_trained."""
    if not is_training_free(identity_mode):
        return require_trained(ctx, identity_id)[0]
    layout = ctx.identities.get(identity_id)  # InvalidIdentityId / IdentityNotFound
    info = read_json(layout.identity_json) if layout.identity_json.is_file() else {}
    path = layout.root / str(info.get("reference_face") or "reference.jpg")
    if not path.is_file():
        raise IdentityNotReady(
            f"Identity {identity_id!r} has no reference face yet ({path.name}): training-free mode "
            f"({identity_mode}) renders from it.",
            hint="Upload its photos and run “Check photos” in EasyPhoto → Train (no training needed).")
    return info


def load_identity(ctx: AppContext, identity_id: str, stack: FaceStack, identity_mode: str = "lora") -> IdentityAssets:
    """What rendering needs; in a training-free mode no LoRA (the reference face of the checked photos is enough)."""
    layout = ctx.identities.get(identity_id)
    free = is_training_free(identity_mode)
    info, lora_path = (require_ready(ctx, identity_id, identity_mode), None) if free else \
        require_trained(ctx, identity_id)
    reference = _reference_face(layout.root / str(info.get("reference_face") or "reference.jpg"), identity_id, stack)
    embeddings = _embeddings(info, layout, stack, reference)
    if lora_path is None:
        return IdentityAssets(identity_id, None, reference, embeddings, trigger="")  # no LoRA: no trigger word
    trigger = str((info.get("config") or {}).get("caption") or DEFAULT_CAPTION)
    return IdentityAssets(identity_id, LoraRef(lora_path.stem, 1.0, lora_path), reference, embeddings, trigger)


def _reference_face(path: Path, identity_id: str, stack: FaceStack) -> FaceImage:
    if not path.is_file():
        raise IdentityNotReady(f"Identity {identity_id!r} has no reference face ({path.name}).",
                               hint="Run “Check photos” for it again: the reference face is chosen there.")
    pixels = to_array(load_photo(path).image)
    faces = largest_first(stack.detector.detect(pixels))
    if not faces:
        raise IdentityNotReady(f"No face was found in the reference face of {identity_id!r} ({path}).",
                               hint="Run “Check photos” again so a new reference face is chosen.")
    return FaceImage(pixels, faces[0], face_masks(stack.parser, pixels, faces[0]))


def _embeddings(info: dict, layout, stack: FaceStack, reference: FaceImage) -> np.ndarray:
    """The identity's photos as the face stack in use sees them: identity.json's mean when it was made by the same
    embedder, else up to 8 kept photos embedded now, else the reference face alone."""
    stored = info.get("embedding") or {}
    if stored.get("embedder") == stack.embedder.name and stored.get("mean"):
        return np.asarray([stored["mean"]], np.float32)
    report = read_json(layout.report) if layout.report.is_file() else {}
    vectors = []
    for photo in [p for p in report.get("photos", []) if p.get("kept")][:MAX_SCORING_PHOTOS]:
        try:
            pixels = to_array(load_photo(layout.photos / photo["file"]).image)
        except EasyPhotoError:
            continue
        faces = largest_first(stack.detector.detect(pixels))
        if faces:
            vectors.append(stack.embedder.embed(pixels, faces[0]))
    if not vectors:
        vectors = [stack.embedder.embed(reference.pixels, reference.face)]
    return np.stack(vectors).astype(np.float32)


def template_path(ctx: AppContext, value: str) -> Path:
    """A gallery name ("user/x.png", "preset/1.jpg") or a file path (CLI, API uploads)."""
    if value.split("/", 1)[0] in templates.folders(ctx.paths) and not Path(value).is_absolute():
        return templates.resolve(ctx.paths, value)
    path = Path(value)
    if not path.is_file():
        raise InvalidRequest(f"Template {value!r} is neither a gallery template nor a file.", phase="template")
    return path


def portrait_operation(ctx: AppContext, params: PortraitParams, job: JobContext) -> dict:
    if not params.identity_ids:
        raise InvalidRequest("Choose at least one identity for the portrait.", phase="portrait")
    if not params.templates:
        raise InvalidRequest("Choose at least one template photo.", phase="portrait")
    job.progress(phase="loading", fraction=0.0, message="face models and identities")
    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    identities = [load_identity(ctx, i, stack, params.config.identity_mode) for i in params.identity_ids]
    files = [template_path(ctx, t) for t in params.templates]
    generator = make_generator(ctx, params)
    upscaler = _upscaler(ctx, params.config)
    try:
        pipeline = PortraitPipeline(generator, stack, params.config, upscaler=upscaler)
        pipeline.check()
        if hasattr(generator, "interrupt"):
            job.on_cancel(generator.interrupt)
        counts_before = generator.counter.totals()  # the generator (and its counter) outlives the job
        batch = _Batch(ctx, job, pipeline, identities, params, len(files))
        for t_index, path in enumerate(files):
            batch.template(t_index, path)
    finally:
        _unload(upscaler)  # the upscaler's model must not hold VRAM the next job (a training) needs
    job.progress(phase="done", fraction=1.0, message=f"{len(batch.portraits)} portrait(s)")
    evaluations = {k: v - counts_before.get(k, 0) for k, v in generator.counter.totals().items()}
    return {"portraits": batch.portraits, "failed": batch.failures, "images": batch.images,
            "backend": generator.name, "evaluations": evaluations}


class _Batch:
    """Renders every template × batch_size portraits, collecting the saved ones and the templates that failed.

    With a single template its error is the job's; with several, a template that cannot be used is listed in
    `failures` and the others still render."""

    def __init__(self, ctx: AppContext, job: JobContext, pipeline: PortraitPipeline, identities: list,
                 params: PortraitParams, templates: int):
        self.ctx, self.job, self.pipeline, self.identities = ctx, job, pipeline, identities
        self.config, self.face_indices = pipeline.config, params.face_indices or None  # family defaults applied
        self.out_dir = Path(params.out) if params.out else ctx.paths.outputs_dir
        self.single = templates == 1
        self.seed = resolve_seed(self.config.seed)
        self.total = templates * self.config.batch_size
        self.portraits: list[dict] = []
        self.failures: list[dict] = []
        self.images: list[str] = []

    def template(self, t_index: int, path: Path) -> None:
        try:
            analysis = analyse(load_photo(path, max_megapixels=self.ctx.settings.max_upload_megapixels).image,
                               path.name, self.pipeline.stack.detector)
        except EasyPhotoError as exc:
            self._failed(path, exc)
            return
        for b in range(self.config.batch_size):
            try:
                self._render(analysis, path, t_index * self.config.batch_size + b)
            except TemplateError as exc:
                self._failed(path, exc)
                return

    def _failed(self, path: Path, exc: EasyPhotoError) -> None:
        if self.single:
            raise exc
        self.failures.append({"template": path.name, "error": exc.to_dict()})

    def _render(self, analysis, path: Path, done: int) -> None:
        job, total = self.job, self.total

        def progress(fraction: float, message: str) -> None:
            job.progress(phase="generating", fraction=(done + fraction) / total,
                         message=f"{path.name} ({done + 1}/{total}): {message}")

        try:
            result = self.pipeline.render(analysis, self.identities, self.face_indices, self.seed + done, progress,
                                          lambda: job.cancelled)
        except GenerationInterrupted as exc:  # job cancel, or the WebUI's Interrupt button
            raise Cancelled(f"{exc.message} {len(self.portraits)} portrait(s) were saved before.",
                            hint="Submit the job again to render the rest.") from exc
        job.check_cancelled()
        saved = outputs.save(result, self.config, self.out_dir)
        self.images.append(_share(saved, job.work_dir))
        self.portraits.append({"file": str(saved), "template": path.name, "seed": result.seed,
                               "attempts": result.attempts, "likeness": result.likeness,
                               "faces": outputs.metadata(result, self.config)["faces"]})
        job.progress(fraction=(done + 1) / total, message=f"saved {saved.name}", preview=saved)


_standalone_generators: dict[tuple, object] = {}


def make_generator(ctx: AppContext, params: PortraitParams | dict):
    """The host's generator inside the WebUI; standalone, a diffusers one on params.base, else on the SD 1.5 base
    in models/Stable-diffusion (cached per base, so a second job reuses the loaded weights)."""
    params = PortraitParams.checked(params, "portrait")
    if ctx.make_generator is not None:
        return ctx.make_generator(params.to_dict())  # AppContext.make_generator takes the JSON form
    base = params.base
    if not base and ctx.selected_checkpoint is not None:
        base = ctx.selected_checkpoint()  # the default base, or an error naming its path and the fetch command
    if not base:
        raise InvalidRequest("Standalone portraits need a base model.", phase="portrait",
                             hint="Pass base: the SD 1.5 checkpoint (.safetensors) or diffusers folder the identity "
                                  "was trained on (CLI: --base).")
    from easyphoto.backends.diffusers import DiffusersGenerator

    config_dir = params.config_dir  # diffusers configs for a single-file base (default: shipped SD 1.5)
    key = (str(Path(base).resolve()), str(ctx.paths.controlnet_dir), str(config_dir))
    if key not in _standalone_generators:
        for previous in _standalone_generators.values():  # one base model in memory at a time: free it first
            previous.unload()
        _standalone_generators.clear()
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        _standalone_generators[key] = DiffusersGenerator(Path(base), controlnet_dir=ctx.paths.controlnet_dir,
                                                         device=device, base_config_dir=config_dir)
    return _standalone_generators[key]


def _share(saved: Path, work_dir: Path) -> str:
    """A link (else a copy) of the saved portrait in the job's folder, where GET /jobs/{id}/result finds it."""
    import os
    import shutil

    target = work_dir / saved.name
    try:
        os.link(saved, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(saved, target)
    return target.name


def _upscaler(ctx: AppContext, config: PortraitConfig):
    """The host's upscaler (the WebUI's) or the standalone Real-ESRGAN, else Lanczos; None without super resolution."""
    if not config.super_resolution:
        return None
    from easyphoto.upscale import classical, for_context

    return for_context(ctx) or classical


def _unload(upscaler) -> None:
    unload = getattr(upscaler, "unload", None)  # `classical` is a plain function: nothing to free
    if callable(unload):
        try:
            unload()
        except Exception:  # freeing memory must not turn a finished job into a failed one
            log.exception("EasyPhoto: could not unload the upscaler %s", getattr(upscaler, "name", upscaler))
