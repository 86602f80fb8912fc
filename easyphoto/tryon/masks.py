"""The try-on mask: which pixels of the person photo a garment may repaint, and what is kept out of it.

    result = tryon_mask(photo.shape[:2], "upper", parsing=parsing, keypoints=pose, dilation=8)
    result.mask                 # uint8 0/255: repaint here, nothing else changes
    result.protected            # {"face": 2210, "left hand": 640, ...}: pixels taken out of the grown mask
    result.notes                # what could not be done ("hands not protected: no pose found")

The garment region comes from a clothes parsing (the category's ATR labels) or from a given mask (SAM clicks, a
drawn mask). It is grown by `dilation` px so the new garment may be a little wider than the old one, then the
protected regions are subtracted: the parsing's PROTECTED_LABELS (face, hair, sunglasses) and the hands. ATR has
no hand label, so a hand is a disc beyond each visible wrist, along the forearm, sized from the forearm's length
(mediapipe pose through easyphoto.pose gives COCO-18 wrists and elbows). Every input error is raised here, before
any generation, with the reason: an empty mask, a category the photo does not show (the labels it does show are
named), no person at all. Pure numpy + cv2 (cv2 imported inside the functions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from easyphoto.errors import EasyPhotoError
from easyphoto.imageops import dilate
from easyphoto.segment.types import GARMENT_CATEGORIES, PROTECTED_LABELS, Parsing

# COCO-18 indices (easyphoto.pose.openpose.KEYPOINTS): shoulders, elbows, wrists.
R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = 2, 3, 4, 5, 6, 7
# A hand (wrist to fingertips) is about 0.75 × the forearm (elbow to wrist) on an adult. The disc is centred this far
# beyond the wrist (in forearm lengths) with this radius, so it covers the palm and the fingers of an open hand and
# the wrist itself; without a visible elbow the forearm is taken as this fraction of the shoulder width.
HAND_CENTRE = 0.3
HAND_RADIUS = 0.4
FOREARM_PER_SHOULDERS = 0.8
MIN_PERSON_FRACTION = 0.002  # parsing person pixels below this are noise, not a person


class TryOnInputError(EasyPhotoError):
    """A try-on input that cannot give a mask; raised before anything is generated."""

    phase = "tryon"
    http_status = 422


class EmptyTryOnMask(TryOnInputError):
    """The mask to repaint has no pixel (nothing drawn or clicked, or everything in it is protected)."""


class CategoryNotFound(TryOnInputError):
    """The clothes parsing finds none of the category's labels in the photo."""


class NoPersonFound(TryOnInputError):
    """Neither the pose estimator nor the clothes parsing sees a person in the photo."""


@dataclass
class TryOnMask:
    mask: np.ndarray  # uint8 0/255 (H, W): the region a try-on repaints
    garment: np.ndarray  # uint8 0/255: the garment region before it was grown and the protected regions cut out
    protected: dict[str, int] = field(default_factory=dict)  # region -> pixels taken out of the grown mask
    notes: list[str] = field(default_factory=list)  # what could not be done, in words


def person_present(parsing: Parsing | None, keypoints: np.ndarray | None) -> bool:
    if keypoints is not None and np.asarray(keypoints)[:, 2].any():
        return True
    if parsing is None:
        return False
    return float(np.mean(parsing.labels != 0)) >= MIN_PERSON_FRACTION


def garment_region(shape: tuple[int, int], category: str, parsing: Parsing | None, given: np.ndarray | None) -> np.ndarray:
    """The garment pixels: the given mask when there is one, else the category's labels in the parsing."""
    if given is not None:
        mask = _binary(given, shape, "The given mask")
        if not mask.any():
            raise EmptyTryOnMask("The given try-on mask is empty: no pixel is marked.",
                                 hint="Click on the garment (positive points) or draw over it, then try again.")
        return mask
    if parsing is None:
        raise TryOnInputError("A parsing-based try-on mask needs a clothes parsing of the photo, and none was made.",
                              hint="Install the clothes-parsing model (EasyPhoto → Models), or mark the garment with "
                                   "clicks or a drawn mask (mask_source points / mask).")
    if parsing.labels.shape != tuple(shape):
        raise TryOnInputError(f"The parsing is {parsing.labels.shape[::-1]}, the photo {tuple(shape)[::-1]}.")
    mask = parsing.category_mask(category)
    if not mask.any():
        found = [name for name in parsing.fractions() if name != "background"]
        raise CategoryNotFound(
            f"The photo shows no {category!r} garment (parsing labels {', '.join(GARMENT_CATEGORIES[category])}); "
            f"it shows: {', '.join(found) or 'nothing but background'}.",
            hint="Pick the category the person wears, or mark the garment region with clicks or a drawn mask.")
    return mask


