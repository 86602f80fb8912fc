"""Pose completion, skeleton JSON and the pose gallery (easyphoto.pose): on a real half-body photo and a crop of it to
head and shoulders (mediapipe finds the visible joints), and on synthetic bodies for each branch of the rule."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from easyphoto.errors import BackendUnavailable
from easyphoto.imageops import load_photo, to_array
from easyphoto.pose import completion as pc
from easyphoto.pose import openpose
from easyphoto.pose.gallery import gallery_pose, pose_gallery
from easyphoto.pose.openpose import COLOURS, KEYPOINTS, LIMB_DARKEN, LIMBS, render_openpose
from easyphoto.pose.skeleton import SkeletonError, require_joints, scale_skeleton, skeleton_from_json, skeleton_to_json
from tests.conftest import require_module

J = {name: i for i, name in enumerate(KEYPOINTS)}
HEAD_AND_SHOULDERS = (slice(0, 330), slice(40, 400))  # rows, columns of the 512 × 512 astronaut


def length(body, a: str, b: str) -> float:
    return float(np.hypot(*(body[J[a], :2] - body[J[b], :2])))


def shoulders(body) -> float:
    return length(body, "right_shoulder", "left_shoulder")


def torso(body) -> float:
    hips = (body[J["right_hip"], :2] + body[J["left_hip"], :2]) / 2
    return float(np.hypot(*(hips - body[J["neck"], :2])))


def assert_kept(given, done: pc.CompletedBody) -> None:
    """The joints that were visible come back bit for bit; exactly the others are listed as completed."""
    seen = given[:, 2] > 0
    assert np.array_equal(done.body[seen, :2], np.asarray(given, np.float32)[seen, :2])
    assert done.completed == tuple(KEYPOINTS[i] for i in np.flatnonzero(~seen))


def assert_plausible(body) -> None:
    """Every joint visible and within the canon's proportions (S = shoulder width): limbs, torso, head, both sides
    alike, legs below the hips, the head above the neck."""
    s = shoulders(body)
    assert body[:, 2].all() and s > 0
    assert 0.9 < torso(body) / s < 1.8 and 0.3 < length(body, "right_hip", "left_hip") / s < 1.0
    assert 0.3 < length(body, "nose", "neck") / s < 0.9
    for side in ("right", "left"):
        assert 0.5 < length(body, f"{side}_shoulder", f"{side}_elbow") / s < 1.1
        assert 0.4 < length(body, f"{side}_elbow", f"{side}_wrist") / s < 1.0
        assert 0.6 < length(body, f"{side}_hip", f"{side}_knee") / torso(body) < 1.1
        assert 0.7 < length(body, f"{side}_knee", f"{side}_ankle") / length(body, f"{side}_hip", f"{side}_knee") < 1.3
        assert body[J[f"{side}_ankle"], 1] > body[J[f"{side}_knee"], 1] > body[J[f"{side}_hip"], 1]
        assert body[J[f"{side}_hip"], 1] > body[J["neck"], 1]  # legs below the hips, hips below the neck
        assert body[J[f"{side}_eye"], 1] < body[J["neck"], 1]
    assert body[J["nose"], 1] < body[J["neck"], 1]  # the head above the neck
    for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")):
        right, left = length(body, f"right_{a}", f"right_{b}"), length(body, f"left_{a}", f"left_{b}")
        assert abs(right - left) / max(right, left) < 0.35, (a, b)


def assert_on_canvas(done: pc.CompletedBody) -> None:
    """Every joint inside the extended canvas, with the documented margin where the canvas grew."""
    ext, (width, height) = done.body_in_extended(), done.extended_size
    margin = pc.MARGIN * float(np.ptp(done.body[:, 1]))
    left, top, right, bottom = done.padding
    assert (ext[:, 0] >= 0).all() and (ext[:, 0] < width).all() and (ext[:, 1] >= 0).all()
    assert (ext[:, 1] < height).all()
    if top:
        assert ext[:, 1].min() >= margin + pc.CROWN * shoulders(done.body) - 0.01
    if bottom:
        assert ext[:, 1].max() <= height - margin + 0.01
    if left:
        assert ext[:, 0].min() >= margin - 0.01
    if right:
        assert ext[:, 0].max() <= width - margin + 0.01


def limb_colours_drawn(image: Image.Image) -> set[int]:
    """The limbs (indices into LIMBS) whose darkened colour appears anywhere in a rendered pose."""
    packed = np.asarray(image).astype(np.int32) @ [65536, 256, 1]
    present = set(np.unique(packed).tolist())
    darkened = [tuple(int(c * LIMB_DARKEN) for c in COLOURS[i]) for i in range(len(LIMBS))]
    return {i for i, (r, g, b) in enumerate(darkened) if (r << 16) + (g << 8) + b in present}


# ---------------------------------------------------------------------------------------------- real photos


@pytest.fixture(scope="module")
def mediapipe_pose():
    """mediapipe's pose model, loaded once for this module and freed after it."""
    require_module("mediapipe", reason="the real-photo cases find the body with mediapipe")
    yield openpose.body_keypoints_from_mediapipe
    openpose.unload()


