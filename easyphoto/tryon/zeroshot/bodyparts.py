"""A DensePose-style body-part map from what EasyPhoto has offline: the clothes parsing and the pose.

Leffa's generative UNet takes a DensePose fine-part map as 3 extra input channels. DensePose itself is a detectron2
model (R50-FPN), which is not a dependency we can ship or run offline; its part map is, in essence, "which body part
is under this pixel". This module computes that from the person pixels of the ATR parsing and the COCO-18 pose:
each person pixel takes the part of the nearest bone (torso, upper/lower arm, thigh, shin per side), pixels of the
face/hair/hat labels are the head, shoes the feet, and a disc past each wrist the hand. It cannot tell a part's front
from its back (DensePose's paired indices), so frontal indices are used; it is an approximation of Leffa's input,
documented as such wherever the backend is offered.

Part indices are DensePose's (0 background, 1–2 torso, 3 right hand, 4 left hand, 5 left foot, 6 right foot, 7–10
thighs, 11–14 lower legs, 15–18 upper arms, 19–22 forearms, 23–24 head) and are encoded like Leffa's VITON-HD input:
index × 255/24, coloured with OpenCV's PARULA colour map, background black.
"""

from __future__ import annotations

import numpy as np

from easyphoto.segment.types import LABEL_INDEX
from easyphoto.tryon.masks import hand_discs

TORSO, RIGHT_HAND, LEFT_HAND, LEFT_FOOT, RIGHT_FOOT, HEAD = 2, 3, 4, 5, 6, 24
# bone (COCO-18 start, end) → DensePose part index (frontal member of each pair)
BONES = {
    (2, 3): 16, (3, 4): 20,  # right upper arm, right forearm
    (5, 6): 15, (6, 7): 19,  # left upper arm, left forearm
    (8, 9): 7, (9, 10): 11,  # right thigh, right lower leg
    (11, 12): 8, (12, 13): 12,  # left thigh, left lower leg
}
NON_PERSON = ("background", "bag")
HEAD_LABELS = ("face", "hair", "hat", "sunglasses")


def part_map(parsing: np.ndarray, keypoints: np.ndarray | None) -> np.ndarray:
    """(H, W) uint8 DensePose part indices; see the module docstring."""
    labels = np.asarray(parsing)
    person = ~np.isin(labels, [LABEL_INDEX[n] for n in NON_PERSON])
    parts = np.zeros(labels.shape, np.uint8)
    if keypoints is not None:
        parts = _nearest_bone(labels.shape, np.asarray(keypoints, np.float64))
    parts[person & (parts == 0)] = TORSO  # no pose: every person pixel is "body"
    parts[np.isin(labels, [LABEL_INDEX[n] for n in HEAD_LABELS])] = HEAD
    parts[labels == LABEL_INDEX["left_shoe"]] = LEFT_FOOT
    parts[labels == LABEL_INDEX["right_shoe"]] = RIGHT_FOOT
    if keypoints is not None:
        for side, disc in hand_discs(labels.shape, keypoints).items():
            parts[(disc > 0) & person] = RIGHT_HAND if side.startswith("right") else LEFT_HAND
    parts[~person] = 0
    return parts


def _nearest_bone(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Every pixel's part by its nearest bone; the torso is the quadrilateral of shoulders and hips."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    best = np.full(shape, np.inf, np.float32)
    parts = np.zeros(shape, np.uint8)
    seen = points[:, 2] > 0
    segments = [(a, b, part) for (a, b), part in BONES.items() if seen[a] and seen[b]]
    torso = [(2, 8), (5, 11), (2, 5), (8, 11), (1, 8), (1, 11)]  # torso bones: sides, shoulders, hips, neck lines
    segments += [(a, b, TORSO) for a, b in torso if seen[a] and seen[b]]
    for a, b, part in segments:
        distance = _segment_distance(xs, ys, points[a, :2], points[b, :2])
        closer = distance < best
        best[closer], parts[closer] = distance[closer], part
    return parts


def _segment_distance(xs, ys, a, b) -> np.ndarray:
    direction = np.asarray(b - a, np.float32)
    length2 = float(direction @ direction) or 1.0
    t = np.clip(((xs - a[0]) * direction[0] + (ys - a[1]) * direction[1]) / length2, 0.0, 1.0)
    return np.hypot(xs - (a[0] + t * direction[0]), ys - (a[1] + t * direction[1]))


def parula_image(parts: np.ndarray) -> np.ndarray:
    """Leffa's VITON-HD encoding of a part map: RGB uint8, background black."""
    import cv2

    scaled = (parts.astype(np.float32) * (255.0 / 24.0)).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_PARULA), cv2.COLOR_BGR2RGB)
    coloured[parts == 0] = 0
    return coloured


def index_image(parts: np.ndarray) -> np.ndarray:
    """Leffa's DressCode encoding: the raw part index in all three channels."""
    return np.repeat(parts[..., None], 3, axis=2).astype(np.uint8)


__all__ = ["index_image", "part_map", "parula_image"]
