"""Pose completion for half-body, cut-off and mannequin shots: every missing COCO-18 joint placed from body
proportions relative to the visible ones, so openpose can steer a whole body.

The rule (our own constants, from common figure-drawing canons of an adult standing figure):

- **Unit** S = the shoulder width. Measured from the first of these that is visible: both shoulders; both eyes
  (S = eye distance / 0.16); both ears (S = ear distance / 0.36); both hips (S = hip width / 0.65); the neck and
  both hips (S = neck → hips' midpoint / 1.30); the neck and one shoulder (S = 2 × their distance); the neck and one
  hip (S = their distance / √(1.30² + 0.325²)). With none of them there is nothing to measure by: PoseError.
- **Axes**: "across" runs from the person's right to their left: right → left shoulder, else eye, ear, hip; else
  from the neck outward to a lone shoulder. "down" runs from the neck to the hips' midpoint when those are visible;
  else it is "across" turned 90° towards the image's bottom (the person is taken to stand upright, facing either
  way); else the direction that puts a lone hip 1.30 S below and 0.325 S beside the neck; else straight down.
- **Lengths** in S: neck → nose 0.55 up; eyes 0.10 above the nose and 0.08 to each side; ears 0.05 above the nose
  and 0.18 to each side; upper arm 0.80; forearm 0.70; neck → hips' midpoint 1.30 down; hip width 0.65; thigh
  1.10; shin 1.05.
- **Anchor**: the neck is the shoulders' midpoint (as easyphoto.pose.openpose maps mediapipe), else 0.55 S below the
  nose (a missing nose first comes from the eyes, 0.10 S below their midpoint, or the ears, 0.05 S below theirs),
  else 1.30 S above the hips' midpoint, else 0.5 S inward from a lone shoulder, else up from a lone hip. Missing
  shoulders lie 0.5 S to each side of the neck along "across"; a single missing shoulder (or hip) mirrors the
  visible one through the neck (the hips' midpoint).
- **Limbs**: an arm (leg) with nothing seen beyond its root, whose partner has its elbow or wrist (knee or ankle)
  seen, mirrors the partner through the body's axis (the line along "down"), so a mannequin with one arm keeps a
  symmetric pose. Otherwise a missing joint beyond a visible segment continues that segment's direction (a forearm
  goes on the way the upper arm points, a shin the way the thigh does), and a limb with nothing seen hangs along
  "down", arms turned 10° outward. A missing middle joint (elbow, knee) between two seen ends lies on their line at
  its segment's share of the span, or bent outward when the ends are closer than the two segments are long.
- **The head** stands on the neck along "up" (= −down), eyes and ears spread along "across".
- **Visible joints are never moved**: their coordinates come back bit for bit.

The canvas padding (outpainting) makes every joint fit with a margin of 8 % of the completed body's height (its
joints' vertical extent) on each side, and 0.35 S more above the top joint for the crown of the head (the eyes and
ears are below it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from easyphoto.errors import BackendUnavailable, EasyPhotoError
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
HIP_DIAGONAL = math.hypot(TORSO_PER_S, HIPS_PER_S / 2)  # neck → one hip, in S
ARM_OUTWARD_DEGREES = 10.0
MARGIN = 0.08  # of the completed body's height, on each side of the padded canvas
CROWN = 0.35  # S above the top joint: the head reaches higher than the eyes and ears
# (root, middle, end, side) per limb; side -1 is the person's right (towards -across), +1 their left.
ARMS = ((R_SHOULDER, R_ELBOW, R_WRIST, -1), (L_SHOULDER, L_ELBOW, L_WRIST, 1))
LEGS = ((R_HIP, R_KNEE, R_ANKLE, -1), (L_HIP, L_KNEE, L_ANKLE, 1))
# Right/left pairs that measure S (the rule's fallback order) and give "across": (right, left, pair width in S).
PAIRS = ((R_SHOULDER, L_SHOULDER, 1.0), (R_EYE, L_EYE, EYES_PER_S), (R_EAR, L_EAR, EARS_PER_S),
         (R_HIP, L_HIP, HIPS_PER_S))
EPSILON = 1e-3  # px: two joints closer than this measure nothing
NO_PERSON_HINT = "Use a photo where the head or the shoulders are visible, or give a skeleton."


class PoseError(EasyPhotoError):
    """A pose that cannot be found, completed or read."""

    phase = "pose"
    http_status = 422


@dataclass(frozen=True)
class CompletedBody:
    body: np.ndarray  # (18, 3) float32, every joint visible, in the original image's pixels (may lie outside it)
    completed: tuple[str, ...]  # the joints that were placed, by KEYPOINTS name, in KEYPOINTS order
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
    """Every missing joint of `body` ((18, 3) x, y, visible; a visible joint with a NaN/inf coordinate counts as
    missing) placed by the module's rule; `size` (width, height) of the image, for the padding. PoseError when
    nothing visible can anchor and measure the body."""
    points, seen = _visible(body)
    width, height = _image_size(size)
    unit = _unit(points, seen)
    across, down = _axes(points, seen)
    placer = _Placer(points, seen, unit, across, down)
    placer.torso()
    placer.head()
    placer.limbs()
    out = placer.points.astype(np.float32)
    out[:, 2] = 1.0
    completed = tuple(KEYPOINTS[i] for i in range(18) if not seen[i])
    return CompletedBody(out, completed, canvas_padding(out, (width, height), unit), (width, height))


def canvas_padding(body: np.ndarray, size: tuple[int, int], unit: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) px so every joint lies inside with the module's margins (MARGIN, CROWN)."""
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
    """(the image, RGB, on a canvas grown by `padding` (left, top, right, bottom) and filled with `fill`; the
    outpainting mask, "L": 255 on the new border, 0 over the original pixels)."""
    left, top, right, bottom = (int(p) for p in padding)
    if min(left, top, right, bottom) < 0:
        raise ValueError(f"canvas padding must be >= 0 on every side, got {tuple(padding)}")
    width, height = image.size
    canvas = Image.new("RGB", (width + left + right, height + top + bottom), tuple(fill))
    canvas.paste(image.convert("RGB"), (left, top))
    mask = Image.new("L", canvas.size, 255)
    mask.paste(0, (left, top, left + width, top + height))
    return canvas, mask