@pytest.fixture(scope="module")
def astronaut(photo_astronaut, mediapipe_pose):
    """(pixels, key points): scikit-image's astronaut, a half-body photo (mediapipe: head, shoulders, one arm)."""
    pixels = to_array(load_photo(photo_astronaut).image)
    return pixels, mediapipe_pose(pixels)


@pytest.fixture(scope="module")
def astronaut_head(astronaut, mediapipe_pose):
    """(pixels, key points) of the astronaut cropped to head and shoulders."""
    crop = np.ascontiguousarray(astronaut[0][HEAD_AND_SHOULDERS])
    return crop, mediapipe_pose(crop)


def test_a_half_body_photo_is_completed_without_moving_what_was_seen(astronaut):
    pixels, found = astronaut
    seen = found[:, 2] > 0
    assert seen[[J["nose"], J["right_shoulder"], J["left_shoulder"]]].all() and not seen[J["left_ankle"]]
    done = pc.complete_body(found, (512, 512))
    assert_kept(found, done)
    assert {"right_hip", "left_knee", "left_ankle"} <= set(done.completed)
    assert_plausible(done.body)
    left, top, right, bottom = done.padding
    assert bottom > 300 and done.extended_size == (512 + left + right, 512 + top + bottom)
    assert_on_canvas(done)
    drawn = render_openpose(done.extended_size, [done.body_in_extended()])
    assert limb_colours_drawn(drawn) == set(range(17))  # all 17 limbs are drawn
    assert limb_colours_drawn(render_openpose((512, 512), [found])) < set(range(17))  # the photo alone: not all


def test_a_head_and_shoulders_crop_is_completed_and_needs_more_canvas(astronaut, astronaut_head):
    crop, found = astronaut_head
    assert found is not None and found[[J["right_shoulder"], J["left_shoulder"]], 2].all()
    done = pc.complete_body(found, (crop.shape[1], crop.shape[0]))
    assert_kept(found, done)
    assert_plausible(done.body)
    assert_on_canvas(done)
    assert limb_colours_drawn(render_openpose(done.extended_size, [done.body_in_extended()])) == set(range(17))
    half = pc.complete_body(astronaut[1], (512, 512))
    assert done.padding[3] > half.padding[3] and sum(done.padding) > sum(half.padding)  # tighter crop, more canvas
    ratio = (done.extended_size[0] * done.extended_size[1]) / (crop.shape[0] * crop.shape[1])
    assert ratio > (half.extended_size[0] * half.extended_size[1]) / 512**2


def test_detect_and_complete_and_the_outpainting_canvas_of_a_real_photo(photo_astronaut, astronaut):
    pixels, found = astronaut
    photo = Image.fromarray(pixels)
    done = pc.detect_and_complete(photo)
    assert np.array_equal(done.body, pc.complete_body(found, (512, 512)).body)
    extended, mask = pc.extend_canvas(photo, done.padding)
    left, top = done.padding[:2]
    assert extended.size == mask.size == done.extended_size
    assert np.array_equal(np.asarray(extended)[top:top + 512, left:left + 512], pixels)
    border = np.asarray(mask) > 0
    assert not border[top:top + 512, left:left + 512].any()
    assert border.sum() == done.extended_size[0] * done.extended_size[1] - 512 * 512
    with pytest.raises(pc.PoseError, match="No person was found") as caught:
        pc.detect_and_complete(np.full((128, 128, 3), 90, np.uint8))
    assert caught.value.phase == "pose" and caught.value.http_status == 422 and "shoulders" in caught.value.hint


def test_without_mediapipe_detection_says_so(monkeypatch):
    monkeypatch.setattr(openpose, "available", lambda: False)
    with pytest.raises(BackendUnavailable, match="needs mediapipe") as caught:
        pc.detect_and_complete(np.zeros((64, 64, 3), np.uint8))
    assert "give a skeleton" in caught.value.hint


