"""The WebUI's /sdapi/v1/txt2img and /sdapi/v1/img2img on the standalone server (issue 14: API parity).

Inside the WebUI its own /sdapi/v1 serves them; standalone, the same request and response shapes run on the
diffusers backend as "generate" jobs (easyphoto/generate.py), so a service written against the WebUI's API works
against EasyPhoto's server too. The request fields are the WebUI's (A1111 1.10 StableDiffusionTxt2Img/Img2Img
ProcessingAPI); the ones this backend does not implement are accepted only at the WebUI's defaults, and any other
value is a 422 naming the field, never silently ignored. LoRAs: `<lora:name:weight>` in the prompt, as in the WebUI.
Accepted and without effect: do_not_save_samples/grid (save_images decides), sampler_index (the old name of
sampler_name), mask_blur_x/y and mask_round (mask_blur is used), inpaint_full_res (the whole image is processed; the
info says so). The response is {images: [base64 PNG], parameters: the request, info: JSON text with seed,
all_seeds, infotexts}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from pydantic import Field

from easyphoto.api.payloads import decode_base64, sniff_suffix
from easyphoto.api.schemas import RequestModel
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError, InvalidRequest

SDAPI = "/sdapi/v1"
FILLS = ("fill", "original", "latent noise", "latent nothing")  # the WebUI's inpainting_fill 0..3
# Fields of the WebUI's API this backend does not implement, with the values that mean "not used" (its default,
# null, and False for a flag whose default is null).
_OFF_FLAG, _UNSET = (None, False), (None,)
UNSUPPORTED_UNLESS_OFF: dict[str, tuple] = {
    "styles": ([], None), "subseed": (-1, None), "subseed_strength": (0.0, None), "seed_resize_from_h": (-1, 0, None),
    "seed_resize_from_w": (-1, 0, None), "restore_faces": _OFF_FLAG, "tiling": _OFF_FLAG, "enable_hr": _OFF_FLAG,
    "eta": _UNSET, "s_min_uncond": _UNSET, "s_churn": _UNSET, "s_tmax": _UNSET, "s_tmin": _UNSET, "s_noise": _UNSET,
    "refiner_checkpoint": (None, ""), "refiner_switch_at": _UNSET, "disable_extra_networks": _OFF_FLAG,
    "script_name": (None, ""), "script_args": ([], None), "alwayson_scripts": ({}, None), "comments": ({}, None),
    "resize_mode": (0, None), "image_cfg_scale": _UNSET, "inpainting_mask_invert": (0, None),
    "initial_noise_multiplier": (None, 1.0), "latent_mask": _UNSET, "include_init_images": _OFF_FLAG,
    "firstpass_image": _UNSET, "infotext": (None, ""), "force_task_id": (None, ""),
}
class Txt2ImgBody(RequestModel):
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    denoising_strength: float | None = None
    send_images: bool = True
    save_images: bool = False
    override_settings: dict[str, Any] = Field({}, description="Only sd_model_checkpoint (a file of "
                                              "models/Stable-diffusion, or a path) is taken.")
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    override_settings_restore_afterwards: bool = True
    sampler_index: str | None = None
    styles: list[str] = []
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    restore_faces: bool | None = None
    tiling: bool | None = None
    enable_hr: bool = False
    eta: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    script_name: str | None = None
    script_args: list[Any] = []
    alwayson_scripts: dict[str, Any] = {}
    comments: dict[str, Any] | None = None
    firstpass_image: str | None = None
    infotext: str | None = None
    force_task_id: str | None = None


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] = Field(..., description="One image (base64 or a data URL) to start from.")
    mask: str | None = None
    denoising_strength: float = 0.75
    mask_blur: int = 4
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False


def install_sdapi(app: FastAPI, ctx: AppContext, exposure) -> None:
    """Mount /sdapi/v1/txt2img and /img2img on the standalone app, exposed as the rest of the API is (`exposure`:
    not at all when private routes are off, refused when the server is reachable beyond loopback without a
    token)."""
    from easyphoto.api.routes import _refuse

    if not exposure.private:
        return
    guard = [Depends(_refuse(exposure.hint))] if exposure.refuse else []
    router = APIRouter(prefix=SDAPI, tags=["sdapi (WebUI-compatible)"], dependencies=guard)

    @router.post("/txt2img")
    def txt2img(body: Txt2ImgBody) -> dict:
        """The WebUI's txt2img on the standalone backend."""
        return _run(ctx, body, images={})

    @router.post("/img2img")
    def img2img(body: Img2ImgBody) -> dict:
        """The WebUI's img2img (with mask: inpaint) on the standalone backend."""
        if len(body.init_images) != 1:
            raise InvalidRequest(f"init_images holds {len(body.init_images)} images; this backend takes exactly one.",
                                 phase="generate", hint="Send one image; use batch_size for several results.")
        images = {"init_image": decode_base64(body.init_images[0], "init_images[0]")}
        if body.mask:
            images["mask"] = decode_base64(body.mask, "mask")
        return _run(ctx, body, images)

    app.include_router(router)
    # their request errors answered like the API's (JSON-safe: a NaN in a body must not become a 500)
    app.state.easyphoto_extra_prefixes = (*getattr(app.state, "easyphoto_extra_prefixes", ()), SDAPI)