def detect_and_complete(image: np.ndarray | Image.Image) -> CompletedBody:
    """mediapipe's body of a photo (HxWx3 RGB array or PIL image), completed. PoseError when no person is found;
    BackendUnavailable when mediapipe is not installed."""
    from easyphoto.pose import openpose

    pixels = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if not openpose.available():
        raise BackendUnavailable("Finding the pose in a photo needs mediapipe, which is not installed.",
                                 hint="Install mediapipe==0.10.21 (requirements/face.txt), or give a skeleton.")
    found = openpose.body_keypoints_from_mediapipe(pixels)
    if found is None:
        raise PoseError("No person was found in the photo.", hint=NO_PERSON_HINT)
    height, width = pixels.shape[:2]
    return complete_body(found, (width, height))


# ---------------------------------------------------------------------------------------------- measuring


def _visible(body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 copy with missing joints as NaN, which joints are seen)."""
    points = np.array(body, np.float64)
    if points.shape != (18, 3):
        raise PoseError(f"A body is 18 key points of (x, y, visible), not an array of shape {points.shape}.",
                        hint="Joints in the order " + ", ".join(KEYPOINTS) + ".")
    seen = (points[:, 2] > 0) & np.isfinite(points[:, :2]).all(axis=1)
    points[~seen, :2] = np.nan
    return points, seen


def _image_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise PoseError(f"The image size must be positive, got {tuple(size)}.")
    return width, height


def _distance(points: np.ndarray, a: int, b: int) -> float:
    return float(np.hypot(*(points[a, :2] - points[b, :2])))


def _normalised(vector: np.ndarray) -> np.ndarray:
    return vector / np.hypot(*vector)


def _hips_middle(points: np.ndarray, seen: np.ndarray) -> np.ndarray | None:
    return (points[R_HIP, :2] + points[L_HIP, :2]) / 2 if seen[R_HIP] and seen[L_HIP] else None


def _unit(points: np.ndarray, seen: np.ndarray) -> float:
    """The shoulder width S, from the first measurable span of the rule's fallback order."""
    for right, left, per_s in PAIRS:
        if seen[right] and seen[left] and _distance(points, right, left) > EPSILON:
            return _distance(points, right, left) / per_s
    for length, per_s in _neck_spans(points, seen):
        if length > EPSILON:
            return length / per_s
    raise PoseError("No person found: the pose has nothing to measure the body by (no pair of shoulders, eyes, ears "
                    "or hips, and no neck with a shoulder or a hip).", hint=NO_PERSON_HINT)