# ---------------------------------------------------------------------------------------------- the rule


def synthetic(**joints) -> np.ndarray:
    body = np.zeros((18, 3), np.float32)
    for name, (x, y) in joints.items():
        body[J[name]] = (x, y, 1)
    return body


def rotated(points: np.ndarray, degrees: float, centre=(0.0, 0.0)) -> np.ndarray:
    angle, centre = math.radians(degrees), np.asarray(centre)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (np.asarray(points, np.float64) - centre) @ rotation.T + centre


@pytest.mark.parametrize("face", [
    {"nose": (100, 60), "right_eye": (92, 52), "left_eye": (108, 52)},  # eye distance 16 = 0.16 S
    {"right_eye": (92, 50), "left_eye": (108, 50)},  # no nose: it is placed 0.10 S below the eyes
    {"right_ear": (82, 55), "left_ear": (118, 55)},  # ear distance 36 = 0.36 S; nose 0.05 S below them
])
def test_only_a_face_anchors_a_whole_body(face):
    body = synthetic(**face)
    done = pc.complete_body(body, (200, 150))
    assert_kept(body, done)
    assert shoulders(done.body) == pytest.approx(100, rel=1e-4)
    np.testing.assert_allclose(done.body[J["nose"], :2], [100, 60], atol=1e-3)
    np.testing.assert_allclose(done.body[J["neck"], :2], [100, 60 + 55], atol=1e-3)
    assert_plausible(done.body)
    assert_on_canvas(done)
    assert done.padding[3] > 300 and done.completed[0] in ("nose", "neck")


def test_only_shoulders_give_head_hips_and_hanging_limbs():
    body = synthetic(right_shoulder=(150, 200), left_shoulder=(250, 200))
    done = pc.complete_body(body, (400, 300))
    assert_kept(body, done)
    assert_plausible(done.body)
    np.testing.assert_allclose(done.body[J["neck"], :2], [200, 200], atol=1e-4)
    np.testing.assert_allclose(done.body[J["nose"], :2], [200, 145], atol=1e-4)
    np.testing.assert_allclose((done.body[J["right_hip"], :2] + done.body[J["left_hip"], :2]) / 2, [200, 330],
                               atol=1e-4)
    wrist = done.body[J["right_wrist"], :2] - done.body[J["right_shoulder"], :2]  # the arm hangs, turned outward
    assert math.degrees(math.atan2(-wrist[0], wrist[1])) == pytest.approx(pc.ARM_OUTWARD_DEGREES, abs=1e-3)
    assert done.body[J["left_wrist"], 0] - 250 == pytest.approx(-wrist[0], abs=1e-3)  # both sides alike


def test_one_arm_seen_the_other_is_its_mirror_image():
    body = synthetic(right_shoulder=(60, 100), left_shoulder=(160, 100), right_elbow=(40, 170),
                     right_wrist=(75, 215))
    done = pc.complete_body(body, (220, 400))
    assert_kept(body, done)
    np.testing.assert_allclose(done.body[J["left_elbow"], :2], [180, 170], atol=1e-4)  # reflected about x = 110
    np.testing.assert_allclose(done.body[J["left_wrist"], :2], [145, 215], atol=1e-4)
    assert_plausible(done.body)


def test_one_leg_seen_the_other_is_mirrored_about_a_tilted_axis():
    upright = synthetic(right_shoulder=(-50, 0), left_shoulder=(50, 0), right_hip=(-33, 130), left_hip=(33, 130),
                        left_knee=(55, 235))
    expected_right_knee = np.array([-55.0, 235.0])
    for degrees in (0, 20, -35):
        body = upright.copy()
        body[:, :2] = rotated(upright[:, :2], degrees) + [300, 200]
        body[upright[:, 2] == 0, :2] = 0
        done = pc.complete_body(body, (600, 600))
        assert_kept(body, done)
        np.testing.assert_allclose(done.body[J["right_knee"], :2],
                                   rotated(expected_right_knee[None], degrees)[0] + [300, 200], atol=1e-3)