def generate_params(ctx: AppContext, body: Txt2ImgBody) -> dict:
    """The GenerateParams fields of a WebUI request; InvalidRequest naming a field this backend does not do."""
    _refuse_unsupported(body)
    params = {"prompt": body.prompt, "negative_prompt": body.negative_prompt, "steps": body.steps,
              "cfg_scale": body.cfg_scale, "seed": body.seed, "width": body.width, "height": body.height,
              "batch_size": body.batch_size, "n_iter": body.n_iter, "save_images": body.save_images,
              "base": _checkpoint(ctx, body.override_settings)}
    sampler = body.sampler_name or body.sampler_index
    if sampler:
        params["sampler_name"] = sampler
    if body.scheduler and body.scheduler != "Automatic":
        params["scheduler"] = body.scheduler
    if isinstance(body, Img2ImgBody):
        if not 0 <= body.inpainting_fill < len(FILLS):
            raise InvalidRequest(f"inpainting_fill {body.inpainting_fill} is not 0-3 (fill, original, latent noise, "
                                 "latent nothing).", phase="generate")
        params.update(denoising_strength=body.denoising_strength, mask_blur=body.mask_blur,
                      inpainting_fill=FILLS[body.inpainting_fill])
    return params


def _refuse_unsupported(body: Txt2ImgBody) -> None:
    for name, off in UNSUPPORTED_UNLESS_OFF.items():
        value = getattr(body, name, None)
        if value not in off:
            raise InvalidRequest(f"{name} = {value!r} is not supported by EasyPhoto's standalone backend.",
                                 phase="generate", hint=f"Leave {name} out (or at {off[0]!r}); inside the WebUI its "
                                                        "own /sdapi/v1 does it.")
    if not isinstance(body, Img2ImgBody) and body.denoising_strength not in (None, 0, 0.0):
        raise InvalidRequest("denoising_strength on txt2img is the WebUI's hires fix, which this backend does not "
                             "run.", phase="generate", hint="Leave it out, or use /sdapi/v1/img2img.")


def _checkpoint(ctx: AppContext, settings: dict[str, Any]) -> str | None:
    unknown = sorted(set(settings) - {"sd_model_checkpoint"})
    if unknown:
        raise InvalidRequest(f"override_settings: {', '.join(unknown)} cannot be set on EasyPhoto's standalone "
                             "backend.", phase="generate", hint="Only sd_model_checkpoint is taken.")
    name = settings.get("sd_model_checkpoint")
    if not name:
        return None
    name = str(name).split(" [")[0]  # the WebUI's "file.safetensors [hash]" title
    for candidate in (ctx.paths.checkpoints_dir / name, Path(name)):
        if candidate.exists():
            return str(candidate)
    raise InvalidRequest(f"sd_model_checkpoint {name!r} is neither a file of models/Stable-diffusion nor a path.",
                         phase="generate", hint="Name a checkpoint file (or diffusers folder) that exists.")


