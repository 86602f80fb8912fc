"""The pose gallery (gallery.json beside this file): full-body skeletons a pose swap can take, fitted to a canvas."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

from easyphoto.pose.skeleton import SkeletonError

GALLERY_FILE = Path(__file__).with_name("gallery.json")
BODY_HEIGHT = 0.85  # of the canvas's height: the fitted body, centred


@cache
def _poses() -> dict[str, list[list[float]]]:
    return json.loads(GALLERY_FILE.read_text(encoding="utf-8"))["poses"]


def pose_gallery() -> list[str]:
    """The gallery's pose names, in the file's order."""
    return list(_poses())


def gallery_pose(name: str, size: tuple[int, int]) -> np.ndarray:
    """(18, 3) key points of pose `name` on a canvas of `size` (width, height): the body BODY_HEIGHT of the height
    (less when the canvas is too narrow for it), centred; SkeletonError listing the names for an unknown one."""
    poses = _poses()
    if name not in poses:
        raise SkeletonError(f"There is no pose {name!r} in the gallery.", hint=f"Poses: {', '.join(poses)}.")
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise SkeletonError(f"A pose canvas must be at least 1×1 px, not {tuple(size)}.")
    points = np.asarray(poses[name], np.float32)
    extent = float(points[:, 0].max() - points[:, 0].min())
    scale = min(BODY_HEIGHT * height, 0.9 * width / max(extent, 1e-6))
    centre = (points[:, 0].max() + points[:, 0].min()) / 2
    body = np.ones((18, 3), np.float32)
    body[:, 0] = width / 2 + (points[:, 0] - centre) * scale
    body[:, 1] = (height - scale) / 2 + points[:, 1] * scale
    return body
