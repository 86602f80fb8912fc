"""The face stack on real photos (dlib + mediapipe, offline) and the ONNX loader path on tiny ONNX models."""

import itertools

import numpy as np
import pytest

from easyphoto.errors import BackendUnavailable
from easyphoto.face import stacks
from easyphoto.face.align import ARCFACE_112, align_face, similarity_transform
from easyphoto.face.dlib_stack import DlibDetector, DlibEmbedder
from easyphoto.face.mediapipe_stack import MediapipeDetector, MediapipeMatter, MediapipeParser
from easyphoto.face.onnx_stack import ArcFaceEmbedder, ScrfdDetector, anchor_centres, decode_scrfd
from easyphoto.face.quality import measure, pose_from_landmarks
from easyphoto.face.types import Face, cosine
from easyphoto.imageops import load_photo, to_array
from easyphoto.store import Paths


def rgb(path):
    return to_array(load_photo(path).image)


@pytest.fixture(scope="module")
def detector():
    return DlibDetector()


@pytest.fixture(scope="module")
def embedder():
    return DlibEmbedder()


@pytest.fixture(scope="module")
def embeddings(detector, embedder, photos_same_man, photo_other_person, photo_astronaut, photo_t1):
    """Largest-face embedding of every package photo: (name, person, vector)."""
    people = [*((p, "man") for p in photos_same_man), (photo_other_person, "other"),
              (photo_astronaut, "astronaut"), (photo_t1, "t1-largest")]
    result = []
    for path, person in people:
        image = rgb(path)
        face = detector.detect(image)[0]
        result.append((path.name, person, embedder.embed(image, face)))
    return result


def test_embedder_calibration_separates_same_and_different_people(embedder, embeddings):
    same, different = [], []
    for (_, pa, a), (_, pb, b) in itertools.combinations(embeddings, 2):
        (same if pa == pb else different).append(cosine(a, b))
    assert len(same) == 3 and len(different) == 12
    assert min(same) >= embedder.same_threshold, (same, embedder.same_threshold)
    assert max(different) < embedder.different_threshold, (different, embedder.different_threshold)


def test_embeddings_are_unit_length(embeddings):
    for name, _, vector in embeddings:
        assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-5, name


def test_group_photo_faces_largest_first(detector, photo_t1):
    faces = detector.detect(rgb(photo_t1))
    assert len(faces) >= 5
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for f in faces:  # landmarks sit inside (or at the edge of) their own box
        x0, y0, x1, y1 = f.box
        assert (f.landmarks[:3, 0] > x0 - 5).all() and (f.landmarks[:3, 0] < x1 + 5).all()
        assert f.landmarks[0, 0] < f.landmarks[1, 0]  # left eye is left of right eye


def test_quality_measures_follow_the_image(detector, photos_same_man):
    import cv2

    image = rgb(photos_same_man[0])
    face = detector.detect(image)[0]
    sharp = measure(image, face)
    blurred = measure(cv2.GaussianBlur(image, (0, 0), 6), face)
    darker = measure((image * 0.4).astype(np.uint8), face)
    assert blurred.sharpness < sharp.sharpness / 5
    assert darker.brightness < sharp.brightness * 0.5
    assert abs(sharp.roll) < 10 and abs(sharp.yaw) < 25 and sharp.frontalness > 0.7
    assert sharp.face_px == pytest.approx(min(face.width, face.height))


def test_pose_from_landmarks_geometry():
    level = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float32)
    assert pose_from_landmarks(level) == pytest.approx((0.0, 0.0), abs=1e-6)
    theta = np.radians(30)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    roll, yaw = pose_from_landmarks(level @ rot.T)
    assert roll == pytest.approx(30, abs=1e-4) and yaw == pytest.approx(0, abs=1e-4)
    turned = level.copy()
    turned[2, 0] += 10  # nose shifted a quarter eye-distance towards the right eye
    assert pose_from_landmarks(turned)[1] == pytest.approx(30, abs=1e-4)


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    theta, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = scale * src @ rot.T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], scale * rot, atol=1e-4) and np.allclose(matrix[:, 2], shift, atol=1e-3)
    mirrored = similarity_transform(src, src * [-1, 1])  # a reflection is never produced
    assert np.linalg.det(mirrored[:, :2]) > 0


def test_aligned_face_puts_landmarks_on_the_template(detector, photos_same_man):
    image = rgb(photos_same_man[0])
    face = detector.detect(image)[0]
    aligned = align_face(image, face.landmarks, 112)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    matrix = similarity_transform(face.landmarks, ARCFACE_112)
    mapped = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped[:2] - ARCFACE_112[:2]).max() < 8  # the eyes land near the template's eyes