def _run(ctx: AppContext, body: Txt2ImgBody, images: dict[str, bytes]) -> dict:
    """Submit the "generate" job with the uploaded images, wait for it, answer in the WebUI's shape."""
    from easyphoto.api.tryon_routes import submit_with_uploads
    from easyphoto.generate import prompt_loras
    from easyphoto.job_params import GenerateParams
    from easyphoto.operations import job_queue, require

    params = generate_params(ctx, body)
    GenerateParams.checked({**params, "init_image": "pending" if images else None})  # bounds: 422 before uploads
    prompt_loras(ctx, body.prompt)  # a malformed tag or a missing LoRA file: said now, not by a failed job
    _check_images(ctx, images)
    if not params["base"] and ctx.selected_checkpoint is not None:
        params["base"] = str(ctx.selected_checkpoint())  # no base model: MissingWeights (409) naming the file
    queue = job_queue(ctx)
    require(queue, "generate")
    named = {name: (data, sniff_suffix(data)) for name, data in images.items()}
    record = queue.wait(submit_with_uploads(ctx, queue, "generate", GenerateParams, params, named).id)
    if record.state.value != "succeeded":
        error = record.error or {}
        raise JobFailed(error.get("message") or f"The generation ended {record.state.value}.",
                        hint=error.get("hint") or "", phase=error.get("phase") or "generate")
    return _response(ctx, body, record)


def _check_images(ctx: AppContext, images: dict[str, bytes]) -> None:
    """The init image and the mask read as images, the mask of the image's size: 422 before any job."""
    from easyphoto.imageops import UnreadableImage, load_photo

    loaded = {}
    for name, data in images.items():
        try:
            loaded[name] = load_photo(data, max_megapixels=ctx.settings.max_upload_megapixels).image
        except UnreadableImage as exc:
            field = "init_images[0]" if name == "init_image" else name
            raise InvalidRequest(f"{field}: {exc.message.removeprefix('upload: ')}", phase="generate",
                                 hint=exc.hint or "Send a PNG, JPEG or WebP image.") from None
    if "mask" in loaded and loaded["mask"].size != loaded["init_image"].size:
        raise InvalidRequest(f"The mask is {loaded['mask'].width}×{loaded['mask'].height}, the image "
                             f"{loaded['init_image'].width}×{loaded['init_image'].height}.", phase="generate",
                             hint="Send a mask of the image's size (white = repaint).")


class JobFailed(EasyPhotoError):
    http_status = 500


def _response(ctx: AppContext, body: Txt2ImgBody, record) -> dict:
    import base64

    result = record.result or {}
    folder = ctx.paths.jobs_dir / record.id
    images = [base64.b64encode((folder / name).read_bytes()).decode() for name in result.get("images", [])] \
        if body.send_images else []
    seeds = result.get("seeds", [])
    notes = ["inpaint_full_res: the whole image was processed"] if isinstance(body, Img2ImgBody) and body.mask \
        and body.inpaint_full_res else []
    info = {"prompt": body.prompt, "negative_prompt": body.negative_prompt, "seed": seeds[0] if seeds else None,
            "all_seeds": seeds, "infotexts": result.get("infotexts", []), "steps": body.steps,
            "cfg_scale": body.cfg_scale, "width": body.width, "height": body.height,
            "sampler_name": body.sampler_name, "backend": result.get("backend"), "job_id": record.id, "notes": notes}
    parameters = body.model_dump() if hasattr(body, "model_dump") else body.dict()
    parameters.pop("init_images", None)
    parameters.pop("mask", None)
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}
