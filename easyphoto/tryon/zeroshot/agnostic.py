"""The agnostic mask of a zero-shot try-on: where ANY garment of a category may go, not where the old one was.

    result = agnostic_mask(photo.shape[:2], "upper", parsing=parsing, keypoints=pose, dilation=12)
    result.mask          # uint8 0/255: the backend repaints here; every other pixel of the photo is kept exactly
    result.garment       # the silhouette before the protected regions were cut out
    result.protected     # {"face": 2210, "left hand": 640, "lower garment": 9800}
    result.notes         # e.g. "no pose: the silhouette is the parsing's labels only"

A mask that follows the body's current garment fails the moment the new one is another shape: a long sleeve on a
T-shirt photo, a dress on a person in trousers (the top complaint of users of these models). So the silhouette is
the union of three things, each of which may be missing:
- the parsing labels the category may cover: upper = upper clothes, scarf and both arms (a sleeve may cover an
  arm); lower = pants, skirt and both legs; dress = both, and the dress label;
- the body's region from the pose: upper = the torso quadrilateral (shoulders to hips, widened by TORSO_WIDEN of
  the shoulder width each side) and every visible upper arm and forearm as a capsule (LIMB_WIDTH × shoulder
  width); lower = a band from the hips to the knees and capsules along the thighs and shins; dress = both;
- the old garment of the category (the upper clothes for "upper", ...), so nothing of it survives at the edge.
It is grown by `dilation` px, then the protected regions are cut out: face, hair and sunglasses (parsing), the
hands (a disc past each wrist, easyphoto.tryon.masks.hand_discs), the shoes, and the garment of the other half
(the lower garment for an upper try-on and the upper one for a lower try-on), so a try-on never repaints what it
was not asked to. A mask drawn or clicked by the user replaces the silhouette (the editor's mask is the user's
decision); the protected regions are still cut out of it.
"""

from __future__ import annotations

import numpy as np

from easyphoto.imageops import dilate
from easyphoto.tryon.masks import (
    EmptyTryOnMask,
    NoPersonFound,
    TryOnInputError,
    TryOnMask,
    _binary,
    _protected_regions,
    cut_out,
    person_present,
)

# The backends' three categories, and which EasyPhoto garment categories map to each.
CATEGORIES = ("upper", "lower", "dress")
CATEGORY_OF = {"upper": "upper", "lower": "lower", "pants": "lower", "skirt": "lower", "dress": "dress"}
LABELS = {
    "upper": ("upper_clothes", "scarf", "left_arm", "right_arm"),
    "lower": ("pants", "skirt", "left_leg", "right_leg"),
    "dress": ("upper_clothes", "scarf", "left_arm", "right_arm", "pants", "skirt", "dress", "left_leg", "right_leg"),
}
KEPT_GARMENTS = {"upper": ("pants", "skirt", "left_shoe", "right_shoe"),
                 "lower": ("upper_clothes", "left_shoe", "right_shoe"),
                 "dress": ("left_shoe", "right_shoe")}
TORSO_WIDEN = 0.15  # of the shoulder width, each side: loose garments stand off the body
LIMB_WIDTH = 0.35  # capsule diameter along an arm, in shoulder widths (a sleeve is wider than the arm)
LEG_WIDTH = 0.45  # capsule diameter along a leg, in shoulder widths (trousers and skirts stand off the leg)

# COCO-18 indices (easyphoto.pose.openpose.KEYPOINTS)
R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = 2, 3, 4, 5, 6, 7
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 8, 9, 10, 11, 12, 13
ARMS = ((R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST))
LEGS = ((R_HIP, R_KNEE), (R_KNEE, R_ANKLE), (L_HIP, L_KNEE), (L_KNEE, L_ANKLE))


def backend_category(category: str) -> str:
    """The backend category (upper / lower / dress) of an EasyPhoto garment category."""
    if category not in CATEGORY_OF:
        raise TryOnInputError(f"Zero-shot try-on has no garment category {category!r}.",
                              hint=f"Use one of {', '.join(sorted(CATEGORY_OF))} (hats, bags, belts and scarves need "
                                   "a garment LoRA).")
    return CATEGORY_OF[category]


def agnostic_mask(shape: tuple[int, int], category: str, *, parsing=None, keypoints: np.ndarray | None = None,
                  given: np.ndarray | None = None, dilation: int = 12, protect_face: bool = True,
                  protect_hands: bool = True, pose_checked: bool = True) -> TryOnMask:
    """The agnostic mask of a photo of `shape` (H, W); see the module docstring."""
    kind = backend_category(category)
    notes: list[str] = []
    if not person_present(parsing, keypoints):
        if pose_checked or parsing is not None:
            raise NoPersonFound("No person was found in the photo: the pose estimator finds no body and the clothes "
                                "parsing no person pixels.",
                                hint="Use a photo of a person, facing the camera, that shows the body where the "
                                     "garment goes.")
        notes.append("no pose estimator and no parsing: whether the photo shows a person was not checked")
    if given is not None:
        silhouette = _binary(given, shape, "The given mask")
        if not silhouette.any():
            raise EmptyTryOnMask("The given try-on mask is empty: no pixel is marked.",
                                 hint="Mark where the garment goes in the mask editor, or use the automatic mask.")
    else:
        silhouette = garment_silhouette(shape, kind, parsing, keypoints, notes)
    grown = dilate(silhouette, dilation) if given is None else silhouette
    regions = _protected_regions(shape, parsing, keypoints, protect_face, protect_hands, notes)
    if parsing is not None:
        kept = parsing.mask(*KEPT_GARMENTS[kind])
        if kept.any():
            regions["other garments"] = kept
    mask, protected = cut_out(grown, regions)
    if not mask.any():
        raise EmptyTryOnMask(f"Nothing is left to repaint: the protected regions ({', '.join(protected)}) cover the "
                             "whole garment region.",
                             hint="Turn protect_face / protect_hands off, or draw the region in the mask editor.")
    return TryOnMask(mask, silhouette, protected, notes)


