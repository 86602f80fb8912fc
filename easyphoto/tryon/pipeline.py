"""Garment try-on with a garment LoRA (issue 13), written once against the Generator protocol.

    pipeline = TryOnPipeline(generator, TryOnConfig(category="upper"), parser=parser, depth=load_depth(paths))
    pipeline.check()                                     # missing ControlNet models fail here, before any work
    result = pipeline.render(photo, garment, MaskInput(), seed=42)
    result.image, result.fidelity.describe(), result.infotext

Per person photo: pose (mediapipe, easyphoto.pose) and clothes parsing → the try-on mask (tryon/masks.py: the
category's labels or a given mask, grown, minus face/hair/sunglasses and hands; every input error raised here,
before anything is generated) → a working crop around the mask, short side `short_side` → optionally the garment
reference pasted into the mask, rotated and scaled to fit (the reference's "paste" step) → pass 1: inpaint the
mask with the garment LoRA under openpose + canny (+ depth when an estimator and the depth ControlNet are there;
+ colour when its weight is above 0) → pass 2: refine the band along the inside of the mask's edge (reference:
30 steps × 0.7 under canny + depth of the person crop) → paste back through the mask only: every pixel outside the
mask, protected regions included, is the photo's own, exactly → garment fidelity of the result against the
garment's reference (tryon/fidelity.py) → an infotext for the PNG.

Deterministic per seed: the same photo, garment, mask, config and seed give the same pixels on one backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from easyphoto import __version__
from easyphoto.config import TryOnConfig
from easyphoto.generation import (
    Capabilities,
    Control,
    GenerationError,
    GenerationInterrupted,
    Generator,
    InpaintRequest,
    LoraRef,
    Progress,
    ShouldStop,
    never_stop,
    no_progress,
)
from easyphoto.imageops import blend, erode, soft_mask, to_array
from easyphoto.portrait import controls
from easyphoto.portrait.pipeline import resolve_seed, working_size
from easyphoto.segment.types import ClothesParser, Parsing
from easyphoto.tryon.fidelity import GarmentFidelity, garment_fidelity
from easyphoto.tryon.masks import EmptyTryOnMask, TryOnInputError, TryOnMask, tryon_mask

POSITIVE_SUFFIX = "best quality, realistic, photo-realistic, detailed fabric, natural lighting"
NEGATIVE_PROMPT = "lowres, blurry, deformed, bad anatomy, bad hands, extra fingers, watermark, text, logo, nsfw"
MAX_PASTE_TURN = 30.0  # degrees; a larger turn between the two masks' axes is taken as a mis-detection (the
# reference likewise discarded turns above 20°): near-round masks have no reliable axis
PoseEstimator = Callable[[np.ndarray], "np.ndarray | None"]  # RGB → (18, 3) COCO-18 key points, or None
_MEDIAPIPE = object()  # the default `pose`: mediapipe's when it is installed


@dataclass
class GarmentAssets:
    """What rendering one garment needs: its LoRA, the caption it was trained with, its category and one reference
    (a dataset crop and its garment mask) for the paste step and the fidelity score."""

    garment_id: str
    lora: LoraRef
    trigger: str
    category: str
    reference: np.ndarray  # RGB uint8 (h, w, 3)
    reference_mask: np.ndarray  # uint8 0/255 (h, w), the garment in the reference


@dataclass
class MaskInput:
    """Where the garment region comes from: `mask` from clicks (SAM) or drawn, used with mask_source "points" /
    "mask"; `parsing` when the caller already parsed the photo (else the pipeline's parser does)."""

    mask: np.ndarray | None = None  # uint8 0/255 or bool (H, W), the person photo's size
    parsing: Parsing | None = None


@dataclass
class TryOnResult:
    image: Image.Image
    mask: np.ndarray  # uint8 0/255: the pixels that were repainted (everything else is the photo's own)
    seed: int
    fidelity: GarmentFidelity | None  # None when the garment has no usable reference mask
    prompt: str
    negative_prompt: str
    protected: dict[str, int] = field(default_factory=dict)  # region -> pixels kept out of the mask
    notes: list[str] = field(default_factory=list)  # what was skipped or adjusted, in words
    controls: dict[str, list[str]] = field(default_factory=dict)  # pass label -> control kinds sent
    infotext: str = ""


@dataclass
class _Work:
    """One photo's working crop: box in the photo, resized pixels, mask, key points and scale."""

    box: tuple[int, int, int, int]
    pixels: np.ndarray
    mask: np.ndarray
    keypoints: np.ndarray | None
    px: float  # pixel sizes of the reference are for a 512 px crop


def prompts(garment: GarmentAssets, config: TryOnConfig) -> tuple[str, str]:
    positive = ", ".join(p for p in (garment.trigger, config.additional_prompt, POSITIVE_SUFFIX) if p.strip())
    negative = ", ".join(p for p in (config.additional_negative_prompt, NEGATIVE_PROMPT) if p.strip())
    return positive, negative


class TryOnPipeline:
    def __init__(self, generator: Generator, config: TryOnConfig, parser: ClothesParser | None = None,
                 pose: PoseEstimator | None = _MEDIAPIPE, depth: Callable[[np.ndarray], Image.Image] | None = None):
        """`parser`: clothes parsing (needed for mask_source "parsing" and for protecting the face unless a
        MaskInput brings a parsing); `pose`: key points for openpose and the hands (default mediapipe's, None = no
        pose); `depth`: an estimator for the depth control (easyphoto.tryon.depth.load_depth; None = no depth)."""
        self.generator = generator
        self.config = config
        self.parser = parser
        self.pose = _default_pose() if pose is _MEDIAPIPE else pose
        self.depth = depth

    # ------------------------------------------------------------------------------------------ checks
    def required_controls(self) -> set[str]:
        """Control kinds that must have a model (depth is optional: used when its model is there)."""
        cfg = self.config
        return {k for k, w in (("canny", cfg.canny_weight), ("openpose", cfg.openpose_weight),
                               ("color", cfg.color_weight)) if w > 0}

    def check(self) -> Capabilities:
        """Fail before any work when the backend lacks a needed ControlNet model or enough ControlNet units."""
        caps = self.generator.capabilities()
        needed = self.required_controls()
        caps.require(needed)
        if len(needed) > caps.max_controls:
            raise GenerationError(
                f"Pass 1 needs {len(needed)} ControlNet units ({', '.join(sorted(needed))}), the backend runs "
                f"{caps.max_controls}.", hint="Raise the ControlNet unit number in the WebUI's ControlNet settings, "
                "or set one of openpose_weight, canny_weight, color_weight to 0.")
        return caps

    def uses_depth(self, caps: Capabilities | None = None) -> tuple[bool, str]:
        """(whether the depth control is sent, why not when it is not). Depth is optional: it is skipped, with a
        note, without an estimator, without the depth ControlNet, or when no ControlNet unit is left for it."""
        if self.config.depth_weight <= 0:
            return False, ""
        if self.depth is None:
            return False, "depth control skipped: no depth estimator is installed"
        caps = caps or self.generator.capabilities()
        if "depth" not in caps.controls:
            return False, f"depth control skipped: {caps.missing.get('depth', 'no depth ControlNet model')}"
        others = len(self.required_controls())
        if others + 1 > caps.max_controls:
            return False, (f"depth control skipped: the backend runs {caps.max_controls} ControlNet units and pass 1 "
                           f"already uses {others} (raise the ControlNet unit number to {others + 1} for depth)")
        return True, ""

    def prepare(self, pixels: np.ndarray, mask_input: MaskInput | None = None) -> tuple[TryOnMask, np.ndarray | None]:
        """The try-on mask and the pose of one photo; raises TryOnInputError subclasses (nothing is generated)."""
        cfg, mask_input = self.config, mask_input or MaskInput()
        given = None
        if cfg.mask_source != "parsing":
            if mask_input.mask is None:
                raise EmptyTryOnMask(f"mask_source is {cfg.mask_source!r} but no mask was given.",
                                     hint="Click on the garment or draw over it, or use mask_source 'parsing'.")
            given = mask_input.mask
        parsing = mask_input.parsing
        if parsing is None and self.parser is not None and (cfg.mask_source == "parsing" or cfg.protect_face):
            parsing = self.parser.parse(pixels)
        keypoints = self.pose(pixels) if self.pose is not None else None
        result = tryon_mask(pixels.shape[:2], cfg.category, parsing=parsing, given=given, keypoints=keypoints,
                            dilation=cfg.mask_dilation, protect_face=cfg.protect_face,
                            protect_hands=cfg.protect_hands, pose_checked=self.pose is not None)
        return result, keypoints

    # ------------------------------------------------------------------------------------------ render
    def render(self, person_image: Image.Image | np.ndarray, garment: GarmentAssets,
               mask_input: MaskInput | None = None, seed: int | None = None, progress: Progress = no_progress,
               should_stop: ShouldStop = never_stop) -> TryOnResult:
        """One try-on image; `seed` None = the config's (-1 = random)."""
        seed = resolve_seed(self.config.seed if seed is None else seed)
        pixels = to_array(person_image) if isinstance(person_image, Image.Image) else _rgb(person_image)
        caps = self.check()
        mask, keypoints = self.prepare(pixels, mask_input)
        notes = list(mask.notes)
        if garment.category != self.config.category:
            notes.append(f"garment {garment.garment_id!r} is a {garment.category!r} garment, the mask is the "
                         f"{self.config.category!r} region")
        depth_on, why = self.uses_depth(caps)
        notes += [why] if why else []
        work = self._crop(pixels, mask.mask, keypoints)
        start = self._paste(work, garment, notes) if self.config.paste_garment else work.pixels
        prompt, negative = prompts(garment, self.config)
        lora = LoraRef(garment.lora.name, self.config.lora_weight, garment.lora.path)
        sent: dict[str, list[str]] = {}
        result = self._passes(work, start, (prompt, negative), lora, seed, depth_on, sent, notes, progress,
                              should_stop)
        image = paste_back(pixels, work.box, result, mask.mask, max(work.px, 0.5))
        progress(1.0, "scoring garment fidelity")
        fidelity = self._fidelity(image, mask.mask, garment, notes)
        out = TryOnResult(Image.fromarray(image, "RGB"), mask.mask, seed, fidelity, prompt, negative,
                          mask.protected, notes, sent)
        out.infotext = infotext(out, self.config, garment)
        return out

    def render_batch(self, person_image, garment: GarmentAssets, mask_input: MaskInput | None = None,
                     seed: int | None = None, progress: Progress = no_progress,
                     should_stop: ShouldStop = never_stop) -> list[TryOnResult]:
        """`batch_size` images with seeds seed, seed + 1, ..."""
        first = resolve_seed(self.config.seed if seed is None else seed)
        count = self.config.batch_size
        return [self.render(person_image, garment, mask_input, (first + i) % (2**32 - 1),
                            _scaled(progress, i / count, (i + 1) / count), should_stop) for i in range(count)]

    # ------------------------------------------------------------------------------------------ steps
    def _crop(self, pixels: np.ndarray, mask: np.ndarray, keypoints: np.ndarray | None) -> _Work:
        box = crop_box(mask, self.config.crop_margin, pixels.shape[:2])
        x0, y0, x1, y1 = box
        size = working_size(x1 - x0, y1 - y0, self.config.short_side)
        work = np.asarray(Image.fromarray(pixels[y0:y1, x0:x1]).resize(size, Image.LANCZOS))
        work_mask = np.asarray(Image.fromarray(mask[y0:y1, x0:x1]).resize(size, Image.NEAREST))
        local = None
        if keypoints is not None:
            local = np.asarray(keypoints, np.float32).copy()
            local[:, 0] = (local[:, 0] - x0) * size[0] / (x1 - x0)
            local[:, 1] = (local[:, 1] - y0) * size[1] / (y1 - y0)
        return _Work(box, work, work_mask, local, min(size) / 512)

    def _paste(self, work: _Work, garment: GarmentAssets, notes: list[str]) -> np.ndarray:
        if not np.asarray(garment.reference_mask).any():
            notes.append("garment not pasted: its reference mask is empty")
            return work.pixels
        pasted, turn, scale, iou = paste_garment(work.pixels, work.mask, garment.reference, garment.reference_mask)
        notes.append(f"garment pasted: turned {turn:.1f}°, scaled {scale:.2f}, mask IoU {iou:.2f}")
        return pasted

    def _passes(self, work: _Work, start: np.ndarray, prompt_pair, lora, seed, depth_on, sent, notes, progress,
                should_stop) -> np.ndarray:
        cfg = self.config
        depth_map = self.depth(work.pixels) if depth_on else None
        pose_map = None
        if cfg.openpose_weight > 0:
            if work.keypoints is None:
                notes.append("openpose control skipped: no pose was found")
            else:
                from easyphoto.pose import render_openpose

                pose_map = render_openpose(work.pixels.shape[1::-1], [work.keypoints])
        first_controls = [("openpose", pose_map, cfg.openpose_weight), ("canny", controls.canny(start), cfg.canny_weight),
                          ("depth", depth_map, cfg.depth_weight), ("color", controls.color(start), cfg.color_weight)]
        end_one = 0.75 if cfg.second_pass else 0.95
        first = self._inpaint(start, work.mask, prompt_pair, lora, first_controls, cfg.first_steps,
                              cfg.first_denoising_strength, seed, "pass 1", _scaled(progress, 0.0, end_one),
                              should_stop, sent)
        if not cfg.second_pass:
            return first
        band = boundary_band(work.mask, max(int(round(cfg.boundary_width * work.px)), 1))
        if not band.any():
            notes.append("pass 2 skipped: the mask has no inner boundary band")
            return first
        # reference: canny + depth of the person crop (its template), the garment's edges kept from the photo
        second_controls = [("canny", controls.canny(work.pixels), cfg.canny_weight),
                           ("depth", depth_map, cfg.depth_weight)]
        return self._inpaint(first, band, prompt_pair, lora, second_controls, cfg.second_steps,
                             cfg.second_denoising_strength, seed, "pass 2", _scaled(progress, end_one, 0.95),
                             should_stop, sent)

    def _inpaint(self, image, mask, prompt_pair, lora, wanted, steps, strength, seed, label, progress, should_stop,
                 sent) -> np.ndarray:
        if should_stop():
            raise GenerationInterrupted(f"Stopped before {label} of the try-on.")
        cfg = self.config
        kept = [Control(kind, condition, weight, mode=cfg.control_mode)
                for kind, condition, weight in wanted if condition is not None and weight > 0]
        sent[label] = [c.kind for c in kept]
        request = InpaintRequest(
            prompt=prompt_pair[0], negative_prompt=prompt_pair[1], loras=[lora], controls=kept, steps=steps,
            cfg_scale=cfg.cfg_scale, seed=seed, sampler=cfg.sampler, scheduler=cfg.scheduler, label=label,
            image=Image.fromarray(image, "RGB"), mask=Image.fromarray(mask, "L"), denoising_strength=strength,
            mask_blur=cfg.mask_blur, inpainting_fill="original",
        )
        images = self.generator.inpaint(request, progress, should_stop)
        if not images:
            raise GenerationInterrupted(f"{label} returned no image (stopped).")
        out = images[0].convert("RGB")
        if out.size != request.image.size:  # a host may round sizes; the crop geometry must stay exact
            out = out.resize(request.image.size, Image.LANCZOS)
        return np.asarray(out)

    def _fidelity(self, image: np.ndarray, mask: np.ndarray, garment: GarmentAssets,
                  notes: list[str]) -> GarmentFidelity | None:
        from easyphoto.tryon.fidelity import EmptyGarmentRegion

        try:
            return garment_fidelity(image, mask, garment.reference, garment.reference_mask)
        except EmptyGarmentRegion as exc:
            notes.append(f"no fidelity score: {exc.message}")
            return None


# ---------------------------------------------------------------------------------------------- geometry


def crop_box(mask: np.ndarray, margin: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The mask's bounding box grown by `margin` × its size on each side (at least 16 px), inside the photo."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise EmptyTryOnMask("The try-on mask is empty.")
    height, width = shape
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    pad_x = max(int((x1 - x0) * margin), 16)
    pad_y = max(int((y1 - y0) * margin), 16)
    return max(x0 - pad_x, 0), max(y0 - pad_y, 0), min(x1 + pad_x, width), min(y1 + pad_y, height)


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask's pixels within `width` px of its edge (inside it): where a repainted garment meets the photo."""
    return np.where(erode(mask, width) > 0, 0, mask).astype(np.uint8)


def paste_garment(pixels: np.ndarray, mask: np.ndarray, reference: np.ndarray,
                  reference_mask: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The garment reference warped onto the mask and pasted inside it: (pixels, turn in degrees, scale, IoU).

    Alignment: scale = √(area of the mask's minAreaRect / area of the reference mask's), turn = the difference of
    the two masks' principal axes (image moments; 0 above MAX_PASTE_TURN), centres = the minAreaRect centres."""
    import cv2

    target, source = _rect_and_axis(mask), _rect_and_axis(reference_mask)
    (t_centre, t_size, _), t_axis = target
    (s_centre, s_size, _), s_axis = source
    scale = float(np.sqrt(max(t_size[0] * t_size[1], 1.0) / max(s_size[0] * s_size[1], 1.0)))
    turn = (t_axis - s_axis + 90.0) % 180.0 - 90.0
    turn = turn if abs(turn) <= MAX_PASTE_TURN else 0.0
    angle = np.deg2rad(turn)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = np.asarray(t_centre) - rotation @ np.asarray(s_centre)
    matrix = np.hstack([rotation, shift[:, None]]).astype(np.float64)
    size = (pixels.shape[1], pixels.shape[0])
    warped = cv2.warpAffine(np.ascontiguousarray(reference[..., :3]), matrix, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    warped_mask = cv2.warpAffine((np.asarray(reference_mask) > 0).astype(np.uint8) * 255, matrix, size,
                                 flags=cv2.INTER_NEAREST)
    inside = (mask > 0) & (warped_mask > 0)
    out = pixels.copy()
    out[inside] = warped[inside]
    union = np.count_nonzero((mask > 0) | (warped_mask > 0))
    return out, float(turn), scale, float(np.count_nonzero(inside) / max(union, 1))


def _rect_and_axis(mask: np.ndarray):
    import cv2

    binary = (np.asarray(mask) > 0).astype(np.uint8)
    points = cv2.findNonZero(binary)
    if points is None:
        raise TryOnInputError("A garment mask used for pasting is empty.")
    moments = cv2.moments(binary, binaryImage=True)
    axis = 0.5 * np.degrees(np.arctan2(2 * moments["mu11"], moments["mu20"] - moments["mu02"]))
    return cv2.minAreaRect(points), float(axis)


def paste_back(canvas: np.ndarray, box, result: np.ndarray, mask: np.ndarray, px: float) -> np.ndarray:
    """The rendered crop resized to its box and blended in through the mask, feathered inward only: outside the
    mask every pixel is the canvas's own, exactly."""
    import cv2

    x0, y0, x1, y1 = box
    resized = np.asarray(Image.fromarray(result).resize((x1 - x0, y1 - y0), Image.LANCZOS))
    region = mask[y0:y1, x0:x1]
    weight = soft_mask(cv2.erode(region, np.ones((3, 3), np.uint8)), 2 * px)
    weight = np.maximum(weight, (erode(region, max(int(4 * px), 1)) > 0).astype(np.float32))
    weight[region == 0] = 0.0
    out = canvas.copy()
    out[y0:y1, x0:x1] = blend(canvas[y0:y1, x0:x1], resized, weight)
    return out


# ---------------------------------------------------------------------------------------------- infotext


def infotext(result: TryOnResult, config: TryOnConfig, garment: GarmentAssets) -> str:
    """WebUI-style generation parameters (prompt, "Negative prompt:", "Key: value" pairs) of pass 1, plus
    EasyPhoto's try-on keys and the fidelity formula."""
    width, height = result.image.size
    pairs = {
        "Steps": config.first_steps, "Sampler": config.sampler, "Schedule type": config.scheduler,
        "CFG scale": config.cfg_scale, "Seed": result.seed, "Size": f"{width}x{height}",
        "Denoising strength": config.first_denoising_strength, "Mask blur": config.mask_blur,
        "EasyPhoto garment": garment.garment_id, "EasyPhoto category": config.category,
        "EasyPhoto controls": "; ".join(f"{label}={'+'.join(kinds) or 'none'}" for label, kinds in
                                        result.controls.items()),
        "EasyPhoto fidelity": result.fidelity.describe() if result.fidelity else "none",
        "Version": f"EasyPhoto {__version__}",
    }
    params = ", ".join(f"{key}: {_quote(value)}" for key, value in pairs.items())
    lora = f"<lora:{garment.lora.name}:{config.lora_weight:g}>"
    return f"{result.prompt}, {lora}\nNegative prompt: {result.negative_prompt}\n{params}"


def _quote(value) -> str:
    import json

    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',:"\n') else text


def _default_pose() -> PoseEstimator | None:
    from easyphoto.pose import openpose

    return openpose.body_keypoints_from_mediapipe if openpose.available() else None


def _rgb(array: np.ndarray) -> np.ndarray:
    pixels = np.asarray(array)
    if pixels.ndim != 3 or pixels.shape[2] < 3 or pixels.dtype != np.uint8:
        raise TryOnInputError(f"The person photo must be an RGB uint8 image, not {pixels.dtype} {pixels.shape}.")
    return np.ascontiguousarray(pixels[..., :3])


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    def report(fraction: float, message: str) -> None:
        progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)

    return report