def hand_discs(shape: tuple[int, int], keypoints: np.ndarray) -> dict[str, np.ndarray]:
    """One uint8 0/255 disc per visible wrist ("right hand" = the person's right), see the module docstring."""
    import cv2

    points = np.asarray(keypoints, np.float64)
    shoulders = points[[R_SHOULDER, L_SHOULDER]]
    shoulder_width = float(np.hypot(*(shoulders[0, :2] - shoulders[1, :2]))) if shoulders[:, 2].all() else 0.0
    discs = {}
    for side, elbow, wrist in (("right hand", R_ELBOW, R_WRIST), ("left hand", L_ELBOW, L_WRIST)):
        if points[wrist, 2] <= 0:
            continue
        forearm = points[wrist, :2] - points[elbow, :2] if points[elbow, 2] > 0 else np.zeros(2)
        length = float(np.hypot(*forearm)) or FOREARM_PER_SHOULDERS * shoulder_width
        if length <= 0:  # a lone wrist: nothing to size the hand by
            length = 0.08 * max(shape)
        direction = forearm / max(float(np.hypot(*forearm)), 1e-6)
        centre = points[wrist, :2] + direction * HAND_CENTRE * length
        disc = np.zeros(shape, np.uint8)
        cv2.circle(disc, (int(round(centre[0])), int(round(centre[1]))), max(int(round(HAND_RADIUS * length)), 1),
                   255, thickness=-1)
        discs[side] = disc
    return discs


def tryon_mask(shape: tuple[int, int], category: str, *, parsing: Parsing | None = None,
               given: np.ndarray | None = None, keypoints: np.ndarray | None = None, dilation: int = 0,
               protect_face: bool = True, protect_hands: bool = True, pose_checked: bool = True) -> TryOnMask:
    """The try-on mask of a photo of `shape` (H, W); see the module docstring. `pose_checked`: whether a pose
    estimator looked at the photo (False: none is installed, so `keypoints` None says nothing about a person)."""
    if category not in GARMENT_CATEGORIES:
        raise TryOnInputError(f"Unknown garment category {category!r}.", hint=f"Use one of {sorted(GARMENT_CATEGORIES)}.")
    notes: list[str] = []
    if not person_present(parsing, keypoints):  # first: "no person" explains an absent garment too
        if pose_checked or parsing is not None:
            raise NoPersonFound("No person was found in the photo: the pose estimator finds no body and the clothes "
                                "parsing no person pixels.",
                                hint="Use a photo of a person wearing the garment to replace, facing the camera.")
        notes.append("no pose estimator and no parsing: whether the photo shows a person was not checked")
    garment = garment_region(shape, category, parsing, given)
    grown = dilate(garment, dilation)
    regions = _protected_regions(shape, parsing, keypoints, protect_face, protect_hands, notes)
    mask, protected = cut_out(grown, regions)
    if not mask.any():
        raise EmptyTryOnMask(f"Nothing is left to repaint: the protected regions ({', '.join(protected)}) cover the "
                             "whole garment mask.",
                             hint="Turn protect_face / protect_hands off, or mark a larger garment region.")
    return TryOnMask(mask, garment, protected, notes)


def cut_out(mask: np.ndarray, regions: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """(the mask without the regions, {region: pixels it took out}); the input mask is not changed."""
    mask, protected = mask.copy(), {}
    for name, region in regions.items():
        protected[name] = int(np.count_nonzero((mask > 0) & (region > 0)))
        mask[region > 0] = 0
    return mask, protected


def _protected_regions(shape, parsing, keypoints, protect_face, protect_hands, notes) -> dict[str, np.ndarray]:
    regions: dict[str, np.ndarray] = {}
    if protect_face:
        if parsing is None:
            notes.append("face not protected: no clothes parsing of the photo (face, hair and sunglasses come from it)")
        else:
            for label in PROTECTED_LABELS:
                region = parsing.mask(label)
                if region.any():
                    regions[label] = region
    if protect_hands:
        visible = keypoints is not None and np.asarray(keypoints)[[R_WRIST, L_WRIST], 2].any()
        if not visible:
            why = "no pose was found" if keypoints is None else "no wrist is visible in the pose"
            notes.append(f"hands not protected: {why} (hands are found from the pose's wrists)")
        else:
            regions.update(hand_discs(shape, keypoints))
    return regions


def _binary(mask: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array.max(axis=2)
    if array.shape != tuple(shape):
        raise TryOnInputError(f"{what} is {array.shape[::-1]}, the photo {tuple(shape)[::-1]}.",
                              hint="Make the mask on the same photo, at its size.")
    threshold = 127 if array.dtype == np.uint8 and array.max() > 1 else 0  # 0/255 or 0/1 or bool
    return ((array > threshold) * 255).astype(np.uint8)


__all__ = ["CategoryNotFound", "EmptyTryOnMask", "NoPersonFound", "TryOnInputError", "TryOnMask", "cut_out",
           "garment_region", "hand_discs", "person_present", "tryon_mask"]
