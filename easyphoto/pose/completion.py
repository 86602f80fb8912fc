"""Pose completion for half-body, cut-off and mannequin shots: every missing COCO-18 joint placed from body
proportions relative to the visible ones, so openpose can steer a whole body.

The rule (our own constants, from common figure-drawing canons of an adult standing figure):

- **Unit** S = the shoulder width. Taken from, in this order: both shoulders; the eyes (S = eye distance / 0.16);
  the ears (S = ear distance / 0.36); the hips (S = hip width / 0.65); the neck and the hips' midpoint (S = torso /
  1.30). With none of them there is nothing to measure by: PoseError.
- **Axes**: "across" runs from the person's right shoulder to their left (else right eye → left eye, right ear →
  left ear, right hip → left hip); "down" runs from the neck to the hips' midpoint when both are visible, else it
  is "across" turned 90° towards the image's bottom, else straight down.
- **Lengths** in S: neck → nose 0.55 up; eyes 0.10 above the nose and 0.08 to each side; ears 0.05 above the nose
  and 0.18 to each side; upper arm 0.80; forearm 0.70; neck → hips' midpoint 1.30 down; hip width 0.65; thigh
  1.10; shin 1.05.
- **Directions**: a missing joint beyond a visible segment continues that segment's direction (a forearm goes on
  the way the upper arm points, a shin the way the thigh does); otherwise a limb hangs along "down", arms turned
  10° outward; the head stands on the neck along "up". A missing middle joint (elbow, knee) between two visible
  ends lies on their line at its segment's length from the body, bent outward when the ends are closer than the
  two segments are long.
- **Anchor**: the neck is the shoulders' midpoint (as easyphoto.pose.openpose maps mediapipe), else it is placed
  0.55 S below the nose along "down", else 1.30 S above the hips' midpoint. Missing shoulders lie 0.5 S to each
  side of the neck along "across"; a single missing shoulder mirrors the visible one through the neck.
- **Visible joints are never moved.**

The canvas padding (outpainting) makes every joint fit with a margin of 8 % of the completed body's height on each
side, and 0.35 S more above the top joint for the crown of the head (the eyes and ears are below it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from easyphoto.errors import EasyPhotoError
from easyphoto.pose.openpose import (
    KEYPOINTS,
    L_ANKLE,
    L_EAR,
    L_ELBOW,
    L_EYE,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    NOSE,
    R_ANKLE,
    R_EAR,
    R_ELBOW,
    R_EYE,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
)

EYES_PER_S, EARS_PER_S, HIPS_PER_S, TORSO_PER_S = 0.16, 0.36, 0.65, 1.30
NOSE_UP, EYE_UP, EYE_SIDE, EAR_UP, EAR_SIDE = 0.55, 0.10, 0.08, 0.05, 0.18
UPPER_ARM, FOREARM, THIGH, SHIN = 0.80, 0.70, 1.10, 1.05
ARM_OUTWARD_DEGREES = 10.0
MARGIN = 0.08  # of the completed body's height, on each side of the padded canvas
CROWN = 0.35  # S above the top joint: the head reaches higher than the eyes and ears
ARMS = ((R_SHOULDER, R_ELBOW, R_WRIST, -1), (L_SHOULDER, L_ELBOW, L_WRIST, 1))  # -1: the person's right side
LEGS = ((R_HIP, R_KNEE, R_ANKLE, -1), (L_HIP, L_KNEE, L_ANKLE, 1))


class PoseError(EasyPhotoError):
    """A pose that cannot be found, completed or read."""

    phase = "pose"
    http_status = 422


@dataclass(frozen=True)
class CompletedBody:
    body: np.ndarray  # (18, 3), every joint visible, in the original image's pixels (may lie outside it)
    completed: tuple[str, ...]  # the joints that were placed, by KEYPOINTS name
    padding: tuple[int, int, int, int]  # (left, top, right, bottom) px the canvas grows by so every joint fits
    size: tuple[int, int]  # the original image's (width, height)

    @property
    def extended_size(self) -> tuple[int, int]:
        left, top, right, bottom = self.padding
        return self.size[0] + left + right, self.size[1] + top + bottom

    def body_in_extended(self) -> np.ndarray:
        """The body in the extended canvas's pixels (shifted by the left and top padding)."""
        shifted = self.body.copy()
        shifted[:, 0] += self.padding[0]
        shifted[:, 1] += self.padding[1]
        return shifted