def _neck_spans(points: np.ndarray, seen: np.ndarray) -> list[tuple[float, float]]:
    """(length px, the same length in S) of the neck's spans to the hips' midpoint, a shoulder, a hip."""
    if not seen[NECK]:
        return []
    spans = []
    hips = _hips_middle(points, seen)
    if hips is not None:
        spans.append((float(np.hypot(*(hips - points[NECK, :2]))), TORSO_PER_S))
    spans += [(_distance(points, NECK, joint), 0.5) for joint in (R_SHOULDER, L_SHOULDER) if seen[joint]]
    spans += [(_distance(points, NECK, joint), HIP_DIAGONAL) for joint in (R_HIP, L_HIP) if seen[joint]]
    return spans


def _axes(points: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(across: the person's right → left, down) unit vectors in image pixels."""
    across = _across(points, seen)
    down = _down(points, seen, across)
    if across is None:
        across = np.array([down[1], -down[0]])  # down turned back by 90°: a frontal person's right → left
    return across, down


def _across(points: np.ndarray, seen: np.ndarray) -> np.ndarray | None:
    for right, left, _ in PAIRS:
        if seen[right] and seen[left] and _distance(points, right, left) > EPSILON:
            return _normalised(points[left, :2] - points[right, :2])
    for shoulder, side in ((R_SHOULDER, -1), (L_SHOULDER, 1)):
        if seen[NECK] and seen[shoulder] and _distance(points, NECK, shoulder) > EPSILON:
            return side * _normalised(points[shoulder, :2] - points[NECK, :2])
    return None


def _down(points: np.ndarray, seen: np.ndarray, across: np.ndarray | None) -> np.ndarray:
    hips = _hips_middle(points, seen)
    if seen[NECK] and hips is not None and np.hypot(*(hips - points[NECK, :2])) > EPSILON:
        return _normalised(hips - points[NECK, :2])
    if across is not None:
        down = np.array([-across[1], across[0]])  # across turned 90°; a person seen from behind needs the flip
        return down if down[1] >= 0 else -down
    for hip, side in ((R_HIP, -1), (L_HIP, 1)):
        if seen[NECK] and seen[hip] and _distance(points, NECK, hip) > EPSILON:
            return _down_to_hip(points[hip, :2] - points[NECK, :2], side)
    return np.array([0.0, 1.0])


def _down_to_hip(offset: np.ndarray, side: int) -> np.ndarray:
    """The "down" that puts `offset` (neck → one hip) TORSO_PER_S along it and HIPS_PER_S / 2 to `side` along
    across (= down turned back by 90°, a frontal person): the 2×2 rotation solved for down."""
    along, aside = TORSO_PER_S, side * HIPS_PER_S / 2
    x, y = offset
    return _normalised(np.array([along * x - aside * y, aside * x + along * y]))


class _Placer:
    """Places the missing joints in order: torso (neck, shoulders, hips), head, limbs. Only ever writes joints that
    were not seen, each once."""

    def __init__(self, points, seen, unit, across, down):
        self.points, self.seen, self.unit, self.across, self.down = points, seen, unit, across, down

    def _has(self, joint: int) -> bool:
        return bool(np.isfinite(self.points[joint, :2]).all())

    def _at(self, joint: int) -> np.ndarray:
        return self.points[joint, :2]

    def _set(self, joint: int, xy) -> None:
        if not self.seen[joint] and not self._has(joint):
            self.points[joint, :2] = xy

    def torso(self) -> None:
        s = self.unit
        self._nose_from_face()
        self._set(NECK, self._neck())
        self._pair(R_SHOULDER, L_SHOULDER, self._at(NECK), s / 2)
        self._pair(R_HIP, L_HIP, self._at(NECK) + self.down * TORSO_PER_S * s, HIPS_PER_S * s / 2)

    def _pair(self, right: int, left: int, centre: np.ndarray, half: float) -> None:
        """A missing joint of a right/left pair: the seen partner mirrored through `centre`, else `half` px to its
        side of it along across."""
        for joint, partner, side in ((right, left, -1), (left, right, 1)):
            if self._has(partner):
                self._set(joint, 2 * centre - self._at(partner))
            else:
                self._set(joint, centre + side * self.across * half)

    def _nose_from_face(self) -> None:
        for right, left, rise in ((R_EYE, L_EYE, EYE_UP), (R_EAR, L_EAR, EAR_UP)):
            if self._has(right) and self._has(left):
                self._set(NOSE, (self._at(right) + self._at(left)) / 2 + self.down * rise * self.unit)
                return

    def _neck(self) -> np.ndarray:
        s, down, across = self.unit, self.down, self.across
        if self._has(NECK):
            return self._at(NECK)
        if self._has(R_SHOULDER) and self._has(L_SHOULDER):
            return (self._at(R_SHOULDER) + self._at(L_SHOULDER)) / 2
        if self._has(NOSE):
            return self._at(NOSE) + down * NOSE_UP * s
        if self._has(R_HIP) and self._has(L_HIP):
            return (self._at(R_HIP) + self._at(L_HIP)) / 2 - down * TORSO_PER_S * s
        for joint, side in ((R_SHOULDER, -1), (L_SHOULDER, 1)):
            if self._has(joint):
                return self._at(joint) - side * across * s / 2
        for joint, side in ((R_HIP, -1), (L_HIP, 1)):
            if self._has(joint):
                return self._at(joint) - down * TORSO_PER_S * s - side * across * HIPS_PER_S * s / 2
        raise PoseError("No person found: the pose has no neck, shoulder, face or hip to place the body from.",
                        hint=NO_PERSON_HINT)

    def head(self) -> None:
        s, up, across = self.unit, -self.down, self.across
        self._set(NOSE, self._at(NECK) + up * NOSE_UP * s)
        nose = self._at(NOSE)
        for joint, side, rise, width in ((R_EYE, -1, EYE_UP, EYE_SIDE), (L_EYE, 1, EYE_UP, EYE_SIDE),
                                         (R_EAR, -1, EAR_UP, EAR_SIDE), (L_EAR, 1, EAR_UP, EAR_SIDE)):
            self._set(joint, nose + up * rise * s + side * across * width * s)

    def limbs(self) -> None:
        for chains, first, second, outward in ((ARMS, UPPER_ARM, FOREARM, ARM_OUTWARD_DEGREES),
                                               (LEGS, THIGH, SHIN, 0.0)):
            source, target = sorted(chains, key=self._bare)  # the limb with something seen first (stable order)
            self.limb(source, first, second, outward)
            if self._bare(target) and not self._bare(source):
                self._mirror(source, target)
            else:
                self.limb(target, first, second, outward)

    def _bare(self, chain) -> bool:
        """Nothing of the limb is seen beyond its root."""
        return not (self.seen[chain[1]] or self.seen[chain[2]])

    def _mirror(self, source, target) -> None:
        """`target`'s middle and end: `source`'s, relative to its root, reflected about the body's axis ("down")."""
        for joint, partner in zip(target[1:3], source[1:3], strict=True):
            offset = self._at(partner) - self._at(source[0])
            self._set(joint, self._at(target[0]) + 2 * float(np.dot(offset, self.down)) * self.down - offset)

    def limb(self, chain, first: float, second: float, outward: float) -> None:
        root, middle, end, side = chain
        s = self.unit
        hang = _normalised(self.down + side * math.tan(math.radians(outward)) * self.across)  # away from the middle
        if not self._has(middle):
            if self._has(end):
                self._set(middle, self._between(root, end, first * s, second * s, side))
            else:
                self._set(middle, self._at(root) + hang * first * s)
        if not self._has(end):
            segment = self._at(middle) - self._at(root)
            length = float(np.hypot(*segment))
            direction = segment / length if length > 1e-6 else hang
            self._set(end, self._at(middle) + direction * second * s)

    def _between(self, root: int, end: int, first: float, second: float, side: int) -> np.ndarray:
        """The middle joint of a limb whose two ends are known: on their line at the first segment's share of the
        span, or bent outward when the ends are closer than the two segments are long (the triangle's apex)."""
        start, stop = self._at(root), self._at(end)
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
