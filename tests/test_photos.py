"""Photo selection on real package photos and hostile uploads: every photo gets a decision and a reason."""

import hashlib
import io
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import TrainConfig
from easyphoto.face import stacks
from easyphoto.imageops import UnreadableImage, load_photo
from easyphoto.store import Paths, read_json
from easyphoto.train.photos import list_photos, select_photos


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return stacks.load("dlib", Paths.standalone(tmp_path_factory.mktemp("models")))


def copy_into(folder, *paths):
    folder.mkdir(exist_ok=True)
    for p in paths:
        shutil.copy(p, folder / p.name)


def by_file(report):
    return {d.file: d for d in report.decisions}


def test_mixed_uploads(tmp_path, stack, photos_same_man, photo_other_person, photo_t1):
    uploads = tmp_path / "uploads"
    copy_into(uploads, *photos_same_man, photo_other_person, photo_t1)
    Image.new("RGB", (400, 300), (90, 140, 200)).save(uploads / "sky.png")
    report = select_photos(list_photos(uploads), stack)
    d = by_file(report)
    assert {f for f, x in d.items() if x.kept} == {"obama.jpg", "obama2.jpg", "obama3.jpg"}
    assert d["biden.jpg"].reason.startswith("a different person (similarity 0.")
    assert d["sky.png"].reason == "no face found"
    group = d["t1.jpg"]
    assert group.faces >= 5 and "faces: used the largest" in group.notes[0]
    assert not group.kept and group.reason  # the largest face is small and another person: dropped, with why
    assert report.reference in {"obama.jpg", "obama2.jpg", "obama3.jpg"}
    saved = read_json(report.save(tmp_path / "report.json"))
    assert saved["kept"] == 3 and saved["total"] == 6
    assert {p["file"]: p["reason"] for p in saved["photos"]}["sky.png"] == "no face found"
    assert saved["thresholds"] == {"same": stack.embedder.same_threshold, "different": stack.embedder.different_threshold}


def test_best_match_rule_picks_the_person_in_a_group_photo(tmp_path, stack, photos_same_man, photo_t1):
    # a "group photo" whose largest face is someone else: t1 at 1.4× its size (faces up to ~170 px) with the
    # man pasted into a corner at a smaller face size (~145 px)
    t1 = Image.open(photo_t1).convert("RGB")
    group = np.asarray(t1.resize((int(t1.width * 1.4), int(t1.height * 1.4)), Image.LANCZOS)).copy()
    man = Image.open(photos_same_man[0]).convert("RGB").crop((300, 60, 720, 480)).resize((230, 230))
    group[-240:-10, -240:-10] = np.asarray(man)
    uploads = tmp_path / "uploads"
    copy_into(uploads, *photos_same_man)
    Image.fromarray(group).save(uploads / "group.jpg", quality=95)
    largest = by_file(select_photos(list_photos(uploads), stack, TrainConfig(min_face_px=64)))["group.jpg"]
    best = by_file(select_photos(list_photos(uploads), stack, TrainConfig(min_face_px=64, face_choice="best_match")))
    assert not largest.kept and "different person" in largest.reason
    assert best["group.jpg"].kept and best["group.jpg"].similarity > stack.embedder.same_threshold


def test_duplicates_and_cap(tmp_path, stack, photos_same_man):
    uploads = tmp_path / "uploads"
    copy_into(uploads, *photos_same_man)
    Image.open(photos_same_man[1]).save(uploads / "obama2_copy.jpg", quality=85)
    report = select_photos(list_photos(uploads), stack)
    d = by_file(report)
    assert d["obama2_copy.jpg"].reason == "near-duplicate of obama2.jpg" or d["obama2.jpg"].reason == (
        "near-duplicate of obama2_copy.jpg"
    )
    assert len(report.kept) == 3
    capped = select_photos(list_photos(uploads), stack, TrainConfig(max_photos=2))
    assert len(capped.kept) == 2
    assert any(x.reason.startswith("over the limit of 2 photos") for x in capped.decisions)


# ------------------------------------------------------------------------------------ hostile uploads


def png_with_header_size(width, height):
    """A tiny valid PNG whose IHDR claims width×height (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def hostile_files(folder, face_photo):
    face = Image.open(face_photo).convert("RGB")
    full = io.BytesIO()
    face.save(full, "JPEG", quality=90)
    files = {
        "truncated.jpg": full.getvalue()[: len(full.getvalue()) // 2],
        "zero.jpg": b"",
        "text.jpg": b"this is not a photo\n",
        "bomb.png": png_with_header_size(20000, 20000),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    Image.new("RGB", (1, 1), "white").save(folder / "one_pixel.png")
    sixteen = (np.asarray(face.convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "sixteen_bit.png")  # PIL writes mode I;16 as a 16-bit PNG
    face.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    frames = [face.resize((face.width // 2, face.height // 2)), Image.new("RGB", (face.width // 2, face.height // 2))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)


def test_hostile_inputs_each_get_a_reason_and_stay_untouched(tmp_path, stack, photos_same_man):
    uploads = tmp_path / "uploads"
    copy_into(uploads, *photos_same_man)
    hostile_files(uploads, photos_same_man[0])
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in uploads.iterdir()}
    report = select_photos(list_photos(uploads), stack)
    d = by_file(report)
    assert "damaged" in d["truncated.jpg"].reason and "truncated" in d["truncated.jpg"].reason
    assert "empty (0 bytes)" in d["zero.jpg"].reason
    assert "not an image" in d["text.jpg"].reason
    assert "400 MP" in d["bomb.png"].reason and "not decoded" in d["bomb.png"].reason
    assert "too small" in d["one_pixel.png"].reason
    # decodable oddities are converted, noted and judged on their content like any photo
    assert any("16-bit" in n or "scaled to 8 bits" in n for n in d["sixteen_bit.png"].notes)
    assert any("CMYK" in n for n in d["cmyk.jpg"].notes)
    assert any("animated" in n for n in d["animated.gif"].notes)
    for name in ("sixteen_bit.png", "cmyk.jpg", "animated.gif"):
        assert d[name].faces >= 1, name
    assert all(x.kept or x.reason for x in report.decisions)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in uploads.iterdir()}
    assert after == before


def test_loader_handles_alpha_and_exif_rotation(tmp_path, photos_same_man):
    face = Image.open(photos_same_man[0]).convert("RGB")
    rgba = face.convert("RGBA")
    rgba.putalpha(0)
    rgba.save(tmp_path / "clear.png")
    loaded = load_photo(tmp_path / "clear.png")
    assert loaded.image.mode == "RGB" and loaded.image.getpixel((5, 5)) == (255, 255, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    face.save(tmp_path / "rotated.jpg", exif=exif)
    rotated = load_photo(tmp_path / "rotated.jpg")
    assert rotated.image.size == (face.height, face.width) and "EXIF orientation 6" in rotated.notes[0]
    with pytest.raises(UnreadableImage, match=r"KB is over the 10 KB upload limit"):
        load_photo(photos_same_man[2], max_bytes=10_000)
