"""The two-pass portrait algorithm (reference §3.6), written once against the Generator protocol.

Per assigned face, on the current canvas (so several people are rendered one after the other into one photo):
crop around the face → resize to the working size → fuse the reference face in → pass 1: inpaint the face with
the identity LoRA under canny + pose + colour control → colour shift toward the template → fuse again → pass 2:
refine the ring around the face and the features under canny + tile control → colour shift → optional retouch and
super-resolution → paste back through a feathered mask, so nothing outside the face region changes.

Faces are rendered strictly one identity at a time: each pass sees only its own identity's LoRA and reference face,
and the paste-back mask covers only its own face, so one identity cannot leak into another person's face.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from easyphoto.config import DEFAULT_CAPTION, SDXL_PORTRAIT_DEFAULTS, PortraitConfig, with_family_defaults
from easyphoto.face.stacks import FaceStack
from easyphoto.face.types import Face, cosine
from easyphoto.generation import (
    Control,
    GenerationError,
    GenerationInterrupted,
    Generator,
    IdentityControl,
    InpaintRequest,
    LoraRef,
    Progress,
    ShouldStop,
    controlnet_models,
    never_stop,
    no_progress,
)
from easyphoto.identity_modes import identity_models, is_training_free
from easyphoto.imageops import blend, color_transfer, dilate, erode, smooth_skin, soft_mask, to_array
from easyphoto.portrait import controls
from easyphoto.portrait.fusion import ClassicalFuser, FaceFuser, FaceImage, face_masks
from easyphoto.portrait.template import TemplateAnalysis, assign, box_iou

POSITIVE_SUFFIX = "best quality, realistic, photo-realistic, detailed skin, natural lighting"
NEGATIVE_PROMPT = ("lowres, blurry, deformed face, bad anatomy, bad eyes, bad teeth, bad lips, glasses, watermark, "
                   "text, nsfw")


@dataclass
class IdentityAssets:
    """What rendering one identity needs: its LoRA, reference face and the embeddings its likeness is scored against."""

    identity_id: str
    lora: LoraRef | None  # None for an identity rendered training-free (no LoRA trained yet)
    reference: FaceImage
    embeddings: np.ndarray  # (n, dim) unit vectors of the identity's photos
    trigger: str = DEFAULT_CAPTION  # the caption the LoRA was trained with


@dataclass
class FaceResult:
    index: int  # template face number (left to right)
    identity_id: str
    box: tuple[float, float, float, float]
    likeness: float | None  # cosine similarity to the identity's photos; None when no face was found there
    others: dict[str, float] = field(default_factory=dict)  # similarity to the other identities of this portrait


@dataclass
class PortraitResult:
    image: Image.Image
    template: str
    seed: int
    faces: list[FaceResult]
    attempts: int
    prompt: str
    negative_prompt: str

    @property
    def likeness(self) -> float | None:
        values = [f.likeness for f in self.faces]
        return None if any(v is None for v in values) or not values else float(min(values))


def prompts(identity: IdentityAssets, config: PortraitConfig) -> tuple[str, str]:
    positive = ", ".join(p for p in (identity.trigger, config.additional_prompt, POSITIVE_SUFFIX) if p.strip())
    negative = ", ".join(p for p in (config.additional_negative_prompt, NEGATIVE_PROMPT) if p.strip())
    return positive, negative


def resolve_seed(seed: int) -> int:
    return random.SystemRandom().randrange(0, 2**32 - 1) if seed < 0 else int(seed)


class PortraitPipeline:
    def __init__(self, generator: Generator, stack: FaceStack, config: PortraitConfig,
                 fuser: FaceFuser | None = None, upscaler=None):
        self.generator = generator
        self.stack = stack
        self.config = config
        self.fuser = fuser or ClassicalFuser()
        self.upscaler = upscaler  # callable(image, side) -> image, for super-resolution

    # ------------------------------------------------------------------------------------------ public
    family = "sd15"  # the backend's base model family, read by check(): SDXL passes carry only SDXL-published kinds

    def required_controls(self, family: str | None = None) -> set[str]:
        return set().union(*self._pass_kinds(family or self.family))

    def _pass_kinds(self, family: str) -> list[set[str]]:
        """The control kinds each pass sends: weight > 0 and, on SDXL, a published SDXL ControlNet (reference §3.6
        "SDXL differences": canny; pose where its SDXL model is installed; no colour or tile)."""
        cfg, available = self.config, controlnet_models(family)
        passes = [{k for k, w in (("canny", cfg.canny_weight), ("openpose", cfg.openpose_weight),
                                  ("color", cfg.color_weight)) if w > 0}]
        if cfg.second_pass:
            passes.append({k for k, w in (("canny", cfg.second_canny_weight), ("tile", cfg.tile_weight)) if w > 0})
        return [{k for k in kinds if k in available} for kinds in passes]

    def check(self) -> None:
        """Fail before any work when the backend lacks a ControlNet model, a training-free identity method's models,
        or enough units for a pass."""
        caps = self.generator.capabilities()
        self.family = caps.family
        self.config = with_family_defaults(self.config, caps.family, SDXL_PORTRAIT_DEFAULTS)  # SDXL: 1024 px crop
        caps.require(self.required_controls())
        mode, extra = self.config.identity_mode, 0
        if is_training_free(mode):
            extra = len(identity_models(mode, caps.family).units)  # refuses a family the method has no models for
            caps.require_identity(mode)
        most = max((len(kinds) + extra for kinds in self._pass_kinds(caps.family)), default=0)
        if caps.max_controls and most > caps.max_controls:
            raise GenerationError(
                f"A portrait pass needs {most} ControlNet units here, but {caps.backend} runs with "
                f"{caps.max_controls}.",
                hint="Set “Multi-ControlNet: ControlNet unit number” to at least that in Settings → ControlNet and "
                     "restart the WebUI, or set the weight of a control to 0.")

    def render(self, template: TemplateAnalysis, identities: list[IdentityAssets], face_indices: list[int] | None,
               seed: int, progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> PortraitResult:
        """One portrait; with the likeness gate on, regenerates with new seeds and keeps the best attempt."""
        cfg = self.config
        pairs = assign(template, [i.identity_id for i in identities], face_indices, cfg.min_face_px)
        by_id = {i.identity_id: i for i in identities}
        attempts = cfg.max_attempts if cfg.likeness_gate else 1
        best: PortraitResult | None = None
        for attempt in range(attempts):
            attempt_seed = (seed + attempt * 1_000_003) % (2**32 - 1)
            share = (attempt / attempts, (attempt + 1) / attempts)
            result = self._render_once(template, pairs, by_id, attempt_seed, _scaled(progress, *share), should_stop)
            if best is None or _rank(result) > _rank(best):
                best = result
            if not cfg.likeness_gate or (result.likeness is not None and result.likeness >= cfg.likeness_threshold):
                break
        best.attempts = attempt + 1  # generations made, whichever of them was kept
        return best

    # ------------------------------------------------------------------------------------------ one attempt
    def _render_once(self, template, pairs, by_id, seed, progress, should_stop) -> PortraitResult:
        canvas = to_array(template.image)
        total = len(pairs)
        prompt_used = negative_used = ""
        for number, (identity_id, face) in enumerate(pairs):
            if should_stop():
                raise GenerationInterrupted("Stopped before the portrait was finished.")
            identity = by_id[identity_id]
            face_progress = _scaled(progress, number / total, (number + 1) / total)
            prompt_used, negative_used = prompts(identity, self.config)
            canvas = self._render_face(canvas, face, identity, (prompt_used, negative_used), seed + number,
                                       face_progress, should_stop)
        image = Image.fromarray(canvas, "RGB")
        progress(1.0, "scoring likeness")
        faces = self._score(canvas, template, pairs, by_id)
        return PortraitResult(image, template.name, seed, faces, 1, prompt_used, negative_used)

    def _render_face(self, canvas: np.ndarray, face: Face, identity: IdentityAssets, prompt_pair: tuple[str, str],
                     seed: int, progress: Progress, should_stop: ShouldStop) -> np.ndarray:
        cfg = self.config
        height, width = canvas.shape[:2]
        box = face.expanded_box(cfg.crop_ratio, (width, height)) if cfg.crop_face else (0, 0, width, height)
        crop = canvas[box[1]:box[3], box[0]:box[2]]
        size = working_size(crop.shape[1], crop.shape[0], cfg.short_side)
        work = np.asarray(Image.fromarray(crop).resize(size, Image.LANCZOS))
        local = face.in_crop(box, (size[0] / crop.shape[1], size[1] / crop.shape[0]))
        masks = face_masks(self.stack.parser, work, local)
        target = FaceImage(work, local, masks)
        px = min(size) / 512  # the reference's pixel sizes are for a 512 px crop
        prompt, negative = prompt_pair
        lora = None if identity.lora is None else LoraRef(identity.lora.name, cfg.lora_weight, identity.lora.path)
        face_units = self._identity_control(identity)

        fused = self.fuser.fuse(target, identity.reference, cfg.face_fusion_before) if cfg.fusion_before else work
        inpaint_mask = dilate(masks.face, max(int(local.width / 10), 1))
        pass1 = [Control("canny", controls.canny(fused), cfg.canny_weight, mode=cfg.control_mode),
                 Control("openpose", controls.openpose(work, local), cfg.openpose_weight, mode=cfg.control_mode),
                 Control("color", controls.color(fused), cfg.color_weight, mode=cfg.control_mode)]
        first = self._inpaint(fused, inpaint_mask, prompt, negative, lora, pass1, cfg.first_steps,
                              cfg.first_denoising_strength, seed, "pass 1", _scaled(progress, 0.0, 0.7), should_stop,
                              face_units)
        if cfg.color_shift_middle:
            first = blend(first, color_transfer(first, work, masks.face), soft_mask(masks.skin, 32 * px))
        if cfg.fusion_after:
            first = self.fuser.fuse(FaceImage(first, local, masks), identity.reference, cfg.face_fusion_after)
        result, ring = first, np.zeros_like(masks.face)
        if cfg.second_pass:
            ring = np.maximum(dilate(masks.face, int(32 * px)) - erode(masks.face, int(16 * px)),
                              np.clip(masks.face.astype(np.int16) - masks.skin, 0, 255).astype(np.uint8))
            pass2 = [Control("canny", controls.canny(first), cfg.second_canny_weight, mode=cfg.control_mode),
                     Control("tile", controls.tile(first), cfg.tile_weight, mode=cfg.control_mode)]
            result = self._inpaint(first, ring, prompt, negative, lora, pass2, cfg.second_steps,
                                   cfg.second_denoising_strength, seed + 7, "pass 2", _scaled(progress, 0.7, 0.95),
                                   should_stop, face_units)
        if cfg.color_shift_last:
            result = blend(result, color_transfer(result, work, masks.skin), soft_mask(masks.skin, 32 * px))
        result = self._finish(result, masks, size)
        return paste_back(canvas, box, result, np.maximum(inpaint_mask, ring), px)

    def _identity_control(self, identity: IdentityAssets) -> IdentityControl | None:
        """The training-free identity condition of this face (its own reference face only: identities never mix),
        None in LoRA mode."""
        mode = self.config.identity_mode
        if not is_training_free(mode):
            return None
        return IdentityControl(mode, Image.fromarray(identity.reference.pixels, "RGB"), self.config.identity_weight)

    def _inpaint(self, image, mask, prompt, negative, lora, controls_, steps, strength, seed, label, progress,
                 should_stop, identity_control: IdentityControl | None = None) -> np.ndarray:
        available = controlnet_models(self.family)
        kept = [c for c in controls_ if c.weight > 0 and c.kind in available]
        request = InpaintRequest(
            prompt=prompt, negative_prompt=negative, loras=[lora] if lora else [], controls=kept, steps=steps,
            identity=identity_control,
            cfg_scale=self.config.cfg_scale, seed=seed, sampler=self.config.sampler, scheduler=self.config.scheduler,
            label=label, image=Image.fromarray(image, "RGB"), mask=Image.fromarray(mask, "L"),
            denoising_strength=strength, mask_blur=self.config.mask_blur, inpainting_fill="original",
        )
        images = self.generator.inpaint(request, progress, should_stop)
        if not images:
            raise GenerationInterrupted(f"{label} returned no image (stopped).")
        out = images[0].convert("RGB")
        if out.size != request.image.size:  # a host may round sizes; the crop geometry must stay exact
            out = out.resize(request.image.size, Image.LANCZOS)
        return np.asarray(out)

    def _finish(self, pixels: np.ndarray, masks, size) -> np.ndarray:
        cfg = self.config
        if cfg.skin_retouch:
            pixels = smooth_skin(pixels, masks.skin)
        if cfg.super_resolution and self.upscaler is not None and cfg.super_resolution_ratio > 0:
            image = Image.fromarray(pixels)
            sharp = self.upscaler(image, max(size) * 2).resize(image.size, Image.LANCZOS)
            weight = np.full(pixels.shape[:2], cfg.super_resolution_ratio, np.float32)
            pixels = blend(pixels, np.asarray(sharp.convert("RGB")), weight)
        return pixels

    # ------------------------------------------------------------------------------------------ likeness
    def _score(self, canvas, template, pairs, by_id) -> list[FaceResult]:
        detected = self.stack.detector.detect(canvas)
        results = []
        for identity_id, face in pairs:
            index = template.faces.index(face)
            match = max(detected, key=lambda d: box_iou(d.box, face.box), default=None)
            if match is None or box_iou(match.box, face.box) < 0.3:
                results.append(FaceResult(index, identity_id, face.box, None))
                continue
            vector = self.stack.embedder.embed(canvas, match)
            scores = {i: float(np.mean([cosine(vector, e) for e in a.embeddings])) for i, a in by_id.items()}
            results.append(FaceResult(index, identity_id, face.box, round(scores[identity_id], 4),
                                      {i: round(s, 4) for i, s in scores.items() if i != identity_id}))
        return results


def working_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Short side to `short_side`, both sides floored to a multiple of 32 (reference §3.6 step 2)."""
    scale = short_side / min(width, height)
    return tuple(max(32, int(side * scale) // 32 * 32) for side in (width, height))


def paste_back(canvas: np.ndarray, box, result: np.ndarray, changed: np.ndarray, px: float) -> np.ndarray:
    """Resize the rendered crop to the box and blend it in only where the passes painted (feathered)."""
    import cv2

    width, height = box[2] - box[0], box[3] - box[1]
    resized = np.asarray(Image.fromarray(result).resize((width, height), Image.LANCZOS))
    region = cv2.resize(dilate(changed, max(int(8 * px), 1)), (width, height), interpolation=cv2.INTER_LINEAR)
    weight = soft_mask(region, max(4 * px * width / result.shape[1], 1.0))
    weight[region == 0] = 0.0  # the feather stays inside the painted region: outside it, pixels are untouched
    out = canvas.copy()
    out[box[1]:box[3], box[0]:box[2]] = blend(canvas[box[1]:box[3], box[0]:box[2]], resized, weight)
    return out


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    def report(fraction: float, message: str) -> None:
        progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)

    return report


def _rank(result: PortraitResult) -> float:
    return -1.0 if result.likeness is None else result.likeness
