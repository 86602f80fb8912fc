"""Pose completion, skeleton JSON and the pose gallery (easyphoto.pose): on real photos cropped to half a body and
to head and shoulders (mediapipe finds the visible joints), and on synthetic bodies for each branch of the rule."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from easyphoto.imageops import load_photo, to_array
from easyphoto.pose import completion as pc
from easyphoto.pose.gallery import gallery_pose, pose_gallery
from easyphoto.pose.openpose import COLOURS, KEYPOINTS, LIMBS, render_openpose
from easyphoto.pose.skeleton import SkeletonError, require_joints, scale_skeleton, skeleton_from_json, skeleton_to_json
from tests.conftest import require_module

J = {name: i for i, name in enumerate(KEYPOINTS)}


def length(body, a: str, b: str) -> float:
    return float(np.hypot(*(body[J[a], :2] - body[J[b], :2])))


def shoulders(body) -> float:
    return length(body, "right_shoulder", "left_shoulder")


@pytest.fixture(scope="module")
def astronaut(photo_astronaut):
    """(pixels, key points): scikit-image's astronaut, a half-body photo (mediapipe: head, shoulders, one arm)."""
    require_module("mediapipe", reason="the real-photo cases find the body with mediapipe")
    from easyphoto.pose.openpose import body_keypoints_from_mediapipe

    pixels = to_array(load_photo(photo_astronaut).image)
    return pixels, body_keypoints_from_mediapipe(pixels)


def assert_plausible(body) -> None:
    """Every joint visible and in the canon's proportions (S = shoulder width), limbs alike on both sides."""
    s = shoulders(body)
    assert body[:, 2].all() and s > 0
    for side in ("right", "left"):
        assert 0.5 < length(body, f"{side}_shoulder", f"{side}_elbow") / s < 1.1
        assert 0.4 < length(body, f"{side}_elbow", f"{side}_wrist") / s < 1.0
        assert 0.8 < length(body, f"{side}_hip", f"{side}_knee") / s < 1.4
        assert 0.8 < length(body, f"{side}_knee", f"{side}_ankle") / s < 1.4
        assert body[J[f"{side}_knee"], 1] > body[J[f"{side}_hip"], 1] > body[J["neck"], 1]  # legs below the hips
        assert body[J[f"{side}_ankle"], 1] > body[J[f"{side}_knee"], 1]
    assert body[J["nose"], 1] < body[J["neck"], 1]  # the head above the neck
    assert 0.3 < length(body, "right_hip", "left_hip") / s < 1.0
    for a, b in (("hip", "knee"), ("knee", "ankle")):
        right, left = length(body, f"right_{a}", f"right_{b}"), length(body, f"left_{a}", f"left_{b}")
        assert abs(right - left) / max(right, left) < 0.35


def test_a_half_body_photo_is_completed_without_moving_what_was_seen(astronaut):
    pixels, found = astronaut
    visible = found[:, 2] > 0
    assert visible[[J["nose"], J["right_shoulder"], J["left_shoulder"]]].all() and not visible[J["left_ankle"]]
    done = pc.complete_body(found, (512, 512))
    assert np.array_equal(done.body[visible, :2], found[visible, :2])  # visible joints never move
    assert set(done.completed) == {KEYPOINTS[i] for i in np.flatnonzero(~visible)}
    assert_plausible(done.body)
    left, top, right, bottom = done.padding
    assert bottom > 300 and done.extended_size == (512 + left + right, 512 + top + bottom)
    extended = done.body_in_extended()
    assert (extended[:, 0] >= 0).all() and (extended[:, 0] < done.extended_size[0]).all()
    assert (extended[:, 1] >= 0).all() and (extended[:, 1] < done.extended_size[1]).all()
    drawn = np.asarray(render_openpose(done.extended_size, [extended]))
    colours = {tuple(int(c * pc_darken) for c in COLOURS[i]) for i, _ in enumerate(LIMBS) for pc_darken in (0.6,)}
    present = {tuple(p) for p in drawn.reshape(-1, 3)[::7]}
    assert len(colours & present) >= 15  # (almost) every limb's colour is drawn (joint discs cover some ends)


def test_a_tighter_crop_needs_more_canvas(astronaut):
    from easyphoto.pose.openpose import body_keypoints_from_mediapipe

    pixels, _ = astronaut
    crop = np.ascontiguousarray(pixels[:330, 40:400])  # head and shoulders
    found = body_keypoints_from_mediapipe(crop)
    assert found is not None
    done = pc.complete_body(found, (crop.shape[1], crop.shape[0]))
    assert_plausible(done.body)
    half = pc.complete_body(astronaut[1], (512, 512))
    assert done.padding[3] > half.padding[3] - (512 - 330)  # the legs leave a shorter frame sooner


def synthetic(**joints) -> np.ndarray:
    body = np.zeros((18, 3), np.float32)
    for name, (x, y) in joints.items():
        body[J[name]] = (x, y, 1)
    return body


def test_only_a_face_anchors_a_whole_body():
    body = synthetic(nose=(100, 60), right_eye=(92, 52), left_eye=(108, 52))  # eye distance 16 → S = 100
    done = pc.complete_body(body, (200, 150))
    assert shoulders(done.body) == pytest.approx(100, rel=1e-3)
    assert done.body[J["neck"], 1] == pytest.approx(60 + 55, abs=0.01)
    assert_plausible(done.body)
    assert done.padding[3] > 0 and done.completed[0] == "neck"


