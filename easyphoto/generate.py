"""Plain txt2img and img2img/inpaint on the standalone backend (issue 14: API parity for service users).

Inside the WebUI, its own /sdapi/v1 serves these; standalone, easyphoto/api/sdapi_routes.py answers the same request
shapes and runs them here, as "generate" jobs (one GPU user at a time, like every other job). LoRAs are named in
the prompt as the WebUI's extra networks are (`<lora:name:weight>`, from the LoRA folder); they are taken out of the
prompt and applied to the weights.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from easyphoto import __version__
from easyphoto.context import AppContext
from easyphoto.errors import Cancelled, InvalidRequest, NotFound
from easyphoto.generation import GenerationInterrupted, InpaintRequest, LoraRef, Txt2ImgRequest
from easyphoto.imageops import load_photo
from easyphoto.job_params import GenerateParams
from easyphoto.jobs import JobContext
from easyphoto.portrait.pipeline import resolve_seed

LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]+))?(?::[^>]*)?>")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,127}$")


def prompt_loras(ctx: AppContext, prompt: str) -> tuple[str, list[LoraRef]]:
    """(the prompt without its <lora:name:weight> tags, the LoRAs they name), each file found in the LoRA folder;
    NotFound naming the file for a missing one, InvalidRequest for a malformed tag."""
    loras = []
    for name, weight in LORA_TAG.findall(prompt):
        if not NAME.match(name) or ".." in name:
            raise InvalidRequest(f"<lora:{name}> is not a LoRA name.", phase="generate",
                                 hint="Name a file of the LoRA folder without its extension: <lora:suit:0.8>.")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise InvalidRequest(f"<lora:{name}:{weight}>: the weight is not a number.", phase="generate") from None
        path = ctx.paths.lora_dir / f"{name}.safetensors"
        if not path.is_file():
            raise NotFound(f"No LoRA {name!r}: {path} does not exist.", phase="generate",
                           hint="Put the .safetensors file in the LoRA folder, or fix the name in the prompt.")
        loras.append(LoraRef(name, value, path))
    cleaned = re.sub(r"\s*,?\s*" + LORA_TAG.pattern, "", prompt).strip(" ,")
    return cleaned, loras


def generate_operation(ctx: AppContext, params: GenerateParams, job: JobContext) -> dict:
    from easyphoto.portrait.run import make_generator

    prompt, loras = prompt_loras(ctx, params.prompt)
    init = _image(ctx, params.init_image) if params.init_image else None
    mask = _mask(ctx, params.mask, init) if params.mask else None
    job.progress(phase="loading", fraction=0.0, message="base model")
    generator = make_generator(ctx, {"base": params.base, "config_dir": params.config_dir})
    if hasattr(generator, "interrupt"):
        job.on_cancel(generator.interrupt)
    first = resolve_seed(params.seed)
    count = params.batch_size * params.n_iter
    images, seeds = [], []
    for index in range(count):
        seed = (first + index) % (2**32 - 1)
        request = _request(params, prompt, loras, seed, init, mask)
        share = (index / count, (index + 1) / count)

        def progress(fraction: float, message: str, share=share) -> None:
            job.progress(phase="generating", fraction=share[0] + (share[1] - share[0]) * fraction, message=message)

        try:
            made = (generator.inpaint if init is not None else generator.txt2img)(request, progress,
                                                                                lambda: job.cancelled)
        except GenerationInterrupted as exc:
            raise Cancelled(exc.message, hint="Send the request again.") from exc
        images.append(_save(ctx, params, job, made[0], _infotext(params, prompt, loras, seed, made[0].size),
                            seed, "img2img" if init is not None else "txt2img"))
        seeds.append(seed)
    job.progress(phase="done", fraction=1.0, message=f"{len(images)} image(s)")
    return {"images": [name for name, _ in images], "seeds": seeds, "infotexts": [text for _, text in images],
            "backend": generator.name}


def _save(ctx: AppContext, params: GenerateParams, job: JobContext, image: Image.Image, infotext: str, seed: int,
          kind: str) -> tuple[str, str]:
    """(its file name in the job's folder, its infotext); with save_images also in the outputs folder, as the
    WebUI's API does."""
    from easyphoto.tryon.run import write_numbered_png, write_png

    meta = {"easyphoto_version": __version__, "seed": seed}
    saved = write_numbered_png(job.work_dir, image, infotext, meta, kind)
    if params.save_images:
        write_png(ctx.paths.outputs_dir, image, infotext, meta, kind)
    return saved.name, infotext


def _request(params: GenerateParams, prompt: str, loras, seed: int, init, mask):
    common = dict(prompt=prompt, negative_prompt=params.negative_prompt, loras=loras, steps=params.steps,
                  cfg_scale=params.cfg_scale, seed=seed, sampler=params.sampler_name, scheduler=params.scheduler,
                  label="generate")
    if init is None:
        return Txt2ImgRequest(width=params.width, height=params.height, **common)
    size = (params.width, params.height)
    image = init.resize(size, Image.LANCZOS) if init.size != size else init
    region = (mask or Image.new("L", init.size, 255)).resize(size, Image.NEAREST)
    return InpaintRequest(image=image, mask=region, denoising_strength=params.denoising_strength,
                          mask_blur=params.mask_blur if mask is not None else 0,
                          inpainting_fill=params.inpainting_fill, **common)


def _image(ctx: AppContext, path: str) -> Image.Image:
    return load_photo(Path(path), max_megapixels=ctx.settings.max_upload_megapixels).image


def _mask(ctx: AppContext, path: str, init: Image.Image | None) -> Image.Image:
    """The inpaint mask as "L" (white = repaint; an alpha channel counts as the mask where the image has one)."""
    if init is None:
        raise InvalidRequest("A mask needs the image it marks (init_images).", phase="generate")
    with Image.open(path) as opened:
        image = opened.getchannel("A") if "A" in opened.getbands() else opened.convert("L")
        image.load()
    if image.size != init.size:
        raise InvalidRequest(f"The mask is {image.width}×{image.height}, the image {init.width}×{init.height}.",
                             phase="generate", hint="Send a mask of the image's size (white = repaint).")
    return image.point(lambda v: 255 if v > 127 else 0)


def _infotext(params: GenerateParams, prompt: str, loras, seed: int, size) -> str:
    tags = "".join(f" <lora:{lora.name}:{lora.weight:g}>" for lora in loras)
    pairs = [f"Steps: {params.steps}", f"Sampler: {params.sampler_name}", f"Schedule type: {params.scheduler}",
             f"CFG scale: {params.cfg_scale:g}", f"Seed: {seed}", f"Size: {size[0]}x{size[1]}"]
    if params.init_image:
        pairs.append(f"Denoising strength: {params.denoising_strength:g}")
    pairs.append(f"Version: EasyPhoto {__version__}")
    return f"{prompt}{tags}\nNegative prompt: {params.negative_prompt}\n{', '.join(pairs)}"