def test_a_forearm_continues_its_upper_arm():
    body = synthetic(right_shoulder=(60, 100), left_shoulder=(160, 100), right_elbow=(30, 160))
    done = pc.complete_body(body, (220, 400))
    upper = done.body[J["right_elbow"], :2] - done.body[J["right_shoulder"], :2]
    fore = done.body[J["right_wrist"], :2] - done.body[J["right_elbow"], :2]
    assert np.allclose(upper / np.linalg.norm(upper), fore / np.linalg.norm(fore), atol=1e-5)
    assert np.linalg.norm(fore) == pytest.approx(pc.FOREARM * 100, rel=1e-4)
    left = done.body[J["left_elbow"], :2] - done.body[J["left_shoulder"], :2]
    np.testing.assert_allclose(left, upper * [-1, 1], atol=1e-4)  # the bare left arm mirrors the completed right


def test_a_rotated_body_is_completed_the_same_way_rotated():
    upright = synthetic(right_shoulder=(-50, 0), left_shoulder=(50, 0), right_hip=(-30, 135), left_hip=(30, 135))
    reference = pc.complete_body(upright, (100, 100)).body
    for degrees in (15, -30, 60):
        body = upright.copy()
        body[:, :2] = rotated(upright[:, :2], degrees, (0, 60)) + [200, 200]
        body[upright[:, 2] == 0, :2] = 0
        done = pc.complete_body(body, (400, 400))
        assert_kept(body, done)
        np.testing.assert_allclose(done.body[:, :2], rotated(reference[:, :2], degrees, (0, 60)) + [200, 200],
                                   atol=1e-3)


def test_a_tilted_torso_keeps_its_axis_and_a_mid_joint_bends_between_its_ends():
    body = synthetic(right_shoulder=(100, 100), left_shoulder=(180, 160), right_hip=(40, 200), left_hip=(120, 260),
                     right_ankle=(10, 330))  # leaning; the right knee missing between hip and ankle
    done = pc.complete_body(body, (300, 400))
    assert_kept(body, done)
    knee = done.body[J["right_knee"], :2]
    assert np.linalg.norm(knee - done.body[J["right_hip"], :2]) == pytest.approx(pc.THIGH * 100, rel=1e-3)
    assert np.linalg.norm(knee - done.body[J["right_ankle"], :2]) == pytest.approx(pc.SHIN * 100, rel=1e-3)
    across = done.body[J["left_hip"], :2] - done.body[J["right_hip"], :2]
    assert float(np.dot(knee - done.body[J["right_hip"], :2], across)) < 0  # bent outward, away from the middle
    neck_to_hips = (done.body[J["right_hip"], :2] + done.body[J["left_hip"], :2]) / 2 - done.body[J["neck"], :2]
    nose = done.body[J["nose"], :2] - done.body[J["neck"], :2]
    assert float(np.dot(nose, neck_to_hips)) / (np.linalg.norm(nose) * np.linalg.norm(neck_to_hips)) < -0.99


def test_a_person_seen_from_behind_stands_upright():
    body = synthetic(right_shoulder=(250, 200), left_shoulder=(150, 200))  # their right shoulder on the image's right
    done = pc.complete_body(body, (400, 300))
    assert_kept(body, done)
    assert_plausible(done.body)
    assert done.body[J["right_eye"], 0] > done.body[J["left_eye"], 0]
    assert done.body[J["right_wrist"], 0] > 250 and done.body[J["left_wrist"], 0] < 150


@pytest.mark.parametrize("joints, expected_neck", [
    ({"neck": (100, 100), "left_shoulder": (150, 100)}, (100, 100)),  # S = 2 × 50
    ({"neck": (100, 100), "right_hip": (67.5, 230)}, (100, 100)),  # S = |neck → hip| / √(1.30² + 0.325²)
    ({"right_shoulder": (50, 100)}, None),  # a lone shoulder measures nothing
])
def test_a_neck_with_one_shoulder_or_one_hip_is_enough(joints, expected_neck):
    body = synthetic(**joints)
    if expected_neck is None:
        with pytest.raises(pc.PoseError, match="nothing to measure"):
            pc.complete_body(body, (200, 200))
        return
    done = pc.complete_body(body, (200, 300))
    assert_kept(body, done)
    assert shoulders(done.body) == pytest.approx(100, rel=1e-4)
    np.testing.assert_allclose(done.body[J["nose"], :2], [100, 45], atol=1e-3)
    assert_plausible(done.body)


