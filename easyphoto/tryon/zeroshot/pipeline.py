"""A zero-shot try-on of one person photo, written once over the backend interface (base.ZeroShotBackend).

    pipeline = AnyGarmentPipeline(backend, AnyGarmentConfig(backend="leffa", category="upper"), parser=parser)
    result = pipeline.render(photo, GarmentImage(pixels, mask), seed=42)
    result.image, result.fidelity.describe(), result.infotext, result.licence

Per photo: clothes parsing and pose → the agnostic mask of the category (agnostic.py; or the user's mask from clicks
or the editor) → a 3:4 frame around the person and the mask at the backend's trained size (framing.py) → the
garment on white at that size → the backend → the frame's mask region pasted back into the photo (everything
outside the mask is the photo's own, exactly) → the garment fidelity of the result against the garment photo → an
infotext with the backend, its licence and the seed. Every input error is raised before the backend runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from easyphoto import __version__
from easyphoto.config import AnyGarmentConfig
from easyphoto.generation import Progress, ShouldStop, never_stop, no_progress
from easyphoto.imageops import to_array
from easyphoto.portrait.pipeline import resolve_seed
from easyphoto.segment.types import Parsing
from easyphoto.tryon.fidelity import EmptyGarmentRegion, GarmentFidelity, garment_fidelity
from easyphoto.tryon.masks import TryOnInputError, TryOnMask
from easyphoto.tryon.pipeline import _MEDIAPIPE, _default_pose, _quote, _rgb, _scaled
from easyphoto.tryon.zeroshot.agnostic import agnostic_mask, backend_category
from easyphoto.tryon.zeroshot.base import TryOnInputs
from easyphoto.tryon.zeroshot.framing import Frame, fit_frame, paste_into
from easyphoto.tryon.zeroshot.registry import licence_record

WHITE = 255
PERSON_LABELS_EXCLUDED = (0, 16)  # background, bag: not part of the person's frame


@dataclass
class GarmentImage:
    """The garment to put on: a photo (RGB uint8) and, when known, its mask (uint8 0/255; None = the pixels that
    are not near-white, for a product shot on white)."""

    pixels: np.ndarray
    mask: np.ndarray | None = None

    def cut_out(self) -> tuple[np.ndarray, np.ndarray]:
        pixels = _rgb(self.pixels)
        mask = self.mask
        if mask is None:
            mask = ((pixels < 245).any(axis=2) * 255).astype(np.uint8)
        if mask.shape != pixels.shape[:2]:
            raise TryOnInputError(f"The garment mask is {mask.shape[::-1]}, the garment photo "
                                  f"{pixels.shape[:2][::-1]}.", hint="Use the mask made for this garment photo.")
        if np.count_nonzero(mask) < 16:
            raise TryOnInputError("The garment photo shows no garment: its mask is empty (or the photo is all white).",
                                  hint="Use a photo of the garment, or mark it with clicks in the Garments section.")
        return np.where(mask[..., None] > 0, pixels, WHITE).astype(np.uint8), mask


@dataclass
class AnyGarmentResult:
    image: Image.Image
    mask: np.ndarray  # uint8 0/255: the repainted pixels
    seed: int
    frame: tuple[int, int, int, int]
    size: tuple[int, int]  # the backend's working size (w, h)
    fidelity: GarmentFidelity | None
    licence: dict
    steps: int
    guidance: float
    protected: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    infotext: str = ""


class AnyGarmentPipeline:
    def __init__(self, backend, config: AnyGarmentConfig, *, parser=None, pose=_MEDIAPIPE):
        self.backend = backend
        self.config = config
        self.parser = parser
        self.pose = _default_pose() if pose is _MEDIAPIPE else pose
        self.category = backend_category(config.category)

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.backend.size
        if self.config.work_size:
            height = self.config.work_size
            width = int(round(height * self.backend.size[0] / self.backend.size[1] / 8)) * 8
        return width, height

    def prepare(self, pixels: np.ndarray, given: np.ndarray | None = None,
                parsing: Parsing | None = None) -> tuple[TryOnMask, np.ndarray | None, Parsing | None]:
        """(the mask, the pose, the parsing) of one photo; raises TryOnInputError subclasses, nothing is generated."""
        cfg = self.config
        if cfg.mask_source != "parsing" and given is None:
            raise TryOnInputError(f"mask_source is {cfg.mask_source!r} but no mask was given.",
                                  hint="Click on the person's garment region, draw it, or use mask_source 'parsing'.")
        if parsing is None and self.parser is not None:
            parsing = self.parser.parse(pixels)
        keypoints = self.pose(pixels) if self.pose is not None else None
        mask = agnostic_mask(pixels.shape[:2], cfg.category, parsing=parsing, keypoints=keypoints,
                             given=given if cfg.mask_source != "parsing" else None, dilation=cfg.mask_dilation,
                             protect_face=cfg.protect_face, protect_hands=cfg.protect_hands,
                             pose_checked=self.pose is not None)
        return mask, keypoints, parsing

    def render(self, person_image: Image.Image | np.ndarray, garment: GarmentImage, *, given: np.ndarray | None = None,
               prepared: tuple | None = None, seed: int | None = None, progress: Progress = no_progress,
               should_stop: ShouldStop = never_stop) -> AnyGarmentResult:
        """One try-on image; `seed` None = the config's (-1 = random); `prepared`: prepare()'s result for this
        photo, when the caller already has it (the parser may be unloaded by then)."""
        seed = resolve_seed(self.config.seed if seed is None else seed)
        pixels = to_array(person_image) if isinstance(person_image, Image.Image) else _rgb(person_image)
        garment_pixels, garment_mask = garment.cut_out()
        mask, keypoints, parsing = prepared or self.prepare(pixels, given)
        frame = fit_frame(pixels.shape[:2], self._frame_region(mask.mask, parsing), self.size, self.config.frame_margin)
        inputs = self._inputs(pixels, mask.mask, garment_pixels, frame, keypoints, parsing)
        info = self.backend.info
        steps = self.config.steps or info.steps
        guidance = info.guidance if self.config.guidance is None else self.config.guidance
        generated = self.backend.run(inputs, steps=steps, guidance=guidance, seed=seed,
                                     progress=_scaled(progress, 0.0, 0.95), should_stop=should_stop)
        feather = self.config.feather * frame_scale(frame)
        image = paste_into(pixels, frame, generated, mask.mask, max(feather, 0.5))
        progress(0.97, "scoring garment fidelity")
        notes = list(mask.notes)
        fidelity = _fidelity(image, mask.mask, garment_pixels, garment_mask, notes)
        result = AnyGarmentResult(Image.fromarray(image, "RGB"), mask.mask, seed, frame.box, frame.size, fidelity,
                                  licence_record(info, getattr(self.backend, "variant", "")), steps, guidance,
                                  mask.protected, notes)
        result.infotext = infotext(result, self.config)
        progress(1.0, "done")
        return result

    def render_batch(self, person_image, garment: GarmentImage, *, given: np.ndarray | None = None,
                     prepared: tuple | None = None, seed: int | None = None, progress: Progress = no_progress,
                     should_stop: ShouldStop = never_stop) -> list[AnyGarmentResult]:
        """`batch_size` images with seeds seed, seed + 1, ...; the photo is parsed once."""
        first = resolve_seed(self.config.seed if seed is None else seed)
        count = self.config.batch_size
        pixels = to_array(person_image) if isinstance(person_image, Image.Image) else _rgb(person_image)
        prepared = prepared or self.prepare(pixels, given)
        return [self.render(pixels, garment, prepared=prepared, seed=(first + i) % (2**32 - 1),
                            progress=_scaled(progress, i / count, (i + 1) / count), should_stop=should_stop)
                for i in range(count)]

    def _frame_region(self, mask: np.ndarray, parsing: Parsing | None) -> np.ndarray:
        """What the frame must contain: the mask and the whole person (backends were trained on framed people)."""
        region = mask > 0
        if parsing is not None:
            region = region | ~np.isin(parsing.labels, PERSON_LABELS_EXCLUDED)
        return region.astype(np.uint8) * 255

    def _inputs(self, pixels, mask, garment_pixels, frame: Frame, keypoints, parsing) -> TryOnInputs:
        width, height = frame.size
        scale = frame_scale(frame)
        points = None
        if keypoints is not None:
            points = np.asarray(keypoints, np.float64).copy()
            points[:, 0] = (points[:, 0] - frame.box[0]) / scale
            points[:, 1] = (points[:, 1] - frame.box[1]) / scale
        labels = None
        if parsing is not None:
            padded = frame._padded(parsing.labels, mode="constant")
            labels = np.asarray(Image.fromarray(padded).resize((width, height), Image.NEAREST))
        return TryOnInputs(frame.cut(pixels), fit_on_white(garment_pixels, (width, height)), frame.cut_mask(mask),
                           self.category, points, labels)


def frame_scale(frame: Frame) -> float:
    """Photo pixels per backend pixel."""
    return (frame.box[2] - frame.box[0]) / frame.size[0]


def fit_on_white(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The garment scaled to fit inside `size` (aspect kept), centred on white: the backends' garment input."""
    width, height = size
    h, w = pixels.shape[:2]
    scale = min(width / w, height / h)
    new = (max(int(w * scale), 1), max(int(h * scale), 1))
    canvas = Image.new("RGB", size, (WHITE, WHITE, WHITE))
    canvas.paste(Image.fromarray(pixels).resize(new, Image.LANCZOS), ((width - new[0]) // 2, (height - new[1]) // 2))
    return np.asarray(canvas)


def _fidelity(image, mask, garment, garment_mask, notes) -> GarmentFidelity | None:
    try:
        return garment_fidelity(image, mask, garment, garment_mask)
    except EmptyGarmentRegion as exc:
        notes.append(f"no fidelity score: {exc.message}")
        return None


def infotext(result: AnyGarmentResult, config: AnyGarmentConfig) -> str:
    """WebUI-style parameters line: what made the image, the backend and its licence (stored in every PNG)."""
    width, height = result.image.size
    licence = result.licence
    pairs = {
        "Steps": result.steps, "CFG scale": result.guidance, "Seed": result.seed, "Size": f"{width}x{height}",
        "EasyPhoto try-on backend": f"{licence['backend']} {licence['variant']}".strip(),
        "EasyPhoto backend licence": licence["licence"],
        "EasyPhoto commercial use": "allowed" if licence["commercial_use"] else "not allowed",
        "EasyPhoto category": config.category, "EasyPhoto working size": "x".join(map(str, result.size)),
        "EasyPhoto fidelity": result.fidelity.describe() if result.fidelity else "none",
        "Version": f"EasyPhoto {__version__}",
    }
    return f"zero-shot try-on ({config.category} garment)\n" + ", ".join(f"{k}: {_quote(v)}" for k, v in pairs.items())


__all__ = ["AnyGarmentPipeline", "AnyGarmentResult", "GarmentImage", "fit_on_white", "infotext"]
