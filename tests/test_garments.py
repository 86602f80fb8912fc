"""Garments as stored things (issue 13): ids and registry, the id shared with identities, uploads, masks, clicks."""

import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import Settings
from easyphoto.context import standalone_context
from easyphoto.errors import IdentityNotFound, NotFound
from easyphoto.imageops import UnreadableImage
from easyphoto.segment.types import Point
from easyphoto.store import (
    GarmentNotFound,
    GarmentStore,
    InvalidGarmentId,
    LoraNameTaken,
    Paths,
    atomic_write_json,
    read_json,
    validate_garment_id,
)
from easyphoto.train import prepare
from easyphoto.tryon import garments
from easyphoto.tryon.garments import EmptyMask, InvalidMask, InvalidPoints


@pytest.fixture
def ctx(tmp_path):
    return standalone_context(tmp_path)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def lora_file(path, metadata: dict) -> None:
    """A .safetensors file with no tensors: only the header that tells EasyPhoto's files from others."""
    header = json.dumps({"__metadata__": metadata}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(header).to_bytes(8, "little") + header)


# ---------------------------------------------------------------------------------------------- the registry


def test_layout_follows_the_architecture(tmp_path):
    paths = Paths.standalone(tmp_path)
    layout = GarmentStore(paths).create("red_dress")
    root = tmp_path / "easyphoto" / "garments" / "red_dress"
    assert layout.root == root and layout.lora_file == tmp_path / "models" / "Lora" / "red_dress.safetensors"
    for folder in ("photos", "masks", "dataset", "checkpoints", "validation"):
        assert (root / folder).is_dir()
    assert (layout.report, layout.garment_json, layout.points) == (root / "report.json", root / "garment.json",
                                                                    root / "points.json")
    assert layout.computed_masks == root / "masks" / "computed"


@pytest.mark.parametrize(("bad", "says"), [("", "empty"), ("../x", "'.', '/'"), ("Red", "'R'"), ("con", "reserved"),
                                           ("a" * 65, "65 characters")])
def test_garment_ids_follow_the_identity_rules_and_name_the_garment(bad, says):
    with pytest.raises(InvalidGarmentId, match="garment id") as caught:
        validate_garment_id(bad)
    assert says in caught.value.message and caught.value.http_status == 422


def test_create_list_get_delete(ctx):
    store = ctx.garments
    assert store.list() == []
    store.create("shirt")
    store.create("dress")
    assert store.list() == ["dress", "shirt"]
    with pytest.raises(InvalidGarmentId, match="already exists"):
        store.create("shirt")
    with pytest.raises(GarmentNotFound, match="No garment named 'coat'") as caught:
        store.get("coat")
    assert caught.value.http_status == 404 and "dress, shirt" in caught.value.hint
    assert caught.value.to_dict()["error"] == "GarmentNotFound"


def test_delete_removes_every_file_and_only_our_lora(ctx):
    store = ctx.garments
    layout = store.create("shirt")
    (layout.dataset / "train").mkdir()
    (layout.dataset / "train" / "0.png").write_bytes(b"x")
    lora_file(layout.lora_file, {"easyphoto_version": "1"})
    assert store.delete("shirt") == [] and not layout.root.exists() and not layout.lora_file.exists()
    other = store.create("coat")
    lora_file(other.lora_file, {"ss_output_name": "coat"})  # a community LoRA that happens to share the name
    notes = store.delete("coat")
    assert not other.root.exists() and other.lora_file.is_file() and "not written by EasyPhoto" in notes[0]
    assert store.list() == [] and not list(ctx.paths.garments_dir.iterdir())  # no trash left behind


# ---------------------------------------------------------------------------------------------- one id, one LoRA


