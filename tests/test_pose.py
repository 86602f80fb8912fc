"""OpenPose condition images drawn from landmarks (easyphoto.pose): geometry of the face-based estimate, the
renderer's colours and visibility rules, and mediapipe's body on a real photo where mediapipe is installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from easyphoto.pose import openpose as op
from easyphoto.pose.openpose import (
    COLOURS,
    KEYPOINTS,
    L_EAR,
    L_EYE,
    L_SHOULDER,
    LIMBS,
    NECK,
    NOSE,
    R_EAR,
    R_EYE,
    R_SHOULDER,
    body_keypoints_from_face,
    render_from_face,
    render_openpose,
)

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None

# A frontal upright face: eyes level, nose below their midpoint, mouth below the nose.
FACE5 = np.array([[80, 100], [120, 100], [100, 120], [85, 140], [115, 140]], np.float32)
BOX = (60.0, 70.0, 140.0, 170.0)  # x0, y0, x1, y1: 80 wide, 100 tall
HEAD = [NOSE, NECK, R_EYE, L_EYE, R_EAR, L_EAR]


def pixels(image) -> np.ndarray:
    return np.asarray(image)


def at(image, point) -> tuple[int, ...]:
    x, y = (int(round(c)) for c in point[:2])
    return tuple(int(c) for c in pixels(image)[y, x])


def rotate(points: np.ndarray, degrees: float, centre) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (np.asarray(points, np.float64) - centre) @ rotation.T + centre


def test_tables_follow_the_coco18_convention():
    assert len(KEYPOINTS) == len(COLOURS) == 18
    assert len(LIMBS) == 17 and len(set(LIMBS)) == 17
    assert COLOURS[NOSE] == (255, 0, 0) and COLOURS[-1] == (255, 0, 85)
    # Every joint is reached from the neck: the 17 limbs form a tree over the 18 joints.
    reached, frontier = {NECK}, [NECK]
    while frontier:
        joint = frontier.pop()
        for a, b in LIMBS:
            for here, there in ((a, b), (b, a)):
                if here == joint and there not in reached:
                    reached.add(there)
                    frontier.append(there)
    assert reached == set(range(18))


def test_render_size_mode_and_black_background():
    image = render_openpose((320, 200), [])
    assert image.size == (320, 200) and image.mode == "RGB"
    assert not pixels(image).any()
    drawn = render_openpose((320, 200), [body_keypoints_from_face(FACE5, BOX)])
    assert drawn.size == (320, 200) and pixels(drawn).any()
    assert not pixels(drawn)[:, 200:].any()  # nothing far from the face


def test_frontal_face_gives_nose_eyes_ears_and_neck():
    body = body_keypoints_from_face(FACE5, BOX)
    assert body.shape == (18, 3)
    np.testing.assert_allclose(body[NOSE], [100, 120, 1])
    np.testing.assert_allclose(body[R_EYE], [80, 100, 1])  # the person's right eye is on the image's left
    np.testing.assert_allclose(body[L_EYE], [120, 100, 1])
    assert body[R_EAR, 0] < 80 - 5 and body[L_EAR, 0] > 120 + 5
    assert body[R_EAR, 1] == pytest.approx(100) and body[L_EAR, 1] == pytest.approx(100)
    assert body[R_EAR, 0] + body[L_EAR, 0] == pytest.approx(200)  # symmetric about the face
    assert body[NECK, 0] == pytest.approx(100) and body[NECK, 1] > 140 + 50  # well below the mouth
    assert (body[HEAD, 2] == 1).all()
    others = [i for i in range(18) if i not in HEAD]
    assert (body[others, 2] == 0).all()


def test_rotated_face_rotates_the_keypoints():
    centre = np.array([100.0, 120.0])
    square = (50.0, 70.0, 150.0, 170.0)  # an axis-aligned square box fits any in-plane rotation the same way
    upright = body_keypoints_from_face(FACE5, square)
    for degrees in (25, -40, 90, 180):
        turned = rotate(FACE5, degrees, centre)
        # The detector's order is by image position: the eye (and mouth corner) on the image's left first.
        eyes = sorted(turned[:2].tolist())
        mouth = sorted(turned[3:].tolist())
        given = np.array([eyes[0], eyes[1], turned[2], mouth[0], mouth[1]])
        body = body_keypoints_from_face(given, square)
        np.testing.assert_allclose(body[HEAD, :2], rotate(upright[HEAD, :2], degrees, centre), atol=1e-3)
        np.testing.assert_array_equal(body[:, 2], upright[:, 2])
    # Upside down, the person's right eye is on the image's right.
    body = body_keypoints_from_face(given, square)
    assert body[R_EYE, 0] > body[L_EYE, 0] and body[NECK, 1] < body[NOSE, 1]


def test_rotation_by_90_degrees_with_the_box_turned_too():
    centre = np.array([100.0, 120.0])
    upright = body_keypoints_from_face(FACE5, BOX)
    turned = rotate(FACE5, 90, centre)  # eyes now stacked vertically, face looking sideways
    given = np.array([turned[0], turned[1], turned[2], turned[3], turned[4]])
    box = (centre[0] - 50, centre[1] - 40, centre[0] + 50, centre[1] + 40)  # BOX rotated about its centre
    body = body_keypoints_from_face(given, box)
    np.testing.assert_allclose(body[HEAD, :2], rotate(upright[HEAD, :2], 90, centre), atol=1e-3)


def test_mirrored_face_mirrors_the_keypoints():
    upright = body_keypoints_from_face(FACE5, BOX)
    mirrored = FACE5.copy()
    mirrored[:, 0] = 300 - mirrored[:, 0]
    given = mirrored[[1, 0, 2, 4, 3]]  # re-sorted into image-left-first order
    box = (300 - BOX[2], BOX[1], 300 - BOX[0], BOX[3])
    body = body_keypoints_from_face(given, box)
    swap = {R_EYE: L_EYE, L_EYE: R_EYE, R_EAR: L_EAR, L_EAR: R_EAR, NOSE: NOSE, NECK: NECK}
    for joint, source in swap.items():
        np.testing.assert_allclose(body[joint, :2], [300 - upright[source, 0], upright[source, 1]], atol=1e-3)


def test_profile_hides_the_far_ear():
    turned_left = FACE5.copy()
    turned_left[2] = [117, 120]  # nose almost under the person's left eye (image right)
    body = body_keypoints_from_face(turned_left, BOX)
    assert body[L_EAR, 2] == 0 and body[R_EAR, 2] == 1
    turned_right = FACE5.copy()
    turned_right[2] = [83, 120]
    body = body_keypoints_from_face(turned_right, BOX)
    assert body[R_EAR, 2] == 0 and body[L_EAR, 2] == 1


def spread_body() -> np.ndarray:
    """A standing figure on a 512 canvas whose joints are all at least 30 px apart."""
    points = [
        (256, 90), (256, 160), (196, 165), (160, 250), (140, 330), (316, 165), (352, 250), (372, 330),
        (220, 300), (215, 390), (210, 480), (292, 300), (297, 390), (302, 480), (236, 70), (276, 70),
        (206, 85), (306, 85),
    ]
    return np.array([(x, y, 1) for x, y in points], np.float32)


def test_joint_and_limb_colours_match_the_table():
    body = spread_body()
    image = render_openpose((512, 512), [body])
    for joint in range(18):
        assert at(image, body[joint]) == COLOURS[joint], KEYPOINTS[joint]
    for limb in (3, 7, 8, 10):  # midpoints that no other limb or joint covers
        a, b = LIMBS[limb]
        middle = (body[a, :2] + body[b, :2]) / 2
        assert at(image, middle) == tuple(int(c * 0.6) for c in COLOURS[limb]), (KEYPOINTS[a], KEYPOINTS[b])
    packed = pixels(image).astype(np.int32) @ [65536, 256, 1]  # one int per RGB colour: a fast unique
    colours = {(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in np.unique(packed)}
    allowed = {(0, 0, 0), *COLOURS, *(tuple(int(c * 0.6) for c in colour) for colour in COLOURS)}
    assert colours <= allowed


def test_invisible_points_and_their_limbs_are_not_drawn():
    body = spread_body()
    body[R_SHOULDER, 2] = 0
    body[L_SHOULDER, :2] = np.nan  # NaN counts as invisible whatever the flag says
    image = render_openpose((512, 512), [body])
    for joint in (R_SHOULDER, L_SHOULDER):
        assert at(image, spread_body()[joint]) == (0, 0, 0)
    for joint in (NECK, NOSE):
        assert at(image, body[joint]) == COLOURS[joint]
    neck = body[NECK, :2]
    for shoulder in (R_SHOULDER, L_SHOULDER):  # the neck→shoulder limbs are gone, arms are still there
        middle = (neck + spread_body()[shoulder, :2]) / 2
        assert at(image, middle) == (0, 0, 0)
    nothing = body.copy()
    nothing[:, 2] = 0
    assert not pixels(render_openpose((512, 512), [nothing])).any()


def test_stick_width_scales_with_the_short_side():
    def radius(size):
        body = op.empty_body()
        body[NOSE] = (size[0] / 2, size[1] / 2, 1)
        row = pixels(render_openpose(size, [body]))[int(size[1] / 2)]
        return (row.any(axis=1)).sum() / 2

    assert radius((512, 768)) == pytest.approx(4, abs=1)
    assert radius((1024, 1536)) == pytest.approx(8, abs=1)
    assert radius((256, 256)) == pytest.approx(2, abs=1)
    body = op.empty_body()
    body[NOSE] = (50, 50, 1)
    wide = pixels(render_openpose((100, 100), [body], stick_width=10))[50]
    assert wide.any(axis=1).sum() == pytest.approx(21, abs=1)


def test_face_points_are_white_dots():
    face = np.array([[50, 60], [150, 80], [np.nan, 10]], np.float32)
    image = render_openpose((200, 120), [], [face])
    assert at(image, (50, 60)) == (255, 255, 255) and at(image, (150, 80)) == (255, 255, 255)
    assert set(np.unique(pixels(image))) <= {0, 255}


def test_render_from_face_without_mediapipe(monkeypatch):
    monkeypatch.setattr(op, "available", lambda: False)
    assert op.body_keypoints_from_mediapipe(np.zeros((64, 64, 3), np.uint8)) is None
    photo = np.full((240, 200, 3), 128, np.uint8)
    image = render_from_face((200, 240), FACE5, BOX, photo)
    expected = render_openpose((200, 240), [body_keypoints_from_face(FACE5, BOX)])
    assert image.size == (200, 240)
    np.testing.assert_array_equal(pixels(image), pixels(expected))
    assert at(image, FACE5[2]) == COLOURS[NOSE]
    np.testing.assert_array_equal(pixels(render_from_face((200, 240), FACE5, BOX)), pixels(expected))


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe is not installed in this pin set")
def test_mediapipe_body_on_a_real_photo(photo_astronaut):
    from PIL import Image

    photo = np.asarray(Image.open(photo_astronaut).convert("RGB"))
    # The astronaut's face as the detectors report it (512 x 512 photo).
    face5 = np.array([[203, 104], [248, 106], [224, 132], [204, 148], [241, 150]], np.float32)
    box = (174.0, 68.0, 278.0, 172.0)
    try:
        body = op.body_keypoints_from_mediapipe(photo)
        assert body is not None and body.shape == (18, 3)
        assert body[R_SHOULDER, 2] == 1 and body[L_SHOULDER, 2] == 1 and body[NECK, 2] == 1
        assert body[R_SHOULDER, 0] < body[L_SHOULDER, 0]  # facing the camera: her right shoulder on the left
        assert body[R_SHOULDER, 1] > box[3] and body[L_SHOULDER, 1] > box[3]  # shoulders below the face
        assert body[NOSE, 2] == 1 and op._inside(body[NOSE, :2], box)
        image = render_from_face((512, 512), face5, box, photo)
        assert at(image, body[R_SHOULDER]) == COLOURS[R_SHOULDER]  # mediapipe's body was drawn
        # A half-size copy of the photo gives the same body, scaled back to the output size.
        half = np.asarray(Image.fromarray(photo).resize((256, 256)))
        image = render_from_face((512, 512), face5, box, half)
        assert pixels(image)[int(body[L_SHOULDER, 1]) - 6:int(body[L_SHOULDER, 1]) + 7,
                             int(body[L_SHOULDER, 0]) - 6:int(body[L_SHOULDER, 0]) + 7].any()
        # A face box elsewhere in the picture is another person: the face-only estimate is drawn instead.
        elsewhere = face5 + [250, 250]
        other_box = (box[0] + 250, box[1] + 250, box[2] + 250, box[3] + 250)
        image = render_from_face((512, 512), elsewhere, other_box, photo)
        np.testing.assert_array_equal(
            pixels(image), pixels(render_openpose((512, 512), [body_keypoints_from_face(elsewhere, other_box)])))
    finally:
        op.unload()
    assert op._model is None