def garment_silhouette(shape: tuple[int, int], kind: str, parsing, keypoints, notes: list[str]) -> np.ndarray:
    """Parsing labels ∪ the pose's body region of the category (uint8 0/255); see the module docstring."""
    silhouette = np.zeros(shape, np.uint8)
    if parsing is not None:
        if parsing.labels.shape != tuple(shape):
            raise TryOnInputError(f"The parsing is {parsing.labels.shape[::-1]}, the photo {tuple(shape)[::-1]}.")
        silhouette |= parsing.mask(*LABELS[kind])
    else:
        notes.append("no clothes parsing: the silhouette comes from the pose alone")
    body = pose_region(shape, kind, keypoints) if keypoints is not None else None
    if body is None:
        notes.append("no usable pose (shoulders and hips): the silhouette is the parsing's labels only")
    else:
        silhouette |= body
    if not silhouette.any():
        raise EmptyTryOnMask(f"No region for a {kind} garment was found: neither the parsing nor the pose shows "
                             "that part of the body.",
                             hint="Use a photo that shows the body where the garment goes, or draw the region in the "
                                  "mask editor.")
    return silhouette


def pose_region(shape: tuple[int, int], kind: str, keypoints: np.ndarray) -> np.ndarray | None:
    """The body region of the category from COCO-18 key points, or None when the shoulders are not both seen."""
    import cv2

    points = np.asarray(keypoints, np.float64)
    seen = points[:, 2] > 0
    if not (seen[R_SHOULDER] and seen[L_SHOULDER]):
        return None
    unit = float(np.hypot(*(points[R_SHOULDER, :2] - points[L_SHOULDER, :2])))
    if unit < 2:
        return None
    region = np.zeros(shape, np.uint8)
    hips = [i for i in (R_HIP, L_HIP) if seen[i]]
    if kind in ("upper", "dress"):
        _torso(region, points, hips, unit)
        _capsules(region, points, seen, ARMS, LIMB_WIDTH * unit)
    if kind in ("lower", "dress") and hips:
        _capsules(region, points, seen, LEGS, LEG_WIDTH * unit)
        if len(hips) == 2:  # the band between the hips down to the knees: a skirt or the trousers' seat
            knees = [k for k in (R_KNEE, L_KNEE) if seen[k]]
            bottom = max((points[k, 1] for k in knees), default=points[hips, 1].max() + unit)
            left = points[hips, 0].min() - TORSO_WIDEN * unit
            right = points[hips, 0].max() + TORSO_WIDEN * unit
            top = points[hips, 1].min() - 0.1 * unit
            cv2.rectangle(region, (int(left), int(top)), (int(right), int(bottom)), 255, thickness=-1)
    return region if region.any() else None


def _torso(region: np.ndarray, points: np.ndarray, hips: list[int], unit: float) -> None:
    import cv2

    r_shoulder, l_shoulder = points[R_SHOULDER, :2], points[L_SHOULDER, :2]
    across = (l_shoulder - r_shoulder) / unit
    down = np.array([-across[1], across[0]])
    if np.dot(down, [0.0, 1.0]) < 0:
        down = -down
    if len(hips) == 2:
        r_hip, l_hip = points[R_HIP, :2], points[L_HIP, :2]
    else:  # no hips seen: a torso 1.5 shoulder widths long (a half-body photo cut above the hips)
        r_hip, l_hip = r_shoulder + down * 1.5 * unit, l_shoulder + down * 1.5 * unit
    widen = across * TORSO_WIDEN * unit
    corners = np.array([r_shoulder - widen - down * 0.1 * unit, l_shoulder + widen - down * 0.1 * unit,
                        l_hip + widen, r_hip - widen])
    cv2.fillConvexPoly(region, np.round(corners).astype(np.int32), 255)


def _capsules(region: np.ndarray, points: np.ndarray, seen: np.ndarray, bones, width: float) -> None:
    import cv2

    thickness = max(int(round(width)), 1)
    for start, end in bones:
        if seen[start] and seen[end]:
            a = tuple(int(round(v)) for v in points[start, :2])
            b = tuple(int(round(v)) for v in points[end, :2])
            cv2.line(region, a, b, 255, thickness=thickness)
            cv2.circle(region, a, thickness // 2, 255, thickness=-1)
            cv2.circle(region, b, thickness // 2, 255, thickness=-1)


__all__ = ["CATEGORIES", "CATEGORY_OF", "agnostic_mask", "backend_category", "garment_silhouette", "pose_region"]
