"""Route 1 of garment design: a layout drives a segmentation ControlNet through the Generator protocol (the host's
ControlNet inside the WebUI, diffusers standalone), and the background outside the layout is forced clean.

    result = design_from_layout(generator, labels, DesignConfig(category="dress", prompt="red silk"), seed=7,
                                lora=LoraRef("silk_dress", 0.8, path))
    result.image        # the layout's size; outside the layout every pixel is white, exactly
    result.infotext

The layout becomes the ControlNet's condition in ADE20K-style colour coding (layout.seg_condition); the prompt is
the category's preset plus the user's words (and the garment LoRA's trigger when one is chosen). txt2img draws the
whole canvas; the layout mask then decides: inside, the drawing; outside, white. A thin band inside the mask's edge
is blended so the garment's outline is not a staircase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from easyphoto import __version__
from easyphoto.config import DesignConfig
from easyphoto.design.layout import CLASSES, check_layout, layout_mask, seg_condition
from easyphoto.generation import (
    Capabilities,
    Control,
    GenerationError,
    LoraRef,
    Progress,
    ShouldStop,
    Txt2ImgRequest,
    never_stop,
    no_progress,
)
from easyphoto.imageops import blend, erode, soft_mask

PRESETS = {  # what the layout is, in words the base model knows; "{}" = the user's prompt
    "top": "a top, t-shirt", "shirt": "a shirt, blouse", "outerwear": "a jacket, coat", "dress": "a dress",
    "skirt": "a skirt", "pants": "a pair of trousers", "any": "a garment",
}
PROMPT = "product photo of {garment}, {extra}flat lay, isolated on a plain white background, studio lighting, detailed fabric"
NEGATIVE = "person, model, mannequin, body, face, hands, text, watermark, logo, lowres, blurry, deformed"
EDGE = 2  # px inside the layout's edge blended between the drawing and white
WHITE = 255


class DesignError(GenerationError):
    phase = "design"


@dataclass
class DesignResult:
    image: Image.Image
    seed: int
    prompt: str
    negative_prompt: str
    classes: list[str]  # the layout's class names, largest area first
    infotext: str = ""


def prompts(config: DesignConfig, trigger: str = "") -> tuple[str, str]:
    extra = ", ".join(part for part in (trigger, config.prompt.strip()) if part)
    prompt = PROMPT.format(garment=PRESETS[config.category], extra=f"{extra}, " if extra else "")
    negative = ", ".join(part for part in (NEGATIVE, config.negative_prompt.strip()) if part)
    return prompt, negative


def check_generator(generator) -> Capabilities:
    """The segmentation ControlNet must be there: said before anything is generated."""
    caps = generator.capabilities()
    if "seg" not in caps.controls:
        why = caps.missing.get("seg", "no segmentation ControlNet model was found")
        raise DesignError(f"The design's diffusion route needs the segmentation ControlNet: {why}.",
                          hint="Install control_v11p_sd15_seg (EasyPhoto → Models, group controlnet, or `python -m "
                               "easyphoto models fetch controlnet-seg`), or use route 'smis' with a trained model.")
    return caps


def design_from_layout(generator, labels: np.ndarray, config: DesignConfig, *, seed: int, lora: LoraRef | None = None,
                       trigger: str = "", progress: Progress = no_progress,
                       should_stop: ShouldStop = never_stop) -> DesignResult:
    labels = check_layout(labels)
    check_generator(generator)
    height, width = labels.shape
    prompt, negative = prompts(config, trigger)
    control = Control("seg", Image.fromarray(seg_condition(labels)), weight=config.seg_weight)
    request = Txt2ImgRequest(prompt=prompt, negative_prompt=negative, loras=[lora] if lora else [],
                             controls=[control] if config.seg_weight > 0 else [], steps=config.steps,
                             cfg_scale=config.cfg_scale, seed=seed, sampler=config.sampler,
                             scheduler=config.scheduler, width=width, height=height, label="design")
    drawn = generator.txt2img(request, progress, should_stop)[0].convert("RGB")
    if drawn.size != (width, height):  # a host may round sizes; the layout's geometry must stay exact
        drawn = drawn.resize((width, height), Image.LANCZOS)
    image = clean_background(np.asarray(drawn), labels)
    result = DesignResult(Image.fromarray(image), seed, prompt, negative, layout_classes(labels))
    result.infotext = infotext(result, config, lora)
    return result


def clean_background(drawn: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """White outside the layout (exactly), the drawing inside, a soft band just inside the edge."""
    mask = layout_mask(labels)
    weight = np.maximum(soft_mask(mask, EDGE / 2), (erode(mask, EDGE) > 0).astype(np.float32))
    weight[mask == 0] = 0.0
    white = np.full_like(drawn, WHITE)
    return blend(white, drawn, weight)


def layout_classes(labels: np.ndarray) -> list[str]:
    values, counts = np.unique(labels[labels < len(CLASSES)], return_counts=True)
    return [CLASSES[int(v)] for v in values[np.argsort(-counts)]]


def infotext(result: DesignResult, config: DesignConfig, lora: LoraRef | None) -> str:
    from easyphoto.tryon.pipeline import _quote

    width, height = result.image.size
    pairs = {"Steps": config.steps, "Sampler": config.sampler, "Schedule type": config.scheduler,
             "CFG scale": config.cfg_scale, "Seed": result.seed, "Size": f"{width}x{height}",
             "EasyPhoto design route": "diffusion (seg ControlNet)", "EasyPhoto design category": config.category,
             "EasyPhoto layout classes": "; ".join(result.classes), "Version": f"EasyPhoto {__version__}"}
    tag = f", <lora:{lora.name}:{config.lora_weight:g}>" if lora else ""
    params = ", ".join(f"{key}: {_quote(value)}" for key, value in pairs.items())
    return f"{result.prompt}{tag}\nNegative prompt: {result.negative_prompt}\n{params}"


__all__ = ["DesignError", "DesignResult", "clean_background", "design_from_layout", "prompts"]
