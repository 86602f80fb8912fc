"""Skeletons as the OpenPose JSON that ControlNet's pose editors read and write:

    {"canvas_width": W, "canvas_height": H, "people": [{"pose_keypoints_2d": [x0, y0, c0, ..., x17, y17, c17]}]}

COCO-18 order (easyphoto.pose.openpose.KEYPOINTS), c = 1 visible / 0 missing. Every reading error names what is
wrong (the field, the person, the joint) and how to fix it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from easyphoto.pose.completion import PoseError
from easyphoto.pose.openpose import KEYPOINTS

VALUES_PER_PERSON = 3 * len(KEYPOINTS)
MAX_PEOPLE = 16
FAR = 1.0  # a joint more than this many canvas sizes outside the canvas is a mistake, not an off-frame limb


class SkeletonError(PoseError):
    """A skeleton JSON that cannot be read, or that lacks joints a mode needs."""


def skeleton_to_json(bodies: Sequence[np.ndarray], size: tuple[int, int]) -> dict[str, Any]:
    """OpenPose JSON of `bodies` ((18, 3) x, y, visible) on a canvas of `size` (width, height)."""
    people = []
    for body in bodies:
        points = np.asarray(body, np.float64).reshape(18, 3)
        flat = []
        for x, y, visible in points:
            seen = visible > 0 and math.isfinite(x) and math.isfinite(y)
            flat += [round(float(x), 2), round(float(y), 2), 1.0] if seen else [0.0, 0.0, 0.0]
        people.append({"pose_keypoints_2d": flat})
    return {"canvas_width": int(size[0]), "canvas_height": int(size[1]), "people": people}


def skeleton_from_json(data: dict | str) -> tuple[list[np.ndarray], tuple[int, int]]:
    """(bodies as (18, 3) float32 arrays, canvas (width, height)) of OpenPose JSON given as text or a dict."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SkeletonError(f"The skeleton is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                                hint="Send the OpenPose JSON of a pose editor (canvas_width, canvas_height, "
                                     "people[].pose_keypoints_2d).") from None
    if not isinstance(data, dict):
        raise SkeletonError(f"The skeleton must be a JSON object, not {type(data).__name__}.",
                            hint="{\"canvas_width\": W, \"canvas_height\": H, \"people\": [...]}")
    size = _canvas(data)
    people = data.get("people")
    if not isinstance(people, list) or not people:
        raise SkeletonError("The skeleton has no people: 'people' must be a non-empty list.",
                            hint="Each person is {\"pose_keypoints_2d\": [54 numbers]}.")
    if len(people) > MAX_PEOPLE:
        raise SkeletonError(f"The skeleton has {len(people)} people; at most {MAX_PEOPLE}.")
    return [_person(person, i, size) for i, person in enumerate(people)], size


def _canvas(data: dict) -> tuple[int, int]:
    values = []
    for key in ("canvas_width", "canvas_height"):
        if key not in data:
            raise SkeletonError(f"The skeleton has no {key}.", hint="OpenPose JSON gives the canvas it is drawn on: "
                                                                    "canvas_width and canvas_height in pixels.")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 1 \
                or value > 16384 or int(value) != value:
            raise SkeletonError(f"The skeleton's {key} must be a whole number of pixels from 1 to 16384, not "
                                f"{value!r}.", hint="Give the size of the image the skeleton is drawn on.")
        values.append(int(value))
    return values[0], values[1]


def _person(person: Any, index: int, size: tuple[int, int]) -> np.ndarray:
    if not isinstance(person, dict):
        raise SkeletonError(f"people[{index}] must be an object, not {type(person).__name__}.",
                            hint="Each person is {\"pose_keypoints_2d\": [54 numbers]}.")
    flat = person.get("pose_keypoints_2d")
    if not isinstance(flat, list) or len(flat) != VALUES_PER_PERSON:
        count = len(flat) if isinstance(flat, list) else "no"
        raise SkeletonError(f"people[{index}].pose_keypoints_2d has {count} numbers; it needs {VALUES_PER_PERSON} "
                            f"(x, y, visible for each of the {len(KEYPOINTS)} COCO-18 joints).",
                            hint="Joints in the order " + ", ".join(KEYPOINTS) + "; a missing joint is 0, 0, 0.")
    body = np.zeros((18, 3), np.float32)
    width, height = size
    for joint, name in enumerate(KEYPOINTS):
        x, y, visible = flat[3 * joint:3 * joint + 3]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y, visible)):
            raise SkeletonError(f"people[{index}]: the {name} joint is {[x, y, visible]!r}; x, y and visible must be "
                                "finite numbers.")
        if visible > 0 and not (-FAR * width <= x <= (1 + FAR) * width and -FAR * height <= y <= (1 + FAR) * height):
            raise SkeletonError(f"people[{index}]: the {name} joint ({x:g}, {y:g}) lies far outside the "
                                f"{width}×{height} canvas.", hint="Coordinates are pixels of the canvas, from its "
                                                                 "top-left corner.")
        body[joint] = (x, y, 1.0 if visible > 0 else 0.0)
    return body


def require_joints(body: np.ndarray, names: Sequence[str], why: str = "a pose swap needs the whole body") -> None:
    """SkeletonError naming (by KEYPOINTS name, in the order of `names`) the joints of `names` that `body` lacks
    (not visible, or not finite); `why` says what needs them."""
    points = np.asarray(body, np.float64).reshape(18, 3)
    unknown = [name for name in names if name not in KEYPOINTS]
    if unknown:
        raise ValueError(f"not COCO-18 joint names: {unknown}")
    missing = [name for name in names if not _present(points[KEYPOINTS.index(name)])]
    if missing:
        raise SkeletonError(f"The skeleton has no {', '.join(missing)}: {why}.",
                            hint="Complete it in the pose editor, or turn complete_pose on (missing joints placed "
                                 "from body proportions).")


def _present(joint: np.ndarray) -> bool:
    return bool(joint[2] > 0 and np.isfinite(joint[:2]).all())


def scale_skeleton(body: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """`body` ((18, 3)) moved from a `from_size` canvas to a `to_size` one (width, height): x and y scaled by the
    same factor, the smaller of the two side ratios, so the pose keeps its proportions and the whole old canvas fits
    the new one; then centred, the spare width (or height) split evenly on both sides. Visibility is kept."""
    points = np.asarray(body, np.float32).reshape(18, 3).copy()
    scale = min(to_size[0] / from_size[0], to_size[1] / from_size[1])
    offset = ((to_size[0] - from_size[0] * scale) / 2, (to_size[1] - from_size[1] * scale) / 2)
    points[:, 0] = points[:, 0] * scale + offset[0]
    points[:, 1] = points[:, 1] * scale + offset[1]
    return points
