"""The "digital_model" job and its pose preview: a photo + DigitalModelConfig → saved images, each with how well
the garment was kept, and the skeleton used as editable OpenPose JSON.

Everything that can be checked is checked before the first generation: the garments and the identity exist and are
trained, the photos read, the kept garment's mask input fits its source, the skeleton JSON parses and has the
joints the mode needs, the backend has the ControlNet models, and the masks are not empty (tryon/digital_model.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto import __version__
from easyphoto.config import DigitalModelConfig, PortraitConfig
from easyphoto.context import AppContext
from easyphoto.errors import Cancelled, InvalidRequest
from easyphoto.generation import GenerationInterrupted
from easyphoto.imageops import load_photo, to_array
from easyphoto.job_params import DigitalModelParams
from easyphoto.jobs import JobContext
from easyphoto.tryon.digital_model import DigitalModelInputs, DigitalModelPipeline, DigitalModelResult
from easyphoto.tryon.pipeline import MaskInput
from easyphoto.tryon.run import _segment_points, clothes_parser, load_garment, mask_input, write_png

log = logging.getLogger("easyphoto")
DEFAULT_POSE_SIZE = (512, 768)  # a pose swap without a photo: portrait 2:3


def check_request(ctx: AppContext, params: DigitalModelParams) -> None:
    """Cheap checks the API and the CLI run before submitting: trained garments and identity, the photo a mode
    needs, a parsable skeleton. No model loads."""
    from easyphoto.portrait.run import require_ready
    from easyphoto.pose.skeleton import skeleton_from_json
    from easyphoto.tryon.run import require_trained_garment

    config = params.config
    zero_shot_outfit = config.mode == "outfit" and config.outfit_backend != "lora"
    for garment_id in (params.garment_id, None if zero_shot_outfit else params.outfit_id):
        if garment_id:
            require_trained_garment(ctx, garment_id)
    if params.identity_id:
        require_ready(ctx, params.identity_id, config.identity_mode)  # LoRA, or a reference face (training-free)
    if config.mode != "pose" and not params.person:
        raise InvalidRequest(f"Mode {config.mode!r} needs the photo of the garment (person).", phase="digital_model")
    if zero_shot_outfit:
        from easyphoto.tryon.zeroshot.outfit import check_outfit_request

        check_outfit_request(params)
    elif config.mode == "outfit" and not params.outfit_id:
        raise InvalidRequest("An outfit swap needs outfit_id: the trained garment to put on the "
                             f"{config.outfit_category!r} region.", phase="digital_model")
    if config.mode == "pose" and not params.garment_id:
        raise InvalidRequest("A pose swap needs garment_id: the garment's LoRA keeps the garment when the body moves.",
                             phase="digital_model", hint="Train the garment first (Try-On → Garments).")
    if config.mode == "pose" and not (config.pose_name or params.skeleton or params.pose_photo):
        raise InvalidRequest("A pose swap needs the new pose: pose_name (a gallery pose), skeleton or pose_photo.",
                             phase="digital_model")
    if params.skeleton:
        skeleton_from_json(params.skeleton)


def skeleton_for(ctx: AppContext, params: DigitalModelParams, photo_size: tuple[int, int] | None):
    """(skeleton (18, 3) or None, its canvas size): the given JSON scaled to the photo, a gallery pose, or the pose
    of pose_photo (completed) for a pose swap; None in model/scene/outfit modes without a JSON (found in the photo)."""
    from easyphoto.pose.skeleton import scale_skeleton, skeleton_from_json

    config = params.config
    if params.skeleton:
        bodies, size = skeleton_from_json(params.skeleton)
        target = photo_size if config.mode != "pose" and photo_size else size
        return (scale_skeleton(bodies[0], size, target) if tuple(size) != tuple(target) else bodies[0]), target
    if config.mode != "pose":
        return None, photo_size
    if config.pose_name:
        from easyphoto.pose.gallery import gallery_pose

        size = photo_size or DEFAULT_POSE_SIZE
        return gallery_pose(config.pose_name, size), size
    from easyphoto.pose.completion import detect_and_complete

    photo = load_photo(Path(params.pose_photo), max_megapixels=ctx.settings.max_upload_megapixels).image
    done = detect_and_complete(to_array(photo))
    return done.body_in_extended(), tuple(done.extended_size)


def face_pass_for(ctx: AppContext, params: DigitalModelParams, generator):
    """(the identity's LoRA ref, trigger, a face-repainting callback) or (None, "", None) without an identity."""
    if not params.identity_id:
        return None, "", None
    from easyphoto.face import stacks
    from easyphoto.portrait.pipeline import PortraitPipeline
    from easyphoto.portrait.run import load_identity
    from easyphoto.portrait.template import analyse

    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    mode = params.config.identity_mode
    identity = load_identity(ctx, params.identity_id, stack, mode)  # training-free: no LoRA, no trigger
    portrait = PortraitPipeline(generator, stack, PortraitConfig(identity_mode=mode))

    def repaint(pixels: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
        analysis = analyse(Image.fromarray(pixels), "digital model", stack.detector)
        if not analysis.faces:
            return pixels, "face pass skipped: no face was found on the generated model"
        result = portrait.render(analysis, [identity], None, seed)
        likeness = result.likeness
        said = f"likeness {likeness:.2f}" if likeness is not None else "likeness not measured"
        return np.asarray(result.image.convert("RGB")), f"face repainted as {params.identity_id} ({said})"

    portrait.check()
    return identity.lora, identity.trigger, repaint


def digital_model_operation(ctx: AppContext, params: DigitalModelParams, job: JobContext) -> dict:
    from easyphoto.portrait.run import make_generator
    from easyphoto.tryon.depth import load_depth

    check_request(ctx, params)
    config = params.config
    if config.mode == "outfit" and config.outfit_backend != "lora":
        from easyphoto.tryon.zeroshot.outfit import zero_shot_outfit

        return zero_shot_outfit(ctx, params, job)
    job.progress(phase="loading", fraction=0.0, message="photo, garments and models")
    person = load_photo(Path(params.person), max_megapixels=ctx.settings.max_upload_megapixels).image \
        if params.person else None
    given = mask_input(ctx, params, person.size) if person is not None and config.mode != "pose" else MaskInput()
    skeleton, pose_size = skeleton_for(ctx, params, person.size if person is not None else None)
    garment = load_garment(ctx, params.garment_id) if params.garment_id else None
    outfit = load_garment(ctx, params.outfit_id) if params.outfit_id else None
    generator = make_generator(ctx, {"base": params.base, "config_dir": params.config_dir})
    # the parser is required where it makes the mask (the kept garment by parsing; the scene's person matte)
    needs_parser = config.mode == "scene" or (config.mode != "pose" and config.mask_source == "parsing")
    parser, _ = clothes_parser(ctx, "parsing" if needs_parser else "optional")
    note = "" if parser is not None else ("no clothes parser installed: the body to regenerate comes from the pose "
                                          "alone, and a pose swap's garment is not scored")
    depth = load_depth(ctx.paths)
    try:
        if config.mask_source == "points" and person is not None and config.mode != "pose":
            given = MaskInput(mask=_segment_points(ctx, params, to_array(person)))
        identity_lora, trigger, repaint = face_pass_for(ctx, params, generator)
        inputs = DigitalModelInputs(keep_mask=given.mask, skeleton=skeleton, pose_size=pose_size, garment=garment,
                                    outfit=outfit, identity_lora=identity_lora, identity_trigger=trigger,
                                    face_pass=repaint)
        pipeline = DigitalModelPipeline(generator, config, parser=parser, depth=depth, matter=_matter(config))
        pipeline.check()
        photo = to_array(person) if person is not None else None
        inputs.parsing = parser.parse(photo) if parser is not None and photo is not None else None
        pipeline.prepare(photo, inputs)  # mask and pose errors now, before the first generation
        if hasattr(generator, "interrupt"):
            job.on_cancel(generator.interrupt)
        results = _render(pipeline, photo, inputs, job)
    finally:  # the helper models must not hold memory the next job (a training) needs
        for model in (parser, depth):
            if model is not None:
                model.unload()
    out_dir = Path(params.out) if params.out else ctx.paths.outputs_dir
    notes = [note] if note else []
    saved = [write_png(out_dir, r.image, r.infotext, metadata(r, params, notes), f"model-{config.mode}")
             for r in results]
    job.progress(phase="done", fraction=1.0, message=f"{len(saved)} image(s)")
    return {"images": [_share(path, job.work_dir) for path in saved], "backend": generator.name,
            "results": [summary(path, r, notes) for path, r in zip(saved, results, strict=True)]}


def _matter(config: DigitalModelConfig):
    """mediapipe's soft person matte for the scene swap, when mediapipe is installed (else the parsing's)."""
    from easyphoto.face import mediapipe_stack

    if config.mode != "scene" or not mediapipe_stack.available():
        return None
    matter = mediapipe_stack.MediapipeMatter()

    def matte(pixels: np.ndarray) -> np.ndarray | None:
        try:
            return matter.matte(pixels)
        except Exception as exc:  # noqa: BLE001 - a host whose mediapipe cannot run (A1111's protobuf): the parsing's
            log.warning("selfie matte unavailable, the parsing's person matte is used: %s", exc)
            return None

    return matte


def _render(pipeline: DigitalModelPipeline, photo, inputs: DigitalModelInputs, job: JobContext) -> list:
    def progress(fraction: float, message: str) -> None:
        job.progress(phase="generating", fraction=fraction, message=message)

    try:
        return pipeline.render_batch(photo, inputs, None, progress, lambda: job.cancelled)
    except GenerationInterrupted as exc:
        raise Cancelled(exc.message, hint="Submit the digital model again.") from exc


def summary(path: Path, result: DigitalModelResult, notes: list[str]) -> dict:
    from easyphoto.pose.skeleton import skeleton_to_json

    skeleton = None
    if result.pose is not None:  # in the photo's own pixels, as `skeleton` takes it back (padding taken off)
        left, top, right, bottom = result.padding
        pose = np.asarray(result.pose, np.float32).copy()
        pose[:, 0] -= left
        pose[:, 1] -= top
        width, height = result.image.size
        skeleton = skeleton_to_json([pose], (width - left - right, height - top - bottom))
    return {"file": str(path), "seed": result.seed, "mode": result.mode, "notes": result.notes + notes,
            "garment_kept": result.fidelity.to_dict() if result.fidelity else None, "controls": result.controls,
            "completed_joints": list(result.completed), "padding": list(result.padding), "skeleton": skeleton}


def metadata(result: DigitalModelResult, params: DigitalModelParams, notes: list[str]) -> dict:
    return {"easyphoto_version": __version__, "mode": result.mode, "garment_id": params.garment_id,
            "outfit_id": params.outfit_id, "identity_id": params.identity_id,
            "person": Path(params.person).name if params.person else None, "seed": result.seed,
            "garment_kept": result.fidelity.to_dict() if result.fidelity else None, "notes": result.notes + notes,
            "completed_joints": list(result.completed), "config": params.config.to_dict()}


def pose_preview(image: Image.Image, config: DigitalModelConfig, skeleton: str | None = None) -> dict:
    """The pose the model mode would use, without generating: the skeleton (found or given, completed when asked) as
    OpenPose JSON in the photo's own pixels (completed joints may lie outside it: send it back as `skeleton`
    unchanged or edited), the joints placed, the canvas padding outpainting would add, and the skeleton drawn on the
    extended canvas."""
    from easyphoto.pose import body_keypoints_from_mediapipe, render_openpose
    from easyphoto.pose.completion import complete_body
    from easyphoto.pose.skeleton import scale_skeleton, skeleton_from_json, skeleton_to_json
    from easyphoto.tryon.masks import NoPersonFound

    size = image.size
    if skeleton:
        bodies, given_size = skeleton_from_json(skeleton)
        body = scale_skeleton(bodies[0], given_size, size) if tuple(given_size) != tuple(size) else bodies[0]
    else:
        body = body_keypoints_from_mediapipe(to_array(image))
        if body is None:
            raise NoPersonFound("No person or mannequin pose was found in the photo.",
                                hint="Use a photo where the head or the shoulders are visible, or give a skeleton.")
    completed, padding = (), (0, 0, 0, 0)
    if config.complete_pose:
        done = complete_body(body, size)
        body, completed = done.body, tuple(done.completed)
        padding = tuple(int(p) for p in done.padding) if config.outpaint else padding
    shifted = np.asarray(body, np.float32).copy()
    shifted[:, 0] += padding[0]
    shifted[:, 1] += padding[1]
    canvas = (size[0] + padding[0] + padding[2], size[1] + padding[1] + padding[3])
    return {"skeleton": skeleton_to_json([np.asarray(body, np.float32)], size), "completed_joints": list(completed),
            "padding": list(padding), "image": render_openpose(canvas, [shifted])}


def _share(saved: Path, work_dir: Path) -> str:
    from easyphoto.portrait.run import _share as share

    return share(saved, work_dir)


__all__ = ["check_request", "digital_model_operation", "pose_preview", "skeleton_for"]
