"""OpenPose-format condition images for ``control_v11p_sd15_openpose``, rendered in-process from landmarks we have.

The ControlNet was trained on images drawn by the OpenPose body annotator: a black canvas, the 17 limbs of the
COCO-18 skeleton as filled ellipses in fixed per-limb colours, the whole canvas then darkened to 60 %, and the 18
joints drawn on top as filled circles in fixed per-joint colours (full brightness); face key points, when present,
are small white dots. Stick width and joint radius are 4 px on the annotator's 512 px canvas. This module draws the
same picture without any annotator weights, from:

- the face detector's 5 landmarks (nose, eyes; ears and neck estimated) — :func:`body_keypoints_from_face`;
- mediapipe 0.10.21's legacy pose solution (33 landmarks mapped to COCO-18, model inside the wheel) when it is
  installed — :func:`body_keypoints_from_mediapipe`.

Key points are ``(18, 3)`` float arrays of ``x, y, visible`` in image pixels, in COCO-18 order (:data:`KEYPOINTS`).
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

LICENCE = "Apache-2.0 (mediapipe 0.10.21 legacy pose solution, model inside the wheel)"

# COCO-18 joint order used by OpenPose's body model ("person's right/left": a frontal person's right is on the
# image's left).
KEYPOINTS = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)

# The conventional OpenPose rendering colours (RGB), one per joint in KEYPOINTS order; limb i is drawn in COLOURS[i]
# too. They step around the hue circle from red (nose) through yellow, green, cyan, blue, to magenta-red (left ear).
COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

# The 17 limbs the renderer draws, as (joint, joint) index pairs into KEYPOINTS, in drawing (and colour) order:
# neck→shoulders, arms, neck→hips, legs, neck→nose, nose→eyes→ears. (OpenPose's model also has two shoulder→ear
# "limbs" for grouping; the renderer never draws them.)
LIMBS: tuple[tuple[int, int], ...] = (
    (NECK, R_SHOULDER), (NECK, L_SHOULDER),
    (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
    (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST),
    (NECK, R_HIP), (R_HIP, R_KNEE), (R_KNEE, R_ANKLE),
    (NECK, L_HIP), (L_HIP, L_KNEE), (L_KNEE, L_ANKLE),
    (NECK, NOSE),
    (NOSE, R_EYE), (R_EYE, R_EAR),
    (NOSE, L_EYE), (L_EYE, L_EAR),
)  # fmt: skip

LIMB_DARKEN = 0.6  # the canvas is scaled by this after the limbs are drawn, before the joints
FACE_COLOUR = (255, 255, 255)
REFERENCE_SIDE = 512  # the annotator's canvas: stick width / joint radius 4 px, face dots 3 px at this short side
STICK_WIDTH = 4
FACE_DOT_RADIUS = 3

# Estimates from the 5 face points (fractions of the face box; see body_keypoints_from_face).
EAR_EXTENSION = 0.2  # each ear lies this × box width beyond its eye, along the eye line
NECK_DROP = 1.0  # the neck lies this × box height below the mouth centre, along the face's vertical axis
PROFILE_HIDE = 0.8  # nose this far towards one eye (in half eye distances) → the ear on that side is hidden

# mediapipe pose (33 landmarks, person's left/right) → COCO-18; the neck is the shoulders' midpoint.
_MEDIAPIPE_TO_COCO = {
    NOSE: 0, R_SHOULDER: 12, R_ELBOW: 14, R_WRIST: 16, L_SHOULDER: 11, L_ELBOW: 13, L_WRIST: 15,
    R_HIP: 24, R_KNEE: 26, R_ANKLE: 28, L_HIP: 23, L_KNEE: 25, L_ANKLE: 27,
    R_EYE: 5, L_EYE: 2, R_EAR: 8, L_EAR: 7,
}  # fmt: skip
MEDIAPIPE_VISIBILITY = 0.5


def empty_body() -> np.ndarray:
    """(18, 3) float32 key points, all invisible."""
    return np.zeros((len(KEYPOINTS), 3), np.float32)


# ---------------------------------------------------------------------------------------------- from face points


def body_keypoints_from_face(landmarks5: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """COCO-18 key points from a face detector's 5 landmarks and its box ``(x0, y0, x1, y1)``.

    ``landmarks5`` is in the detectors' order (eye on the image's left, eye on the image's right, nose, mouth corner
    on the image's left, on the image's right). Nose and eyes are copied (which eye is the person's right follows
    from the face's orientation: a frontal upright face has its right eye on the image's left, an upside-down one on
    the image's right). Ears: each eye moved outwards along the eye line by ``EAR_EXTENSION`` × the box width; an
    ear is hidden when the nose has turned far towards that side (a profile). Neck: ``NECK_DROP`` × the box height
    below the mouth centre, along the face's vertical axis (perpendicular to the eye line). Width and height are
    taken from the box as the face's own when it is nearer upright than sideways, swapped otherwise. All other
    points are invisible.
    """
    points = np.asarray(landmarks5, np.float64).reshape(5, 2)
    eye_a, eye_b, nose = points[0], points[1], points[2]
    mouth = (points[3] + points[4]) / 2
    eyes_mid = (eye_a + eye_b) / 2
    across = eye_b - eye_a
    down = mouth - eyes_mid
    # Handedness: from the person's right eye to their left eye, then towards the mouth, turns clockwise on screen
    # (x right, y down): cross(left - right, down) > 0.
    right_eye, left_eye = (eye_a, eye_b) if _cross(across, down) >= 0 else (eye_b, eye_a)
    eye_distance = float(np.hypot(*(left_eye - right_eye)))
    if eye_distance > 1e-6:
        u = (left_eye - right_eye) / eye_distance  # person's right → left, in the image
    else:  # degenerate landmarks: fall back to the eyes→mouth direction, or upright
        length = float(np.hypot(*down))
        v0 = down / length if length > 1e-6 else np.array([0.0, 1.0])
        u = np.array([v0[1], -v0[0]])
    v = np.array([-u[1], u[0]])  # the face's "down": u turned 90° clockwise on screen

    x0, y0, x1, y1 = (float(c) for c in box)
    box_w, box_h = abs(x1 - x0), abs(y1 - y0)
    face_w, face_h = (box_w, box_h) if abs(u[0]) >= abs(u[1]) else (box_h, box_w)

    body = empty_body()
    body[NOSE] = (*nose, 1)
    body[R_EYE] = (*right_eye, 1)
    body[L_EYE] = (*left_eye, 1)
    body[R_EAR] = (*(right_eye - u * EAR_EXTENSION * face_w), 1)
    body[L_EAR] = (*(left_eye + u * EAR_EXTENSION * face_w), 1)
    body[NECK] = (*(mouth + v * NECK_DROP * face_h), 1)
    if eye_distance > 1e-6:
        turn = float(np.dot(nose - (left_eye + right_eye) / 2, u)) / (eye_distance / 2)
        if turn > PROFILE_HIDE:  # nose towards the person's left: their left ear is behind the head
            body[L_EAR, 2] = 0
        elif turn < -PROFILE_HIDE:
            body[R_EAR, 2] = 0
    return body


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


# ---------------------------------------------------------------------------------------------- from mediapipe

_lock = threading.Lock()
_model = None


def available() -> bool:
    """True when mediapipe is installed (one of the pin sets has none)."""
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


def _pose_solution():
    import os

    # mediapipe's C++ core logs every graph start to stderr; users need none of it.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mediapipe.python.solutions import pose

    return pose


def _get_model():
    global _model
    if _model is None:
        # model_complexity=1 is the only pose landmark model inside the 0.10.21 wheel (0 and 2 would be downloaded).
        _model = _pose_solution().Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                       min_detection_confidence=0.5)
    return _model


def unload() -> None:
    """Free the cached mediapipe pose model (the next call loads it again)."""
    global _model
    with _lock:
        if _model is not None:
            try:
                _model.close()
            finally:
                _model = None


def body_keypoints_from_mediapipe(image: np.ndarray) -> np.ndarray | None:
    """COCO-18 key points of the most prominent person in an HxWx3 uint8 RGB ``image`` (mediapipe pose, one person).

    A point is visible when mediapipe's visibility is at least ``MEDIAPIPE_VISIBILITY`` and it lies inside the
    image (the OpenPose annotator only ever marks what it sees); the neck is the shoulders' midpoint, visible when
    both are. None when mediapipe is not installed or finds no person. The model is loaded once per process.
    """
    if not available():
        return None
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    with _lock:
        result = _get_model().process(rgb)
    if result.pose_landmarks is None:
        return None
    marks = result.pose_landmarks.landmark
    body = empty_body()
    for coco, index in _MEDIAPIPE_TO_COCO.items():
        mark = marks[index]
        x, y = mark.x * width, mark.y * height
        seen = mark.visibility >= MEDIAPIPE_VISIBILITY and 0 <= x < width and 0 <= y < height
        body[coco] = (x, y, 1.0 if seen else 0.0)
    body[NECK, :2] = (body[R_SHOULDER, :2] + body[L_SHOULDER, :2]) / 2
    body[NECK, 2] = float(body[R_SHOULDER, 2] > 0 and body[L_SHOULDER, 2] > 0)
    if not body[:, 2].any():
        return None
    return body


def _as_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    elif array.shape[2] == 4:
        array = array[..., :3]
    return np.ascontiguousarray(array)


# ---------------------------------------------------------------------------------------------- rendering

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate centres
_ONE = 1 << _SHIFT


def scaled_width(size: tuple[int, int], reference: int = STICK_WIDTH) -> int:
    """``reference`` px (at a 512 px short side) scaled to ``size`` (width, height); at least 1."""
    return max(1, round(reference * min(size) / REFERENCE_SIDE))


def render_openpose(size: tuple[int, int], bodies: list[np.ndarray], faces: list[np.ndarray] | None = None, *,
                    stick_width: int | None = None) -> Image.Image:
    """The OpenPose condition image: RGB, ``size`` = (width, height), black background.

    ``bodies``: ``(18, 3)`` arrays (x, y, visible) in COCO-18 order and image pixels (``(18, 2)`` means all
    visible; NaN coordinates are invisible). Every limb whose two ends are visible is drawn as a filled ellipse
    (half-axes: half its length × ``stick_width``) in its colour, the canvas is darkened to ``LIMB_DARKEN``, then
    every visible joint is a filled circle of radius ``stick_width`` in its colour. ``faces``: any ``(N, 2)`` point
    arrays, drawn last as white dots. ``stick_width`` defaults to 4 px at a 512 px short side, scaled.
    """
    import cv2

    width, height = (int(s) for s in size)
    canvas = np.zeros((height, width, 3), np.uint8)
    stick = scaled_width((width, height)) if stick_width is None else max(1, int(stick_width))
    prepared = [_prepare_body(body) for body in bodies]
    for limb, (a, b) in enumerate(LIMBS):
        for body in prepared:
            if body[a, 2] > 0 and body[b, 2] > 0:
                polygon = _limb_polygon(body[a, :2], body[b, :2], stick)
                cv2.fillConvexPoly(canvas, polygon, COLOURS[limb], lineType=cv2.LINE_8, shift=_SHIFT)
    canvas = (canvas * LIMB_DARKEN).astype(np.uint8)
    for joint in range(len(KEYPOINTS)):
        for body in prepared:
            if body[joint, 2] > 0:
                cv2.circle(canvas, _fixed(body[joint, :2]), stick * _ONE, COLOURS[joint], thickness=-1,
                           lineType=cv2.LINE_8, shift=_SHIFT)
    dot = scaled_width((width, height), FACE_DOT_RADIUS)
    for points in faces or []:
        for point in np.asarray(points, np.float64).reshape(-1, 2):
            if np.isfinite(point).all():
                cv2.circle(canvas, _fixed(point), dot * _ONE, FACE_COLOUR, thickness=-1, lineType=cv2.LINE_8,
                           shift=_SHIFT)
    return Image.fromarray(canvas)


def _prepare_body(body: np.ndarray) -> np.ndarray:
    array = np.asarray(body, np.float64)
    if array.shape not in ((18, 2), (18, 3)):
        raise ValueError(f"a body needs (18, 3) or (18, 2) key points, got shape {array.shape}")
    if array.shape[1] == 2:
        array = np.concatenate([array, np.ones((18, 1))], axis=1)
    array = array.copy()
    array[~np.isfinite(array[:, :2]).all(axis=1), 2] = 0
    # Far-off coordinates would overflow cv2's fixed point; nothing that far out can touch the canvas anyway.
    array[:, :2] = np.clip(np.nan_to_num(array[:, :2]), -1e5, 1e5)
    return array


def _fixed(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0] * _ONE)), int(round(point[1] * _ONE))


def _limb_polygon(a: np.ndarray, b: np.ndarray, stick: int) -> np.ndarray:
    """The limb's ellipse as a fixed-point polygon: centred between the joints, long half-axis half their distance,
    short half-axis ``stick``."""
    centre = (a + b) / 2
    delta = b - a
    half_length = float(np.hypot(*delta)) / 2
    angle = np.arctan2(delta[1], delta[0])
    t = np.deg2rad(np.arange(0, 360, 5))
    local = np.stack([half_length * np.cos(t), stick * np.sin(t)], axis=1)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = centre + local @ rotation.T
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


# ---------------------------------------------------------------------------------------------- convenience


def render_from_face(size: tuple[int, int], landmarks5: np.ndarray, box: tuple[float, float, float, float],
                     image: np.ndarray | None = None) -> Image.Image:
    """The pose condition for one face: mediapipe's body when it is installed, ``image`` is given and the body's
    nose lies inside the face ``box`` (so it is the same person); otherwise the head-and-neck estimate of
    :func:`body_keypoints_from_face`.

    ``landmarks5`` and ``box`` are in the pixels of ``size`` (width, height); ``image`` may be any resolution of the
    same picture (its key points are scaled to ``size``).
    """
    body = None
    if image is not None and available():
        found = body_keypoints_from_mediapipe(image)
        if found is not None:
            image_h, image_w = np.asarray(image).shape[:2]
            found[:, 0] *= size[0] / image_w
            found[:, 1] *= size[1] / image_h
            if found[NOSE, 2] > 0 and _inside(found[NOSE, :2], box):
                body = found
    if body is None:
        body = body_keypoints_from_face(landmarks5, box)
    return render_openpose(size, [body])


def _inside(point: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = box
    return min(x0, x1) <= point[0] <= max(x0, x1) and min(y0, y1) <= point[1] <= max(y0, y1)