def test_nothing_to_measure_by_is_a_pose_error_with_a_hint():
    for body in (synthetic(nose=(10, 10)), synthetic(), synthetic(right_shoulder=(5, 5), left_shoulder=(5, 5))):
        with pytest.raises(pc.PoseError, match="nothing to measure") as caught:
            pc.complete_body(body, (100, 100))
        assert caught.value.http_status == 422 and caught.value.phase == "pose"
        assert caught.value.hint == "Use a photo where the head or the shoulders are visible, or give a skeleton."
    with pytest.raises(pc.PoseError, match=r"shape \(17, 3\)"):
        pc.complete_body(np.zeros((17, 3)), (100, 100))
    with pytest.raises(pc.PoseError, match="size must be positive"):
        pc.complete_body(synthetic(right_shoulder=(0, 0), left_shoulder=(10, 0)), (0, 100))


def test_a_visible_joint_without_finite_coordinates_counts_as_missing():
    body = synthetic(right_shoulder=(150, 200), left_shoulder=(250, 200), nose=(0, 0))
    body[J["nose"], :2] = np.nan
    done = pc.complete_body(body, (400, 300))
    assert "nose" in done.completed and np.isfinite(done.body).all()
    np.testing.assert_allclose(done.body[J["nose"], :2], [200, 145], atol=1e-4)


def test_extend_canvas_marks_only_the_new_border():
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    extended, mask = pc.extend_canvas(image, (5, 0, 3, 10))
    assert extended.size == mask.size == (48, 40) and mask.mode == "L"
    pixels, border = np.asarray(extended), np.asarray(mask)
    assert (pixels[0:30, 5:45] == (200, 10, 10)).all() and (border[0:30, 5:45] == 0).all()
    assert (border[30:] == 255).all() and (border[:, :5] == 255).all() and (border[:, 45:] == 255).all()
    assert (pixels[35, 2] == 127).all()
    same, nothing = pc.extend_canvas(image, (0, 0, 0, 0), fill=(0, 0, 0))
    assert same.size == (40, 30) and not np.asarray(nothing).any()
    with pytest.raises(ValueError, match=">= 0"):
        pc.extend_canvas(image, (0, -1, 0, 0))


# ---------------------------------------------------------------------------------------------- JSON


def test_skeleton_json_round_trip_and_scaling():
    body = gallery_pose("walking", (512, 768))
    body[J["left_ear"], 2] = 0
    data = skeleton_to_json([body], (512, 768))
    flat = data["people"][0]["pose_keypoints_2d"]
    assert len(flat) == 54 and flat[-3:] == [0.0, 0.0, 0.0] and flat[2] == 1.0
    assert (data["canvas_width"], data["canvas_height"]) == (512, 768)
    bodies, size = skeleton_from_json(json.dumps(data))
    seen = body[:, 2] > 0
    assert size == (512, 768) and len(bodies) == 1 and bodies[0].dtype == np.float32
    assert np.allclose(bodies[0][seen, :2], body[seen, :2], atol=0.01) and bodies[0][J["left_ear"], 2] == 0
    assert skeleton_from_json(data)[1] == (512, 768)  # a dict reads the same as its text
    scaled = scale_skeleton(bodies[0], (512, 768), (256, 256))  # ratio 1/3, the spare width split evenly
    assert np.allclose(scaled[:, :2], bodies[0][:, :2] / 3 + [(256 - 512 / 3) / 2, 0], atol=1e-3)
    assert np.array_equal(scaled[:, 2], bodies[0][:, 2])


def test_a_completed_real_pose_passes_through_json(astronaut):
    done = pc.complete_body(astronaut[1], (512, 512))
    bodies, size = skeleton_from_json(json.dumps(skeleton_to_json([done.body_in_extended()], done.extended_size)))
    assert size == done.extended_size
    require_joints(bodies[0], KEYPOINTS)
    assert np.allclose(bodies[0][:, :2], done.body_in_extended()[:, :2], atol=0.01)


OK = {"canvas_width": 10, "canvas_height": 10}


def people(*flat) -> dict:
    return {**OK, "people": [{"pose_keypoints_2d": list(f)} for f in flat]}