def test_a_garment_cannot_take_an_identity_id_and_the_other_way_round(ctx):
    ctx.identities.create("alice")
    with pytest.raises(LoraNameTaken, match="'alice' is already an identity") as caught:
        ctx.garments.create("alice")
    assert caught.value.http_status == 409 and "alice_garment" in caught.value.hint
    assert "alice.safetensors" in caught.value.message
    ctx.garments.create("scarf")
    with pytest.raises(LoraNameTaken, match="'scarf' is already a garment"):
        ctx.identities.create("scarf")
    with pytest.raises(LoraNameTaken):
        ctx.identities.create("scarf", exist_ok=True)
    with pytest.raises(LoraNameTaken):  # what an identity import checks before it unpacks under that id
        ctx.identities.check_id_free("scarf")
    ctx.identities.check_id_free("bob")
    assert ctx.identities.list() == ["alice"] and ctx.garments.list() == ["scarf"]


def test_uploads_to_a_taken_id_are_refused_before_any_file_is_read(ctx, tmp_path, photo_astronaut):
    ctx.identities.create("alice")
    missing = tmp_path / "never-read.jpg"  # reading it would fail differently: the id is checked first
    with pytest.raises(LoraNameTaken):
        garments.add_photos(ctx, "alice", [missing])
    garments.add_photos(ctx, "suit", [photo_astronaut])
    with pytest.raises(LoraNameTaken):
        prepare.add_photos(ctx, "suit", [photo_astronaut])
    assert not (ctx.paths.identities_dir / "suit").exists() and ctx.garments.list() == ["suit"]


def test_an_existing_identity_keeps_working_when_a_garment_folder_of_its_id_appears(ctx, photo_astronaut):
    prepare.add_photos(ctx, "bob", [photo_astronaut])
    (ctx.paths.garments_dir / "bob").mkdir(parents=True)  # made by hand, or by an older version
    ctx.identities.create("bob", exist_ok=True)
    assert ctx.identities.get("bob").photos.is_dir()
    with pytest.raises(IdentityNotFound):
        ctx.identities.get("nobody")


# ---------------------------------------------------------------------------------------------- uploads


def test_uploads_are_stored_byte_for_byte_once(ctx, tmp_path, photo_astronaut, photos_same_man):
    odd = tmp_path / "My Suit (1).PNG"
    odd.write_bytes(photo_astronaut.read_bytes())
    added = garments.add_photos(ctx, "suit", [odd, photos_same_man[0]])
    assert [p.name for p in added.added] == ["My_Suit_1.png", "obama.jpg"]
    assert added.added[1].read_bytes() == photos_same_man[0].read_bytes()
    again = garments.add_photos(ctx, "suit", [photo_astronaut, ("copy.jpg", photos_same_man[0].read_bytes())])
    assert again.added == [] and again.duplicates == [("astronaut.png", "My_Suit_1.png"), ("copy.jpg", "obama.jpg")]
    assert "2 already there" in again.summary()


def test_a_non_image_refuses_the_whole_batch_naming_it(ctx, tmp_path, photo_astronaut, photos_same_man):
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are not pixels")
    with pytest.raises(UnreadableImage, match="notes.jpg was not stored: .*not an image") as caught:
        garments.add_photos(ctx, "suit", [photo_astronaut, notes])
    assert caught.value.http_status == 422
    assert ctx.garments.list() == []  # a refused first batch creates nothing
    garments.add_photos(ctx, "suit", [photo_astronaut])
    before = digests(ctx.garments.get("suit").photos)
    with pytest.raises(UnreadableImage, match="upload.bin was not stored: The file is empty"):
        garments.add_photos(ctx, "suit", [photos_same_man[1], ("upload.bin", b"")])
    assert digests(ctx.garments.get("suit").photos) == before


def test_photos_over_the_megapixel_limit_are_refused(ctx, photo_astronaut, photos_same_man):
    small_limit = dataclasses.replace(ctx, load_settings=lambda: Settings(max_upload_megapixels=1.0))
    with pytest.raises(UnreadableImage, match=r"obama3.jpg was not stored: .*larger than the 1 MP limit"):
        garments.add_photos(small_limit, "suit", [photo_astronaut, photos_same_man[2]])  # 1434×2333
    assert small_limit.garments.list() == []


