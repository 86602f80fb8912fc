"""Pose conditions for ControlNet: OpenPose-format images (COCO-18 body, face dots) drawn from landmarks we have;
pose completion for half-body and mannequin shots, OpenPose JSON skeletons and the built-in pose gallery."""

from easyphoto.pose.completion import CompletedBody, PoseError, complete_body, detect_and_complete, extend_canvas
from easyphoto.pose.gallery import gallery_pose, pose_gallery
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
from easyphoto.pose.skeleton import SkeletonError, require_joints, scale_skeleton, skeleton_from_json, skeleton_to_json

__all__ = [
    "COLOURS",
    "KEYPOINTS",
    "LIMBS",
    "CompletedBody",
    "PoseError",
    "SkeletonError",
    "body_keypoints_from_face",
    "body_keypoints_from_mediapipe",
    "complete_body",
    "detect_and_complete",
    "extend_canvas",
    "gallery_pose",
    "pose_gallery",
    "render_from_face",
    "render_openpose",
    "require_joints",
    "scale_skeleton",
    "skeleton_from_json",
    "skeleton_to_json",
    "unload",
]
