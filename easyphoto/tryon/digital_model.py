"""The digital model (issue 14): keep a garment's pixels exactly, regenerate the model, outfit, scene or pose.

    pipeline = DigitalModelPipeline(generator, DigitalModelConfig(mode="model"), parser=parser)
    pipeline.check()                                        # missing ControlNet models fail here
    result = pipeline.render(photo, DigitalModelInputs(), seed=42)
    result.image, result.kept_fidelity, result.completed    # the garment-kept score, the joints that were placed

Published practice, written from its description (tryon-peers.md): segment the garment, keep its pixels,
regenerate everything else by inpainting under an openpose ControlNet; for half-body or mannequin shots complete the
pose first. Per mode:

- "model": the kept garment comes from the clothes parsing (the config's category) or a given mask; the pose from
  a given skeleton or mediapipe, completed from body proportions (easyphoto.pose.completion; visible joints never
  move) and the canvas extended (outpainted) where the completed body leaves the frame. Regenerated: the body
  region around the garment (parsing's person labels, the completed skeleton's limbs drawn thick, the new border)
  or, with regenerate_background, everything but the garment. Controls: openpose of the completed skeleton, canny
  and depth of the kept garment only (the mannequin's head and stand must not steer the new body).
- "outfit": another trained garment's LoRA on the outfit_category region (grown 8 px, face, hair and hands kept
  out), the kept garment subtracted.
- "scene": the background regenerated with the scene prompt; the person kept by matting (the parsing's person
  labels exactly, mediapipe's soft selfie matte for the edges and hair, composited over the new scene).
- "pose": the model drawn anew under a new skeleton (gallery, JSON or another photo) with the garment's LoRA; the
  garment's pixels cannot stay when the body moves, so its fidelity against the garment's reference is reported.

In the first three modes every pixel of the kept garment is the photo's own, exactly (paste-back through the
regenerated mask only), and the result's garment-kept score compares the garment region of the result with the
photo's. With an identity, its LoRA joins the generation and the face is then repainted by the portrait's two
passes with face fusion (a callback from the job layer), the kept garment restored after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from easyphoto import __version__
from easyphoto.config import DigitalModelConfig
from easyphoto.generation import (
    Capabilities,
    Control,
    GenerationInterrupted,
    Generator,
    InpaintRequest,
    LoraRef,
    Progress,
    ShouldStop,
    Txt2ImgRequest,
    never_stop,
    no_progress,
)
from easyphoto.identity_modes import IDENTITY_LICENCES, is_training_free
from easyphoto.imageops import blend, dilate, to_array
from easyphoto.portrait import controls
from easyphoto.portrait.pipeline import resolve_seed, working_size
from easyphoto.segment.types import ATR_LABELS, GARMENT_CATEGORIES, ClothesParser, Parsing
from easyphoto.tryon.fidelity import EmptyGarmentRegion, GarmentFidelity, garment_fidelity
from easyphoto.tryon.masks import EmptyTryOnMask, NoPersonFound, TryOnInputError, garment_region, tryon_mask
from easyphoto.tryon.pipeline import _MEDIAPIPE, GarmentAssets, PoseEstimator, _default_pose, _scaled, paste_back

NEGATIVE_PROMPT = ("lowres, blurry, deformed, bad anatomy, bad hands, extra fingers, extra limbs, missing limbs, "
                   "mannequin, watermark, text, logo, nsfw")
QUALITY = "best quality, realistic, photo-realistic, natural skin, detailed fabric"
LIMB_WIDTH = 0.09  # the body region drawn around the skeleton: stick width as a fraction of the body's height
KEEP_CONTROL_GROW = 6  # px (at 512) the kept garment's canny/depth conditions reach beyond its edge
GARMENT_LABELS = tuple(sorted({label for labels in GARMENT_CATEGORIES.values() for label in labels}))
MIN_GARMENT_SHARE = 0.05  # a given mask with less garment (by the parsing) than this covers no garment
OUTFIT_DILATION = 8
FacePass = Callable[[np.ndarray, int], "tuple[np.ndarray, str]"]  # (pixels, seed) -> (pixels, note)


class NoGarmentInMask(TryOnInputError):
    """The given mask covers (almost) no garment pixel by the clothes parsing: nothing to keep."""


@dataclass
class DigitalModelInputs:
    """What one render uses besides the photo. `keep_mask`: the kept garment from clicks or a drawing (mask_source
    points / mask); `skeleton`: (18, 3) COCO-18 key points in the photo's pixels (model mode: the user's edited
    pose; pose mode: the new pose, in `pose_size` pixels); `garment`: the kept garment's LoRA (pose mode needs it);
    `outfit`: the other garment (outfit mode); `face_pass`: repaints the face with a trained identity."""

    keep_mask: np.ndarray | None = None
    parsing: Parsing | None = None
    skeleton: np.ndarray | None = None
    pose_size: tuple[int, int] | None = None  # (width, height) of the new pose's canvas (pose mode)
    garment: GarmentAssets | None = None
    outfit: GarmentAssets | None = None
    identity_lora: LoraRef | None = None
    identity_trigger: str = ""
    face_pass: FacePass | None = None


@dataclass
class DigitalModelResult:
    image: Image.Image
    mode: str
    seed: int
    regenerated: np.ndarray  # uint8 0/255 in the result's pixels: what was generated (the rest is the photo's own)
    kept: np.ndarray | None  # uint8 0/255 in the result's pixels: the kept garment (None in pose mode)
    fidelity: GarmentFidelity | None  # garment kept (modes model/outfit/scene) or against its reference (pose)
    pose: np.ndarray | None  # (18, 3) the skeleton used, in the result's pixels
    completed: tuple[str, ...] = ()  # joints placed by pose completion
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # canvas added (left, top, right, bottom), outpainted
    prompt: str = ""
    negative_prompt: str = ""
    notes: list[str] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    infotext: str = ""
    face_mode: str = ""  # the training-free identity method that repainted the face ("" = LoRA, or no face pass)


@dataclass
class _Scene:
    """The canvas one render works on: pixels (maybe extended), the kept garment, the regenerated region, pose."""

    pixels: np.ndarray
    keep: np.ndarray | None
    regenerate: np.ndarray
    pose: np.ndarray | None
    completed: tuple[str, ...] = ()
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    alpha: np.ndarray | None = None  # scene mode: the person's soft matte (1 = the photo's own pixel)


def model_prompt(config: DigitalModelConfig) -> str:
    """The model's description from the presets: 'a photo of a slim young adult East Asian woman, fashion model'."""
    who = " ".join(w for w in (config.body_type, config.age, "" if config.ethnicity == "any" else config.ethnicity,
                               config.gender) if w)
    return f"a photo of a {who}, fashion model, full body"