def test_remove_photos_takes_their_mask_clicks_and_report_entry(ctx, photo_astronaut, photos_same_man):
    garments.add_photos(ctx, "suit", [photo_astronaut, photos_same_man[0]])
    layout = ctx.garments.get("suit")
    garments.add_mask(ctx, "suit", "astronaut.png", suit_mask())
    garments.set_points(ctx, "suit", "astronaut.png", [Point(150, 400)])
    garments.set_points(ctx, "suit", "obama.jpg", [Point(400, 800)])
    atomic_write_json(layout.report, {"kept": 2, "total": 2, "photos": [
        {"file": "astronaut.png", "kept": True, "reason": ""}, {"file": "obama.jpg", "kept": True, "reason": ""}]})
    with pytest.raises(NotFound, match="no photo named 'nope.jpg'"):
        garments.remove_photos(ctx, "suit", ["astronaut.png", "nope.jpg"])
    assert (layout.photos / "astronaut.png").is_file()  # a typo deletes nothing
    assert garments.remove_photos(ctx, "suit", ["astronaut.png"]) == ["astronaut.png"]
    assert not (layout.masks / "astronaut.png.png").exists()
    assert list(garments.photo_prompts(layout)) == ["obama.jpg"]
    report = read_json(layout.report)
    assert [p["file"] for p in report["photos"]] == ["obama.jpg"] and "astronaut.png removed" in report["stale"]


# ---------------------------------------------------------------------------------------------- masks