@pytest.mark.parametrize("data, words", [
    ("{oops", "not JSON"),
    ("[1, 2]", "must be a JSON object, not list"),
    ({"canvas_height": 10, "people": []}, "has no canvas_width"),
    ({"canvas_width": 10, "people": []}, "has no canvas_height"),
    ({"canvas_width": 0, "canvas_height": 10, "people": []}, "canvas_width must be a whole number"),
    ({"canvas_width": 10, "canvas_height": -4, "people": []}, "canvas_height must be a whole number"),
    ({"canvas_width": 10, "canvas_height": 10.5, "people": []}, "canvas_height must be a whole number"),
    ({"canvas_width": "10", "canvas_height": 10, "people": []}, "canvas_width must be a whole number"),
    ({**OK, "people": []}, "no people"),
    ({**OK}, "no people"),
    ({**OK, "people": ["x"]}, "people[0] must be an object, not str"),
    (people([1, 2, 1]), "people[0].pose_keypoints_2d has 3 numbers; it needs 54"),
    (people([0] * 57), "has 57 numbers"),
    ({**OK, "people": [{}]}, "has no numbers"),
    (people([0] * 6 + ["x", 1, 1] + [0] * 45), "the right_shoulder joint is ['x', 1, 1]"),
    (people([0] * 51 + [float("nan"), 1, 1]), "the left_ear joint"),
    ('{"canvas_width": 10, "canvas_height": 10, "people": [{"pose_keypoints_2d": [Infinity, 1, 1'
     + ", 0" * 51 + "]}]}", "the nose joint is [inf, 1, 1]"),
    (people([0] * 3 + [1, 2, None] + [0] * 48), "the neck joint"),
    (people([500, 5, 1] + [0] * 51), "nose joint (500, 5) lies far outside the 10×10 canvas"),
    (people([0] * 54, [5, -25, 1] + [0] * 51), "people[1]: the nose joint (5, -25) lies far outside"),
])
def test_bad_skeleton_json_says_what_is_wrong(data, words):
    with pytest.raises(SkeletonError, match=re.escape(words)) as caught:
        skeleton_from_json(data)
    assert caught.value.phase == "pose" and caught.value.http_status == 422


def test_far_off_invisible_joints_and_off_canvas_limbs_are_fine():
    bodies, _ = skeleton_from_json(people([500, 5, 0] + [19, -9, 1] + [0] * 48))  # within one canvas size
    assert bodies[0][0, 2] == 0 and tuple(bodies[0][1]) == (19, -9, 1)


def test_missing_joints_are_named():
    body = gallery_pose("standing", (100, 200))
    body[[J["right_wrist"], J["left_ankle"]], 2] = 0
    with pytest.raises(SkeletonError, match=re.escape("The skeleton has no right_wrist, left_ankle: a pose swap needs "
                                                      "the whole body.")) as caught:
        require_joints(body, KEYPOINTS)
    assert "pose editor" in caught.value.hint and "complete_pose" in caught.value.hint
    with pytest.raises(SkeletonError, match="no left_ankle: a walk needs feet"):
        require_joints(body, ["left_ankle", "nose"], why="a walk needs feet")
    body[J["nose"], 0] = np.nan
    with pytest.raises(SkeletonError, match="no nose"):
        require_joints(body, ["nose", "neck"])
    require_joints(body, ["neck", "left_wrist"])
    with pytest.raises(ValueError, match="left_toe"):
        require_joints(body, ["left_toe"])


# ---------------------------------------------------------------------------------------------- gallery


def test_gallery_poses_are_whole_bodies_inside_their_canvas():
    names = pose_gallery()
    assert 4 <= len(names) <= 6 and len(set(names)) == len(names) and "standing" in names
    for name in names:
        for width, height in ((512, 768), (768, 512), (300, 300)):
            body = gallery_pose(name, (width, height))
            assert body.shape == (18, 3) and body[:, 2].all()
            assert (body[:, 0] > 0).all() and (body[:, 0] < width).all()
            assert (body[:, 1] > 0).all() and (body[:, 1] < height).all()
            assert_plausible(body)
            assert limb_colours_drawn(render_openpose((width, height), [body])) == set(range(17)), name
        body = gallery_pose(name, (512, 768))
        assert 0.7 * 768 < np.ptp(body[:, 1]) <= 0.85 * 768  # the joints span most of the 85 % body height
        middle = (body[:, 1].max() + body[:, 1].min()) / 2
        assert abs(middle - 768 / 2) < 0.05 * 768 and abs((body[:, 0].max() + body[:, 0].min()) / 2 - 256) < 1e-3
    narrow = gallery_pose("hands_on_hips", (100, 400))  # too narrow for 85 %: the width decides the scale
    assert np.ptp(narrow[:, 0]) <= 0.9 * 100 + 1e-3 and (narrow[:, 0] > 0).all()
    with pytest.raises(SkeletonError, match="no pose 'moonwalk'") as caught:
        gallery_pose("moonwalk", (100, 100))
    assert caught.value.hint == "Poses: " + ", ".join(names) + "."
    with pytest.raises(SkeletonError, match="at least 1×1"):
        gallery_pose("standing", (0, 100))