def complete_body(body: np.ndarray, size: tuple[int, int]) -> CompletedBody:
    """Every missing joint of `body` ((18, 3) x, y, visible) placed by the module's rule; `size` (width, height) of
    the image, for the padding. PoseError when nothing visible can anchor and measure the body."""
    points = np.asarray(body, np.float64).reshape(18, 3).copy()
    seen = points[:, 2] > 0
    points[~seen, :2] = np.nan
    unit = _unit(points, seen)
    across, down = _axes(points, seen)
    placed = _Placer(points, seen, unit, across, down)
    placed.torso()
    placed.head()
    for chain in ARMS:
        placed.limb(chain, UPPER_ARM, FOREARM, ARM_OUTWARD_DEGREES)
    for chain in LEGS:
        placed.limb(chain, THIGH, SHIN, 0.0)
    out = placed.points.astype(np.float32)
    out[:, 2] = 1.0
    completed = tuple(KEYPOINTS[i] for i in range(18) if not seen[i])
    return CompletedBody(out, completed, canvas_padding(out, size, unit), (int(size[0]), int(size[1])))


def canvas_padding(body: np.ndarray, size: tuple[int, int], unit: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) px so every joint lies inside with the module's margins."""
    xs, ys = body[:, 0], body[:, 1]
    margin = MARGIN * float(ys.max() - ys.min())
    width, height = size
    left = math.ceil(max(0.0, margin - xs.min()))
    top = math.ceil(max(0.0, margin + CROWN * unit - ys.min()))
    right = math.ceil(max(0.0, xs.max() + margin - width))
    bottom = math.ceil(max(0.0, ys.max() + margin - height))
    return left, top, right, bottom


def extend_canvas(image: Image.Image, padding: tuple[int, int, int, int],
                  fill: tuple[int, int, int] = (127, 127, 127)) -> tuple[Image.Image, Image.Image]:
    """(the image on a canvas grown by `padding`, filled with `fill`; the outpainting mask: "L", 255 on the new
    border, 0 over the original pixels)."""
    left, top, right, bottom = (int(p) for p in padding)
    width, height = image.size
    canvas = Image.new("RGB", (width + left + right, height + top + bottom), fill)
    canvas.paste(image.convert("RGB"), (left, top))
    mask = Image.new("L", canvas.size, 255)
    mask.paste(0, (left, top, left + width, top + height))
    return canvas, mask


def detect_and_complete(image: np.ndarray) -> CompletedBody:
    """mediapipe's body of an RGB image, completed; PoseError when no person is found."""
    from easyphoto.pose.openpose import body_keypoints_from_mediapipe

    found = body_keypoints_from_mediapipe(image)
    if found is None:
        raise PoseError("No person was found in the photo.", hint="Use a photo where the head or the shoulders are "
                                                                 "visible, or give a skeleton.")
    height, width = np.asarray(image).shape[:2]
    return complete_body(found, (width, height))


# ---------------------------------------------------------------------------------------------- measuring


def _distance(points: np.ndarray, a: int, b: int) -> float:
    return float(np.hypot(*(points[a, :2] - points[b, :2])))


def _unit(points: np.ndarray, seen: np.ndarray) -> float:
    """The shoulder width S, from the first measurable pair of the rule's fallback order."""
    for a, b, per_s in ((R_SHOULDER, L_SHOULDER, 1.0), (R_EYE, L_EYE, EYES_PER_S), (R_EAR, L_EAR, EARS_PER_S),
                        (R_HIP, L_HIP, HIPS_PER_S)):
        if seen[a] and seen[b] and _distance(points, a, b) > 1e-3:
            return _distance(points, a, b) / per_s
    if seen[NECK] and seen[R_HIP] and seen[L_HIP]:
        torso = float(np.hypot(*(points[NECK, :2] - (points[R_HIP, :2] + points[L_HIP, :2]) / 2)))
        if torso > 1e-3:
            return torso / TORSO_PER_S
    raise PoseError("The pose has nothing to measure the body by: no pair of shoulders, eyes, ears or hips, and no "
                    "neck with both hips.", hint="Use a photo where the head or the shoulders are visible, or give a "
                                                 "skeleton with at least the shoulders.")