def suit_mask(size=(512, 512), box=(30, 300, 280, 512)) -> Image.Image:
    """The astronaut's orange suit, roughly: a white rectangle on black."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 255
    return Image.fromarray(mask, "L")


def test_a_mask_is_stored_binary_at_the_photo_size(ctx, photo_astronaut):
    garments.add_photos(ctx, "suit", [photo_astronaut])
    grey = np.asarray(suit_mask()).copy()
    grey[300:320, 30:280] = 140  # a soft edge: above the midpoint counts as painted
    grey[0:10, 0:10] = 100  # below it does not
    path = garments.add_mask(ctx, "suit", "astronaut.png", ("mask.png", png_bytes(Image.fromarray(grey, "L"))))
    stored = np.asarray(Image.open(path))
    assert path.name == "astronaut.png.png" and stored.shape == (512, 512)
    assert set(np.unique(stored)) == {0, 255}
    assert np.array_equal(stored, np.asarray(suit_mask()))
    assert garments.uploaded_masks(ctx.garments.get("suit")) == {"astronaut.png": path}


def test_a_mask_drawn_on_a_scaled_preview_is_resized_and_another_shape_refused(ctx, photos_same_man):
    garments.add_photos(ctx, "suit", [photos_same_man[0]])  # 910×1137
    half = suit_mask((455, 568), (60, 260, 400, 568))
    path = garments.add_mask(ctx, "suit", "obama.jpg", half)
    stored = np.asarray(Image.open(path))
    assert stored.shape == (1137, 910)
    assert stored[600, 400] == 255 and stored[100, 100] == 0 and stored[1136, 120] == 255
    with pytest.raises(InvalidMask, match="another shape"):
        garments.add_mask(ctx, "suit", "obama.jpg", suit_mask((512, 512)))
    assert np.array_equal(np.asarray(Image.open(path)), stored)  # the earlier mask is kept


def test_a_transparent_drawing_layer_counts_its_opaque_pixels(ctx, photo_astronaut):
    garments.add_photos(ctx, "suit", [photo_astronaut])
    layer = np.zeros((512, 512, 4), np.uint8)
    layer[..., :3] = 255  # white everywhere: only the alpha says what was painted
    layer[300:512, 30:280, 3] = 255
    path = garments.add_mask(ctx, "suit", "astronaut.png", Image.fromarray(layer, "RGBA"))
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(suit_mask()))


def test_bad_masks_are_refused_and_nothing_is_lost(ctx, photo_astronaut):
    garments.add_photos(ctx, "suit", [photo_astronaut])
    layout = ctx.garments.get("suit")
    photos_before = digests(layout.photos)
    with pytest.raises(EmptyMask, match="empty"):
        garments.add_mask(ctx, "suit", "astronaut.png", np.zeros((512, 512), np.uint8))
    with pytest.raises(NotFound, match="no photo named 'other.jpg'") as caught:
        garments.add_mask(ctx, "suit", "other.jpg", suit_mask())
    assert caught.value.http_status == 404 and "astronaut.png" in caught.value.hint
    with pytest.raises(InvalidMask, match="mask.txt is not an image"):
        garments.add_mask(ctx, "suit", "astronaut.png", ("mask.txt", b"not a picture"))
    with pytest.raises(InvalidMask, match=r"\(H, W\) uint8"):
        garments.add_mask(ctx, "suit", "astronaut.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(GarmentNotFound):
        garments.add_mask(ctx, "coat", "astronaut.png", suit_mask())
    assert garments.uploaded_masks(layout) == {} and digests(layout.photos) == photos_before
    garments.add_mask(ctx, "suit", "astronaut.png", np.asarray(suit_mask()) > 0)  # a bool array is a mask too
    assert garments.remove_mask(ctx, "suit", "astronaut.png") and not garments.remove_mask(ctx, "suit", "astronaut.png")


# ---------------------------------------------------------------------------------------------- clicks


def test_clicks_are_stored_per_photo_and_checked(ctx, photo_astronaut):
    garments.add_photos(ctx, "suit", [photo_astronaut])
    layout = ctx.garments.get("suit")
    garments.set_points(ctx, "suit", "astronaut.png", [Point(150, 400), Point(250, 100, positive=False)],
                        boxes=[(30, 300, 280, 511)])
    prompts = garments.photo_prompts(layout)["astronaut.png"]
    assert prompts.points == [Point(150.0, 400.0), Point(250.0, 100.0, False)]
    assert prompts.boxes == [(30.0, 300.0, 280.0, 511.0)]
    with pytest.raises(InvalidPoints, match="all negative"):
        garments.set_points(ctx, "suit", "astronaut.png", [Point(10, 10, positive=False)])
    with pytest.raises(InvalidPoints, match=r"Click \(600, 10\) is outside astronaut.png \(512×512\)"):
        garments.set_points(ctx, "suit", "astronaut.png", [Point(600, 10)])
    with pytest.raises(InvalidPoints, match="box"):
        garments.set_points(ctx, "suit", "astronaut.png", [], boxes=[(300, 10, 100, 50)])
    assert garments.photo_prompts(layout)["astronaut.png"] == prompts  # refused clicks change nothing
    garments.set_points(ctx, "suit", "astronaut.png", [])
    assert garments.photo_prompts(layout) == {}


def test_thumbnails_badge_each_photo_of_a_report(ctx, photo_astronaut):
    garments.add_photos(ctx, "suit", [photo_astronaut])
    layout = ctx.garments.get("suit")
    report = {"photos": [
        {"file": "astronaut.png", "kept": True, "reason": "", "garment_fraction": 0.2, "mask_source": "uploaded"},
        {"file": "gone.jpg", "kept": False, "reason": "unreadable: gone"}]}
    (first, first_badge), (second, second_badge) = garments.thumbnails(layout, report, size=64)
    assert max(first.size) == 64 and first_badge == "astronaut.png: ✓ kept · garment 20% of the photo · mask: uploaded"
    assert second.size == (64, 64) and second_badge == "gone.jpg: ✗ dropped · unreadable: gone"