def test_mediapipe_masks_and_matte(detector, photos_same_man):
    image = rgb(photos_same_man[0])
    face = detector.detect(image)[0]
    masks = MediapipeParser().parse(image, face)
    assert masks.face.shape == image.shape[:2] and masks.face.dtype == np.uint8
    face_area, skin_area = (masks.face > 0).sum(), (masks.skin > 0).sum()
    assert 0.3 * face.area < face_area < 3 * face.area
    assert 0.5 * face_area < skin_area < face_area  # eyes, brows and lips are cut out of the skin
    assert not ((masks.skin > 0) & (masks.face == 0)).any()
    matte = MediapipeMatter().matte(image)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    assert matte[y0:y1, x0:x1].mean() > 0.8 and matte[:40, :40].mean() < 0.2


def test_mediapipe_detector_agrees_with_dlib(detector, photos_same_man):
    image = rgb(photos_same_man[0])
    ours, theirs = detector.detect(image)[0], MediapipeDetector().detect(image)[0]
    centre = lambda f: np.array([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2])  # noqa: E731
    assert np.linalg.norm(centre(ours) - centre(theirs)) < 0.25 * ours.width


# ------------------------------------------------------------------------------------ ONNX loader path


def test_scrfd_preprocess_letterboxes_and_normalises(tiny_scrfd_onnx):
    det = ScrfdDetector(tiny_scrfd_onnx)
    image = np.full((300, 600, 3), 255, np.uint8)
    blob, scale = det.preprocess(image)
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32 and scale == pytest.approx(640 / 600)
    assert blob[0, :, 0, 0] == pytest.approx([(255 - 127.5) / 128] * 3)
    assert blob[0, :, 639, 0] == pytest.approx([-127.5 / 128] * 3)  # padding below the image


def test_scrfd_runs_on_the_tiny_model_with_real_shapes(tiny_scrfd_onnx, photos_same_man):
    faces = ScrfdDetector(tiny_scrfd_onnx, score_threshold=0.0).detect(rgb(photos_same_man[0]))
    assert faces and all(f.landmarks.shape == (5, 2) for f in faces)


def test_scrfd_decoding_places_a_box_where_the_outputs_say():
    size = 640
    outputs = []
    for stride in (8, 16, 32):
        n = (size // stride) ** 2 * 2
        outputs.append(np.zeros((n, 1), np.float32))
    for stride in (8, 16, 32):
        outputs.append(np.zeros(((size // stride) ** 2 * 2, 4), np.float32))
    for stride in (8, 16, 32):
        outputs.append(np.zeros(((size // stride) ** 2 * 2, 10), np.float32))
    centres = anchor_centres(size, 16)
    anchor = int(np.where((centres == [320, 160]).all(1))[0][0])
    outputs[1][anchor] = 0.9
    outputs[4][anchor] = [2, 3, 4, 5]  # distances in stride units
    outputs[7][anchor] = np.arange(10) / 10
    boxes, points, scores = decode_scrfd(outputs, size, 0.5)
    assert boxes.tolist() == [[320 - 32, 160 - 48, 320 + 64, 160 + 80]] and scores.tolist() == [pytest.approx(0.9)]
    assert points[0, 1].tolist() == pytest.approx([320 + 0.2 * 16, 160 + 0.3 * 16])


def test_arcface_embedder_on_the_tiny_model(tiny_arcface_onnx, tiny_scrfd_onnx, detector, photos_same_man):
    image = rgb(photos_same_man[0])
    face = detector.detect(image)[0]
    embedder = ArcFaceEmbedder(tiny_arcface_onnx)
    vector = embedder.embed(image, face)
    assert vector.shape == (512,) and embedder.dim == 512 and abs(np.linalg.norm(vector) - 1) < 1e-5
    white = ArcFaceEmbedder.preprocess(np.full((112, 112, 3), 255, np.uint8))
    assert white.shape == (1, 3, 112, 112) and np.allclose(white, 1.0)
    with pytest.raises(ValueError, match="N×3×112×112"):
        ArcFaceEmbedder(tiny_scrfd_onnx).embed(image, face)


def test_stack_choice_by_availability(tmp_path, tiny_scrfd_onnx, tiny_arcface_onnx):
    paths = Paths.standalone(tmp_path)
    assert stacks.choose("auto", paths) == "dlib"  # no insightface weights on disk
    with pytest.raises(BackendUnavailable, match="det_10g.onnx"):
        stacks.load("insightface", paths)
    folder = paths.models_root / "insightface" / "buffalo_l"
    folder.mkdir(parents=True)
    (folder / "det_10g.onnx").write_bytes(tiny_scrfd_onnx.read_bytes())
    (folder / "w600k_r50.onnx").write_bytes(tiny_arcface_onnx.read_bytes())
    assert stacks.choose("auto", paths) == "insightface"
    stack = stacks.load("auto", paths)
    assert stack.embedder.name == "insightface-arcface" and stack.parser is not None
    assert "non-commercial" in stack.describe()["embedder"]


def test_face_expanded_box_is_the_reference_crop():
    face = Face((100, 100, 200, 160), np.zeros((5, 2), np.float32), 1.0)
    assert face.expanded_box(3.0, (1000, 1000)) == (0, 40, 300, 220)
    assert face.expanded_box(3.0, (250, 200)) == (0, 40, 250, 200)
