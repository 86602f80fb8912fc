"""Pose conditions for ControlNet: OpenPose-format images (COCO-18 body, face dots) drawn from landmarks we have."""

from easyphoto.pose.openpose import (
    COLOURS,
    KEYPOINTS,
    LIMBS,
    body_keypoints_from_face,
    body_keypoints_from_mediapipe,
    render_from_face,
    render_openpose,
    unload,
)

__all__ = [
    "COLOURS",
    "KEYPOINTS",
    "LIMBS",
    "body_keypoints_from_face",
    "body_keypoints_from_mediapipe",
    "render_from_face",
    "render_openpose",
    "unload",
]