def prompts(config: DigitalModelConfig, inputs: DigitalModelInputs) -> tuple[str, str]:
    garment = inputs.outfit if config.mode == "outfit" else inputs.garment
    scene = config.scene_prompt if config.mode == "scene" or config.regenerate_background or config.mode == "pose" else ""
    parts = [garment.trigger if garment else "", inputs.identity_trigger,
             "" if config.mode == "scene" else model_prompt(config), scene, config.additional_prompt, QUALITY]
    negative = ", ".join(p for p in (config.additional_negative_prompt, NEGATIVE_PROMPT) if p.strip())
    return ", ".join(p for p in parts if p.strip()), negative


class DigitalModelPipeline:
    def __init__(self, generator: Generator, config: DigitalModelConfig, parser: ClothesParser | None = None,
                 pose: PoseEstimator | None = _MEDIAPIPE, depth: Callable[[np.ndarray], Image.Image] | None = None,
                 matter: Callable[[np.ndarray], np.ndarray] | None = None):
        """`parser`: clothes parsing (the kept garment for mask_source parsing, the person for the body region and
        the scene's hard matte); `pose`: a key-point estimator (default mediapipe's; None = none); `depth`: a depth
        estimator for the kept garment's depth control (None = no depth); `matter`: a soft person matte (mediapipe
        selfie segmentation) for the scene swap's edges, hair and what the parsing misses (None = the parsing's)."""
        self.generator = generator
        self.config = config
        self.parser = parser
        self.pose = _default_pose() if pose is _MEDIAPIPE else pose
        self.depth = depth
        self.matter = matter

    # ------------------------------------------------------------------------------------------ checks
    def required_controls(self) -> set[str]:
        cfg = self.config
        kinds = {"openpose"} if cfg.openpose_weight > 0 and cfg.mode in ("model", "pose", "outfit") else set()
        if cfg.canny_weight > 0 and cfg.mode != "pose":
            kinds.add("canny")
        return kinds

    def check(self) -> Capabilities:
        caps = self.generator.capabilities()
        caps.require(self.required_controls())
        return caps

    def loras(self, inputs: DigitalModelInputs) -> list[LoraRef]:
        cfg, loras = self.config, []
        garment = inputs.outfit if cfg.mode == "outfit" else inputs.garment
        if cfg.mode == "outfit" and garment is None:
            raise TryOnInputError("An outfit swap needs the other garment: a trained garment to put on the "
                                  f"{cfg.outfit_category!r} region.", hint="Pick the outfit garment (outfit_id).")
        if cfg.mode == "pose" and garment is None:
            raise TryOnInputError("A pose swap needs the garment's LoRA: the garment's pixels cannot be kept when the "
                                  "body moves.", hint="Pick a trained garment (garment_id), or train one first.")
        if garment is not None:
            loras.append(LoraRef(garment.lora.name, cfg.garment_lora_weight, garment.lora.path))
        if inputs.identity_lora is not None:
            loras.append(LoraRef(inputs.identity_lora.name, cfg.identity_lora_weight, inputs.identity_lora.path))
        return loras

    # ------------------------------------------------------------------------------------------ render
    def prepare(self, photo: np.ndarray | None, inputs: DigitalModelInputs) -> _Scene:
        """The canvas, the kept garment, the regenerated region and the pose; every input error is raised here."""
        mode = self.config.mode
        if mode == "pose":
            return self._pose_scene(inputs)
        pixels = _rgb(photo)
        parsing = inputs.parsing
        if parsing is None and self.parser is not None:
            parsing = self.parser.parse(pixels)
        keep = self._kept_garment(pixels.shape[:2], parsing, inputs.keep_mask)
        if mode == "model":
            return self._model_scene(pixels, keep, parsing, inputs.skeleton)
        body = self._body(pixels, inputs.skeleton, required=False)
        if mode == "scene":
            return self._scene_swap(pixels, keep, parsing, body)
        return self._outfit_scene(pixels, keep, parsing, body)

    def render(self, photo: Image.Image | np.ndarray | None, inputs: DigitalModelInputs, seed: int | None = None,
               progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> DigitalModelResult:
        seed = resolve_seed(self.config.seed if seed is None else seed)
        photo = to_array(photo) if isinstance(photo, Image.Image) else photo
        self.check()
        loras = self.loras(inputs)
        scene = self.prepare(photo, inputs)
        notes: list[str] = [f"pose completed: {', '.join(scene.completed)}"] if scene.completed else []
        if any(scene.padding):
            notes.append(f"canvas extended (left, top, right, bottom) by {scene.padding} px and outpainted")
        prompt, negative = prompts(self.config, inputs)
        sent: list[str] = []
        pixels = self._generate(scene, (prompt, negative), loras, seed, sent, notes, _scaled(progress, 0, 0.8),
                                should_stop)
        if inputs.face_pass is not None and self.config.face_pass:
            progress(0.8, "repainting the face with the identity")
            before = pixels
            pixels, note = inputs.face_pass(pixels, seed)
            notes += [note] if note else []
            if scene.keep is not None:  # the face's ring may touch a collar: the garment stays the photo's own
                pixels = np.where(scene.keep[..., None] > 0, before, pixels)
        progress(0.95, "scoring the garment")
        fidelity = self._fidelity(pixels, scene, inputs, notes)
        result = DigitalModelResult(Image.fromarray(pixels, "RGB"), self.config.mode, seed, scene.regenerate,
                                    scene.keep, fidelity, scene.pose, scene.completed, scene.padding, prompt,
                                    negative, notes, sent)
        if inputs.face_pass is not None and self.config.face_pass and is_training_free(self.config.identity_mode):
            result.face_mode = self.config.identity_mode
        result.infotext = infotext(result, self.config, loras)
        return result

    def render_batch(self, photo, inputs: DigitalModelInputs, seed: int | None = None,
                     progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> list[DigitalModelResult]:
        first = resolve_seed(self.config.seed if seed is None else seed)
        count = self.config.batch_size
        return [self.render(photo, inputs, (first + i) % (2**32 - 1), _scaled(progress, i / count, (i + 1) / count),
                            should_stop) for i in range(count)]

    # ------------------------------------------------------------------------------------------ scenes
    def _kept_garment(self, shape, parsing: Parsing | None, given: np.ndarray | None) -> np.ndarray:
        cfg = self.config
        if cfg.mask_source != "parsing" and given is None:
            raise EmptyTryOnMask(f"mask_source is {cfg.mask_source!r} but no garment mask was given.",
                                 hint="Click on the garment or draw over it, or use mask_source 'parsing'.")
        keep = garment_region(shape, cfg.category, parsing, given if cfg.mask_source != "parsing" else None)
        if given is not None and parsing is not None:
            share = float(np.mean(np.isin(parsing.labels[keep > 0], [ATR_LABELS.index(x) for x in GARMENT_LABELS])))
            if share < MIN_GARMENT_SHARE:
                raise NoGarmentInMask(
                    f"The garment mask covers no garment: the clothes parsing finds garment labels on {share:.0%} of "
                    "its pixels.", hint="Click on the garment itself (left click adds, right click removes), or draw "
                                        "over it; the mask marks what is kept.")
        return keep

    def _body(self, pixels: np.ndarray, skeleton: np.ndarray | None, required: bool) -> np.ndarray | None:
        if skeleton is not None:
            return _checked_skeleton(skeleton)
        body = self.pose(pixels) if self.pose is not None else None
        if body is None and required:
            raise NoPersonFound("No person or mannequin pose was found in the photo: the pose estimator sees no body.",
                                hint="Use a photo where the head or the shoulders are visible, or give a skeleton "
                                     "(the pose editor, or the API's skeleton field).")
        return body

    def _model_scene(self, pixels, keep, parsing, skeleton) -> _Scene:
        from easyphoto.pose.completion import complete_body, extend_canvas

        cfg, (height, width) = self.config, pixels.shape[:2]
        body = self._body(pixels, skeleton, required=True)
        completed, padding = (), (0, 0, 0, 0)
        if cfg.complete_pose:
            done = complete_body(body, (width, height))
            body, completed = done.body, tuple(done.completed)
            padding = tuple(int(p) for p in done.padding) if cfg.outpaint else padding
        border = np.zeros((height, width), np.uint8)
        if any(padding):
            left, top = padding[0], padding[1]
            extended, border_image = extend_canvas(Image.fromarray(pixels), padding)
            pixels, border = np.asarray(extended.convert("RGB")), np.asarray(border_image.convert("L"))
            keep = _place(keep, border.shape, left, top)
            parsing = Parsing(_place(parsing.labels, border.shape, left, top)) if parsing is not None else None
            body = body.copy()
            body[:, 0] += left
            body[:, 1] += top
        if cfg.regenerate_background:
            regenerate = _not(keep)
        else:
            region = np.maximum(_person(pixels.shape[:2], parsing, None, required=False), body_region(pixels.shape[:2], body))
            regenerate = np.where(keep > 0, 0, np.maximum(region, border)).astype(np.uint8)
        if not regenerate.any():
            raise EmptyTryOnMask("Nothing is left to regenerate: the kept garment covers the whole body region.",
                                 hint="Mark only the garment, or turn regenerate_background on.")
        return _Scene(pixels, keep, regenerate, body, completed, padding)

    def _scene_swap(self, pixels, keep, parsing, body) -> _Scene:
        """The person kept by matting: the parsing's person labels are kept exactly (alpha 1); the soft matte adds
        the edges and what the parsing misses, blended; where the combined alpha is below 0.5 is regenerated."""
        hard = _person(pixels.shape[:2], parsing, keep, required=self.matter is None)
        alpha = (hard > 0).astype(np.float32)
        soft = self.matter(pixels) if self.matter is not None else None
        if soft is not None:
            alpha = np.maximum(alpha, np.clip(soft, 0.0, 1.0).astype(np.float32))
        if not (alpha >= 0.5).any():
            raise NoPersonFound("No person was found to keep: the parsing and the matte see only background.",
                                hint="Use a photo of a person, or mode 'model' for a mannequin shot.")
        return _Scene(pixels, keep, np.where(alpha >= 0.5, 0, 255).astype(np.uint8), body, alpha=alpha)

    def _outfit_scene(self, pixels, keep, parsing, body) -> _Scene:
        cfg = self.config
        region = tryon_mask(pixels.shape[:2], cfg.outfit_category, parsing=parsing, keypoints=body,
                            dilation=OUTFIT_DILATION, pose_checked=self.pose is not None).mask
        regenerate = np.where(keep > 0, 0, region).astype(np.uint8)
        if not regenerate.any():
            raise EmptyTryOnMask(f"The {cfg.outfit_category!r} region lies entirely inside the kept garment.",
                                 hint="Choose another outfit_category, or mark a smaller kept garment.")
        return _Scene(pixels, keep, regenerate, body)

    def _pose_scene(self, inputs: DigitalModelInputs) -> _Scene:
        if inputs.skeleton is None or inputs.pose_size is None:
            raise TryOnInputError("A pose swap needs the new pose: a gallery pose, a skeleton or a pose photo.",
                                  hint="Set pose_name to a gallery pose, send a skeleton (OpenPose JSON), or a photo.")
        width, height = (int(v) for v in inputs.pose_size)
        body = _checked_skeleton(inputs.skeleton)
        from easyphoto.pose.openpose import KEYPOINTS
        from easyphoto.pose.skeleton import require_joints

        require_joints(body, KEYPOINTS[:14])  # the body; eyes and ears may be hidden (a profile)
        canvas = np.full((height, width, 3), 127, np.uint8)
        return _Scene(canvas, None, np.full((height, width), 255, np.uint8), body)

    # ------------------------------------------------------------------------------------------ generation
    def _controls(self, work: np.ndarray, keep: np.ndarray | None, pose: np.ndarray | None, scale: float,
                  notes: list[str]) -> list[Control]:
        from easyphoto.pose import render_openpose

        cfg, kinds = self.config, []
        mode = cfg.control_mode
        if "openpose" in self.required_controls() and pose is not None:
            local = np.asarray(pose, np.float32).copy()
            local[:, :2] *= scale
            kinds.append(Control("openpose", render_openpose(work.shape[1::-1], [local]), cfg.openpose_weight, mode=mode))
        elif cfg.openpose_weight > 0 and cfg.mode != "scene":
            notes.append("openpose control skipped: no pose was found")
        if keep is not None and cfg.canny_weight > 0:
            near = dilate(keep, max(int(KEEP_CONTROL_GROW * min(work.shape[:2]) / 512), 1)) > 0
            edges = np.where(near[..., None], np.asarray(controls.canny(work)), 0).astype(np.uint8)
            kinds.append(Control("canny", Image.fromarray(edges), cfg.canny_weight, mode=mode))
            if self._depth_ok(notes):
                depth = np.where(near[..., None], np.asarray(self.depth(work).convert("RGB")), 0).astype(np.uint8)
                kinds.append(Control("depth", Image.fromarray(depth), cfg.depth_weight, mode=mode))
        return kinds

    def _depth_ok(self, notes: list[str]) -> bool:
        if self.config.depth_weight <= 0 or self.depth is None:
            return False
        caps = self.generator.capabilities()
        if "depth" not in caps.controls or len(self.required_controls()) + 1 > caps.max_controls:
            notes.append("depth control skipped: no depth ControlNet model or no ControlNet unit left for it")
            return False
        return True

    def _generate(self, scene: _Scene, prompt_pair, loras, seed, sent, notes, progress, should_stop) -> np.ndarray:
        if should_stop():
            raise GenerationInterrupted("Stopped before the digital model was generated.")
        cfg = self.config
        height, width = scene.pixels.shape[:2]
        size = working_size(width, height, cfg.short_side)
        scale = size[0] / width
        work = np.asarray(Image.fromarray(scene.pixels).resize(size, Image.LANCZOS))
        keep = np.asarray(Image.fromarray(scene.keep).resize(size, Image.NEAREST)) if scene.keep is not None else None
        kinds = self._controls(work, keep, scene.pose, scale, notes)
        sent += [c.kind for c in kinds]
        common = dict(prompt=prompt_pair[0], negative_prompt=prompt_pair[1], loras=loras, controls=kinds,
                      steps=cfg.steps, cfg_scale=cfg.cfg_scale, seed=seed, sampler=cfg.sampler,
                      scheduler=cfg.scheduler, label="digital model")
        if cfg.mode == "pose":
            images = self.generator.txt2img(Txt2ImgRequest(width=size[0], height=size[1], **common), progress,
                                            should_stop)
        else:
            mask = np.asarray(Image.fromarray(scene.regenerate).resize(size, Image.NEAREST))
            images = self.generator.inpaint(InpaintRequest(
                image=Image.fromarray(work, "RGB"), mask=Image.fromarray(mask, "L"),
                denoising_strength=cfg.denoising_strength, mask_blur=cfg.mask_blur, inpainting_fill="original",
                **common), progress, should_stop)
        if not images:
            raise GenerationInterrupted("The digital model's generation returned no image (stopped).")
        out = np.asarray(images[0].convert("RGB").resize((width, height), Image.LANCZOS))
        if cfg.mode == "pose":
            return out
        if scene.alpha is not None:  # the matte composites the person over the new scene
            return blend(scene.pixels, out, 1.0 - scene.alpha)
        return paste_back(scene.pixels, (0, 0, width, height), out, scene.regenerate, max(min(size) / 512, 0.5))

    # ------------------------------------------------------------------------------------------ scoring
    def _fidelity(self, pixels: np.ndarray, scene: _Scene, inputs: DigitalModelInputs,
                  notes: list[str]) -> GarmentFidelity | None:
        try:
            if scene.keep is not None:
                return garment_fidelity(pixels, scene.keep, scene.pixels, scene.keep)
            if self.parser is None:
                notes.append("no garment fidelity: no clothes parser to find the garment in the new pose")
                return None
            region = self.parser.parse(pixels).category_mask(self.config.category)
            return garment_fidelity(pixels, region, inputs.garment.reference, inputs.garment.reference_mask)
        except EmptyGarmentRegion as exc:
            notes.append(f"no garment fidelity: {exc.message}")
            return None


# ---------------------------------------------------------------------------------------------- regions


def body_region(shape: tuple[int, int], body: np.ndarray) -> np.ndarray:
    """uint8 0/255: the skeleton's visible limbs drawn LIMB_WIDTH × its height thick, and a head disc: where the
    regenerated body may go (a mannequin's parsing rarely finds arms or legs)."""
    import cv2

    from easyphoto.pose.openpose import LIMBS, NECK, NOSE

    points = np.asarray(body, np.float64)
    seen = points[points[:, 2] > 0, :2]
    region = np.zeros(shape, np.uint8)
    if len(seen) < 2:
        return region
    thickness = max(int(LIMB_WIDTH * float(np.ptp(seen[:, 1]) or np.ptp(seen[:, 0]))), 3)
    for a, b in LIMBS:
        if points[a, 2] > 0 and points[b, 2] > 0:
            cv2.line(region, _int(points[a]), _int(points[b]), 255, thickness)
    if points[NOSE, 2] > 0 and points[NECK, 2] > 0:
        head = float(np.hypot(*(points[NOSE, :2] - points[NECK, :2])))
        cv2.circle(region, _int(points[NOSE]), max(int(head * 0.9), thickness), 255, -1)
    return region


def _person(shape, parsing: Parsing | None, keep: np.ndarray | None, required: bool = True) -> np.ndarray:
    """The person's matte from the parsing: every label but the background, plus the kept garment."""
    if parsing is None:
        if required:
            raise TryOnInputError("A scene swap needs the clothes parsing to tell the person from the background.",
                                  hint="Install the clothes-parsing model (EasyPhoto → Models, group tryon).")
        return np.zeros(shape, np.uint8)
    person = ((parsing.labels != 0) * 255).astype(np.uint8)
    return np.maximum(person, keep) if keep is not None else person


def _not(mask: np.ndarray) -> np.ndarray:
    return np.where(mask > 0, 0, 255).astype(np.uint8)


def _place(array: np.ndarray, shape: tuple[int, int], left: int, top: int) -> np.ndarray:
    out = np.zeros(shape, array.dtype)
    out[top:top + array.shape[0], left:left + array.shape[1]] = array
    return out


def _int(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


def _checked_skeleton(skeleton: np.ndarray) -> np.ndarray:
    body = np.asarray(skeleton, np.float32)
    if body.shape != (18, 3) or not np.isfinite(body).all():
        raise TryOnInputError(f"A skeleton needs 18 COCO-18 joints as finite (x, y, visible), not shape {body.shape}.",
                              hint="Send the OpenPose JSON of the pose editor (pose_keypoints_2d: 54 numbers).")
    return body


def _rgb(photo: np.ndarray | None) -> np.ndarray:
    if photo is None:
        raise TryOnInputError("This mode needs a photo of the garment on a model or mannequin.")
    pixels = np.asarray(photo)
    if pixels.ndim != 3 or pixels.shape[2] < 3 or pixels.dtype != np.uint8:
        raise TryOnInputError(f"The photo must be an RGB uint8 image, not {pixels.dtype} {pixels.shape}.")
    return np.ascontiguousarray(pixels[..., :3])


def infotext(result: DigitalModelResult, config: DigitalModelConfig, loras: list[LoraRef]) -> str:
    """WebUI-style generation parameters plus the digital model's keys (PNG Info reads them)."""
    from easyphoto.tryon.pipeline import _quote

    width, height = result.image.size
    pairs = {
        "Steps": config.steps, "Sampler": config.sampler, "Schedule type": config.scheduler,
        "CFG scale": config.cfg_scale, "Seed": result.seed, "Size": f"{width}x{height}",
        "Denoising strength": config.denoising_strength, "EasyPhoto digital model": config.mode,
        "EasyPhoto controls": "+".join(result.controls) or "none",
        "EasyPhoto pose completed": ", ".join(result.completed) or "none",
        "EasyPhoto garment kept": result.fidelity.describe() if result.fidelity else "none",
        "Version": f"EasyPhoto {__version__}",
    }
    if result.face_mode:  # the face came from a training-free method: say which, and its face models' licence
        pairs["EasyPhoto identity mode"] = result.face_mode
        pairs["EasyPhoto face model licence"] = IDENTITY_LICENCES[result.face_mode]
    params = ", ".join(f"{key}: {_quote(value)}" for key, value in pairs.items())
    tags = "".join(f", <lora:{lora.name}:{lora.weight:g}>" for lora in loras)
    return f"{result.prompt}{tags}\nNegative prompt: {result.negative_prompt}\n{params}"