def _axes(points: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(across: person's right → left, down) unit vectors in image pixels."""
    across = None
    for right, left in ((R_SHOULDER, L_SHOULDER), (R_EYE, L_EYE), (R_EAR, L_EAR), (R_HIP, L_HIP)):
        if seen[right] and seen[left] and _distance(points, right, left) > 1e-3:
            vector = points[left, :2] - points[right, :2]
            across = vector / np.hypot(*vector)
            break
    if seen[NECK] and seen[R_HIP] and seen[L_HIP]:
        vector = (points[R_HIP, :2] + points[L_HIP, :2]) / 2 - points[NECK, :2]
        if np.hypot(*vector) > 1e-3:
            down = vector / np.hypot(*vector)
            return (across if across is not None else np.array([-down[1], down[0]])), down
    if across is None:
        return np.array([1.0, 0.0]), np.array([0.0, 1.0])
    down = np.array([-across[1], across[0]])  # across turned 90°: towards the image's bottom for an upright person
    if down[1] < 0:
        down = -down
    return across, down


class _Placer:
    """Places the missing joints in order: torso (neck, shoulders, hips), head, limbs."""

    def __init__(self, points, seen, unit, across, down):
        self.points, self.seen, self.unit, self.across, self.down = points, seen.copy(), unit, across, down

    def _has(self, joint: int) -> bool:
        return bool(np.isfinite(self.points[joint, :2]).all())

    def _set(self, joint: int, xy) -> None:
        if not self.seen[joint] and not self._has(joint):
            self.points[joint, :2] = xy

    def torso(self) -> None:
        s, down, across = self.unit, self.down, self.across
        if not self._has(NECK):
            if self._has(R_SHOULDER) and self._has(L_SHOULDER):
                self._set(NECK, (self.points[R_SHOULDER, :2] + self.points[L_SHOULDER, :2]) / 2)
            elif self._has(NOSE):
                self._set(NECK, self.points[NOSE, :2] + down * NOSE_UP * s)
            elif self._has(R_HIP) and self._has(L_HIP):
                self._set(NECK, (self.points[R_HIP, :2] + self.points[L_HIP, :2]) / 2 - down * TORSO_PER_S * s)
            else:
                self._neck_from_one_shoulder()
        neck = self.points[NECK, :2]
        for joint, side in ((R_SHOULDER, -1), (L_SHOULDER, 1)):
            other = L_SHOULDER if joint == R_SHOULDER else R_SHOULDER
            mirrored = 2 * neck - self.points[other, :2] if self._has(other) else neck + side * across * s / 2
            self._set(joint, mirrored)
        middle = neck + down * TORSO_PER_S * s
        for joint, side in ((R_HIP, -1), (L_HIP, 1)):
            other = L_HIP if joint == R_HIP else R_HIP
            mirrored = 2 * middle - self.points[other, :2] if self._has(other) else middle + side * across * HIPS_PER_S * s / 2
            self._set(joint, mirrored)

    def _neck_from_one_shoulder(self) -> None:
        for joint, side in ((R_SHOULDER, -1), (L_SHOULDER, 1)):
            if self._has(joint):
                self._set(NECK, self.points[joint, :2] - side * self.across * self.unit / 2)
                return
        raise PoseError("The pose has no neck, shoulder, nose or hips to place the body from.",
                        hint="Give a skeleton with at least the shoulders or the face.")

    def head(self) -> None:
        s, up, across = self.unit, -self.down, self.across
        self._set(NOSE, self.points[NECK, :2] + up * NOSE_UP * s)
        nose = self.points[NOSE, :2]
        for joint, side, rise, width in ((R_EYE, -1, EYE_UP, EYE_SIDE), (L_EYE, 1, EYE_UP, EYE_SIDE),
                                         (R_EAR, -1, EAR_UP, EAR_SIDE), (L_EAR, 1, EAR_UP, EAR_SIDE)):
            self._set(joint, nose + up * rise * s + side * across * width * s)

    def limb(self, chain, first: float, second: float, outward: float) -> None:
        root, middle, end, side = chain
        s = self.unit
        hang = self.down + side * math.tan(math.radians(outward)) * self.across  # outward: away from the middle
        hang = hang / np.hypot(*hang)
        if not self._has(middle):
            if self._has(end):
                self._set(middle, self._between(root, end, first * s, second * s, side))
            else:
                self._set(middle, self.points[root, :2] + hang * first * s)
        if not self._has(end):
            segment = self.points[middle, :2] - self.points[root, :2]
            length = float(np.hypot(*segment))
            direction = segment / length if length > 1e-6 else hang
            self._set(end, self.points[middle, :2] + direction * second * s)

    def _between(self, root: int, end: int, first: float, second: float, side: int) -> np.ndarray:
        """The middle joint of a limb whose two ends are known: on their line, bent outward when they are closer
        than the two segments are long (the triangle's apex)."""
        start, stop = self.points[root, :2], self.points[end, :2]
        span = float(np.hypot(*(stop - start)))
        if span < 1e-6:
            return start + self.down * first
        along = (stop - start) / span
        if span >= first + second:
            return start + along * first * span / (first + second)
        reach = (first**2 - second**2 + span**2) / (2 * span)
        rise = math.sqrt(max(first**2 - reach**2, 0.0))
        normal = np.array([-along[1], along[0]])
        if float(np.dot(normal, self.across)) * side < 0:  # bend away from the body's middle
            normal = -normal
        return start + along * reach + normal * rise