def test_one_arm_seen_the_other_follows_the_rule_and_a_forearm_continues_its_upper_arm():
    body = synthetic(right_shoulder=(60, 100), left_shoulder=(160, 100), right_elbow=(40, 170))
    done = pc.complete_body(body, (220, 400))
    upper = done.body[J["right_elbow"], :2] - done.body[J["right_shoulder"], :2]
    fore = done.body[J["right_wrist"], :2] - done.body[J["right_elbow"], :2]
    assert np.allclose(upper / np.linalg.norm(upper), fore / np.linalg.norm(fore), atol=1e-5)
    assert np.linalg.norm(fore) == pytest.approx(pc.FOREARM * 100, rel=1e-4)
    assert done.body[J["left_elbow"], 0] > 160  # the hanging left arm turns outward, away from the body's middle
    assert_plausible(done.body)


def test_a_tilted_torso_keeps_its_axis_and_a_mid_joint_bends_between_its_ends():
    body = synthetic(right_shoulder=(100, 100), left_shoulder=(180, 160), right_hip=(40, 200), left_hip=(120, 260),
                     right_ankle=(10, 330))  # leaning; the right knee missing between hip and ankle
    done = pc.complete_body(body, (300, 400))
    knee = done.body[J["right_knee"], :2]
    assert np.linalg.norm(knee - done.body[J["right_hip"], :2]) == pytest.approx(pc.THIGH * 100, rel=1e-3)
    neck_to_hips = (done.body[J["right_hip"], :2] + done.body[J["left_hip"], :2]) / 2 - done.body[J["neck"], :2]
    nose = done.body[J["nose"], :2] - done.body[J["neck"], :2]
    assert float(np.dot(nose, neck_to_hips)) / (np.linalg.norm(nose) * np.linalg.norm(neck_to_hips)) < -0.99


def test_nothing_to_measure_by_is_a_pose_error():
    with pytest.raises(pc.PoseError, match="nothing to measure"):
        pc.complete_body(synthetic(nose=(10, 10)), (100, 100))
    with pytest.raises(pc.PoseError, match="No person"):
        pc.detect_and_complete(np.full((128, 128, 3), 90, np.uint8))


def test_extend_canvas_marks_only_the_new_border():
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    extended, mask = pc.extend_canvas(image, (5, 0, 3, 10))
    assert extended.size == mask.size == (48, 40)
    pixels, border = np.asarray(extended), np.asarray(mask)
    assert (pixels[0:30, 5:45] == (200, 10, 10)).all() and (border[0:30, 5:45] == 0).all()
    assert (border[30:] == 255).all() and (border[:, :5] == 255).all() and (pixels[35, 2] == 127).all()


# ---------------------------------------------------------------------------------------------- JSON


def test_skeleton_json_round_trip_and_scaling():
    body = gallery_pose("walking", (512, 768))
    body[J["left_ear"], 2] = 0
    data = skeleton_to_json([body], (512, 768))
    assert len(data["people"][0]["pose_keypoints_2d"]) == 54 and data["people"][0]["pose_keypoints_2d"][-1] == 0
    bodies, size = skeleton_from_json(json.dumps(data))
    assert size == (512, 768) and np.allclose(bodies[0][:, :2][body[:, 2] > 0], body[:, :2][body[:, 2] > 0], atol=0.01)
    assert bodies[0][J["left_ear"], 2] == 0
    scaled = scale_skeleton(bodies[0], (512, 768), (256, 256))  # ratio 1/3, centred across
    assert np.allclose(scaled[J["nose"], :2], bodies[0][J["nose"], :2] / 3 + [256 / 2 - 512 / 6, 0], atol=0.01)


@pytest.mark.parametrize("data, words", [
    ("{oops", "not JSON"),
    ("[1, 2]", "must be a JSON object"),
    ({"canvas_width": 0, "canvas_height": 10, "people": []}, "canvas_width must be a whole number"),
    ({"canvas_width": 10, "canvas_height": 10.5, "people": []}, "canvas_height must be a whole number"),
    ({"canvas_width": 10, "canvas_height": 10, "people": []}, "no people"),
    ({"canvas_width": 10, "canvas_height": 10, "people": [{"pose_keypoints_2d": [1, 2, 1]}]}, "has 3 numbers"),
    ({"canvas_width": 10, "canvas_height": 10, "people": [{}]}, "has no numbers"),
    ({"canvas_width": 10, "canvas_height": 10, "people": [{"pose_keypoints_2d": [0] * 6 + ["x", 1, 1] + [0] * 45}]},
     "right_shoulder joint"),
    ({"canvas_width": 10, "canvas_height": 10, "people": [{"pose_keypoints_2d": [500, 5, 1] + [0] * 51}]},
     "nose joint (500, 5) lies far outside"),
])
def test_bad_skeleton_json_says_what_is_wrong(data, words):
    with pytest.raises(SkeletonError, match=re.escape(words)):
        skeleton_from_json(data)


def test_missing_joints_are_named():
    body = gallery_pose("standing", (100, 200))
    body[[J["right_wrist"], J["left_ankle"]], 2] = 0
    with pytest.raises(SkeletonError, match="no right_wrist, left_ankle"):
        require_joints(body, KEYPOINTS)
    require_joints(body, ["nose", "neck"])


def test_gallery_poses_are_whole_bodies_inside_their_canvas():
    names = pose_gallery()
    assert len(names) >= 5 and len(set(names)) == len(names)
    for name in names:
        body = gallery_pose(name, (512, 768))
        assert body[:, 2].all() and (body[:, 0] > 0).all() and (body[:, 0] < 512).all()
        assert (body[:, 1] > 0).all() and (body[:, 1] < 768).all()
        assert_plausible(body)
    wide = gallery_pose("standing", (1000, 200))
    assert np.ptp(wide[:, 1]) <= 0.85 * 200 + 1e-3
    with pytest.raises(SkeletonError, match="Poses: standing"):
        gallery_pose("moonwalk", (100, 100))
