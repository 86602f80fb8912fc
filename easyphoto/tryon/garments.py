"""A garment's photos, masks and clicks: what the garment dataset (easyphoto.tryon.dataset) is made from.

    add_photos(ctx, "red_dress", [path, ("shot.jpg", data)])    # AddedPhotos; a non-image is refused, naming it
    add_mask(ctx, "red_dress", "shot.jpg", mask)                # masks/shot.jpg.png: binary 0/255, photo-sized
    set_points(ctx, "red_dress", "shot.jpg", [Point(120, 200)])  # clicks for the point segmenter
    remove_photos(ctx, "red_dress", ["shot.jpg"])               # its mask and clicks go with it
    thumbnails(layout, read_json(layout.report))                # (image, badge) per photo of the last build

Uploads are handled as for identities (easyphoto.train.prepare): stored byte for byte under a safe name with the
extension of the format they really are, never modified, the same bytes never stored twice. One difference: an
identity keeps an unreadable upload so its report can say why it was dropped; a garment refuses the whole batch when
one upload is not an image it can decode (within the megapixel limit), naming it, and stores nothing. Garment photos
are few and chosen by hand, so the user is told at once instead of in a report.

Masks. A mask is the garment's pixels in the photo as the user sees it (EXIF orientation applied). It is read as
painted = white (luminance ≥ 128), or, for an image with transparency, painted = opaque (alpha ≥ 128): what a
drawing layer gives. A mask of the photo's size is stored as it is; one of another size with the photo's aspect
ratio (within 1 %: a UI that drew on a downscaled preview) is resized to the photo, nearest neighbour; any other
shape is refused, since it would not line up. An empty mask is refused. Stored masks are PNG, 0 or 255 only.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.imageops import DEFAULT_MAX_BYTES, UnreadableImage, image_suffix, load_photo, photo_thumbnail
from easyphoto.segment.types import Box, Point
from easyphoto.store import (
    GarmentLayout,
    atomic_path,
    atomic_write_json,
    find_photo,
    photo_digests,
    photo_files,
    photos_lock,
    read_json,
    safe_photo_name,
    store_photo,
)
from easyphoto.store import remove_photos as _remove_files
from easyphoto.train.prepare import AddedPhotos, Upload

MAX_PHOTOS_PER_GARMENT = 200
MASK_ASPECT_TOLERANCE = 0.01  # relative difference of width/height ratios a resized mask may have
MaskInput = Upload | Image.Image | np.ndarray  # a file, (name, bytes), a PIL image or an (H, W) array


class InvalidMask(EasyPhotoError):
    phase = "garment"
    http_status = 422


class EmptyMask(InvalidMask):
    """The mask marks no pixel: there would be no garment to cut out."""


class InvalidPoints(EasyPhotoError):
    phase = "garment"
    http_status = 422


@dataclass
class _Checked:
    name: str
    data: bytes
    digest: str


# ---------------------------------------------------------------------------------------------- photos


def add_photos(ctx: AppContext, garment_id: str, files: Sequence[Upload]) -> AddedPhotos:
    """Store uploads in the garment (created when new). Every upload is decoded first (max_upload_megapixels):
    one that is not a readable image raises UnreadableImage naming it, and nothing of the batch is stored."""
    garments = ctx.garments
    if not garments.exists(garment_id):
        garments.check_id_free(garment_id)  # an identity of that id: refused before any upload is read
    limit = ctx.settings.max_upload_megapixels
    uploads = [_checked_upload(item, limit) for item in files]
    layout = garments.create(garment_id, exist_ok=True)
    result = AddedPhotos()
    with photos_lock(layout):
        known = photo_digests(layout)  # sha256 → stored name
        fresh, seen = [], set(known)
        for upload in uploads:
            if upload.digest not in seen:
                seen.add(upload.digest)
                fresh.append(upload)
        _check_photo_limit(garment_id, len(photo_files(layout.photos)), len(fresh))
        for upload in fresh:
            path = store_photo(layout, upload.data, safe_photo_name(upload.name, image_suffix(upload.data) or "bin"))
            known[upload.digest] = path.name
            result.added.append(path)
    stored = {id(u) for u in fresh}
    result.duplicates = [(u.name, known[u.digest]) for u in uploads if id(u) not in stored]
    return result


def _checked_upload(item: Upload, max_megapixels: float) -> _Checked:
    if isinstance(item, tuple):
        name, data = str(item[0]), bytes(item[1])
    else:
        path = Path(item)
        if not path.is_file():
            raise EasyPhotoError(f"Upload {path.name} is not a file.", phase="photos",
                                 hint="Pass photo files (a folder's photos: DIR/*.jpg).")
        name, data = path.name, path.read_bytes()
    try:
        load_photo(data, max_megapixels=max_megapixels)
    except UnreadableImage as exc:
        reason = exc.message.removeprefix("upload: ")
        raise UnreadableImage(f"{name} was not stored: {reason}", hint=exc.hint or "Upload photos of the garment "
                              "(JPEG, PNG or WebP); no file of this batch was stored.") from None
    return _Checked(name, data, hashlib.sha256(data).hexdigest())


def _check_photo_limit(garment_id: str, existing: int, new: int) -> None:
    if existing + new > MAX_PHOTOS_PER_GARMENT:
        raise EasyPhotoError(f"{garment_id!r} would have {existing + new} photos; at most {MAX_PHOTOS_PER_GARMENT}.",
                             hint="10–30 photos of the garment from several sides are enough; remove some first.",
                             phase="photos")


def remove_photos(ctx: AppContext, garment_id: str, names: Sequence[str]) -> list[str]:
    """Delete photos by name with their masks and clicks; every name is checked before anything is deleted. The
    saved report forgets them and says it predates the removal."""
    layout = ctx.garments.get(garment_id)
    if not names:
        raise EasyPhotoError("Name the photos to remove.", phase="photos",
                             hint=f"Its photos: {', '.join(p.name for p in photo_files(layout.photos)) or 'none'}.")
    removed = _remove_files(layout, list(names))
    for name in removed:
        (layout.masks / f"{name}.png").unlink(missing_ok=True)
        (layout.computed_masks / f"{name}.png").unlink(missing_ok=True)
    with _points_lock:
        points = _read_points(layout)
        if any(name in points for name in removed):
            atomic_write_json(layout.points, {k: v for k, v in points.items() if k not in removed})
    _forget_in_report(layout, removed)
    return removed


def _forget_in_report(layout: GarmentLayout, removed: list[str]) -> None:
    if not layout.report.is_file():
        return
    report = read_json(layout.report)
    photos = [p for p in report.get("photos", []) if p.get("file") not in removed]
    report.update(photos=photos, kept=sum(1 for p in photos if p.get("kept")), total=len(photos),
                  stale=f"{', '.join(removed)} removed after this build: build the dataset again.")
    atomic_write_json(layout.report, report)


def thumbnails(layout: GarmentLayout, report: dict, size: int = 256) -> list[tuple[Image.Image, str]]:
    """(thumbnail, badge) per photo of a saved report (report.json's form); unreadable files get a grey tile."""
    items = []
    for photo in report.get("photos", []):
        image = photo_thumbnail(layout.photos / photo["file"], size)
        if photo["kept"]:
            fraction = photo.get("garment_fraction")
            badge = "✓ kept" + (f" · garment {fraction:.0%} of the photo" if fraction is not None else "")
            badge += f" · mask: {photo['mask_source']}" if photo.get("mask_source") else ""
        else:
            badge = f"✗ dropped · {photo['reason']}"
        items.append((image, f"{photo['file']}: {badge}"))
    return items


# ---------------------------------------------------------------------------------------------- masks


def add_mask(ctx: AppContext, garment_id: str, photo: str, mask: MaskInput) -> Path:
    """Store the garment mask of one photo (replacing an earlier one) as masks/<photo>.png; see the module doc for
    how a mask is read. Raises NotFound for an unknown photo, InvalidMask / EmptyMask for an unusable mask."""
    layout = ctx.garments.get(garment_id)
    path = find_photo(layout, photo)  # an unknown photo first, before the mask is decoded
    image = _mask_image(mask, ctx.settings.max_upload_megapixels)
    binary = binary_mask(image)
    if not binary.any():
        raise EmptyMask(f"The mask for {photo} is empty: no pixel is painted.",
                        hint="Paint the garment white (or opaque) on a black (or transparent) background.")
    size = load_photo(path, max_megapixels=ctx.settings.max_upload_megapixels).image.size
    binary = _fit_to_photo(binary, size, photo)
    target = layout.masks / f"{path.name}.png"
    with atomic_path(target) as tmp:
        Image.fromarray(binary, "L").save(tmp, "PNG")
    return target


def remove_mask(ctx: AppContext, garment_id: str, photo: str) -> bool:
    """Forget the uploaded mask of a photo; False when it had none."""
    layout = ctx.garments.get(garment_id)
    target = layout.masks / f"{find_photo(layout, photo).name}.png"
    if not target.is_file():
        return False
    target.unlink()
    return True


def uploaded_masks(layout: GarmentLayout) -> dict[str, Path]:
    """Photo name → its uploaded mask, for the photos that have one."""
    return {p.name: layout.masks / f"{p.name}.png" for p in photo_files(layout.photos)
            if (layout.masks / f"{p.name}.png").is_file()}


def read_mask(path: Path) -> np.ndarray:
    """A stored mask as uint8 0/255."""
    with Image.open(path) as image:
        return binary_mask(image)


def binary_mask(image: Image.Image) -> np.ndarray:
    """uint8 0/255: opaque pixels of an image with transparency, else pixels of luminance ≥ 128."""
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            return np.where(alpha >= 128, 255, 0).astype(np.uint8)
    return np.where(np.asarray(image.convert("L")) >= 128, 255, 0).astype(np.uint8)


def _mask_image(mask: MaskInput, max_megapixels: float) -> Image.Image:
    if isinstance(mask, Image.Image):
        return mask
    if isinstance(mask, np.ndarray):
        array = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask
        if array.ndim != 2 or array.dtype != np.uint8:
            raise InvalidMask(f"A mask array must be (H, W) uint8 or bool, not {array.shape} {array.dtype}.")
        return Image.fromarray(array, "L")
    name, data = (str(mask[0]), bytes(mask[1])) if isinstance(mask, tuple) else (Path(mask).name, _read(mask))
    if not data or image_suffix(data) is None:
        raise InvalidMask(f"{name} is not an image, so it cannot be a mask.",
                          hint="Upload the mask as PNG: the garment white, the rest black or transparent.")
    return _decode_mask(data, name, max_megapixels)


def _read(path: Path | str) -> bytes:
    path = Path(path)
    if not path.is_file() or path.stat().st_size > DEFAULT_MAX_BYTES:
        raise InvalidMask(f"The mask {path.name} is not a file (or is over the upload size limit).")
    return path.read_bytes()


def _decode_mask(data: bytes, name: str, max_megapixels: float) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_megapixels * 1_000_000:
                raise InvalidMask(f"The mask {name} is {image.width}×{image.height} pixels, over the "
                                  f"{max_megapixels:g} MP limit; it was not decoded.")
            image.load()
        except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise InvalidMask(f"The mask {name} could not be decoded ({exc}).",
                              hint="Export the mask again as PNG.") from None
    return ImageOps.exif_transpose(image)


def _fit_to_photo(mask: np.ndarray, size: tuple[int, int], photo: str) -> np.ndarray:
    width, height = size
    if mask.shape == (height, width):
        return mask
    ratio, wanted = mask.shape[1] / mask.shape[0], width / height
    if abs(ratio - wanted) / wanted > MASK_ASPECT_TOLERANCE:
        raise InvalidMask(
            f"The mask is {mask.shape[1]}×{mask.shape[0]} but {photo} is {width}×{height}: another shape, so it "
            "would not line up with the garment.",
            hint="Draw the mask on this photo (upright, as shown), at its size or scaled evenly.")
    resized = Image.fromarray(mask, "L").resize((width, height), Image.NEAREST)
    return np.where(np.asarray(resized) >= 128, 255, 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- clicks

_points_lock = threading.Lock()


@dataclass(frozen=True)
class PhotoPrompts:
    """What the point segmenter gets for one photo."""

    points: list[Point]
    boxes: list[Box]


def set_points(ctx: AppContext, garment_id: str, photo: str, points: Sequence[Point],
               boxes: Sequence[Box] = ()) -> PhotoPrompts:
    """Record the clicks (and boxes) that select the garment in one photo, for mask source "points". At least one
    positive click or a box; every coordinate inside the photo. No clicks at all forgets the photo's entry."""
    layout = ctx.garments.get(garment_id)
    path = find_photo(layout, photo)
    prompts = PhotoPrompts([Point(float(p.x), float(p.y), bool(p.positive)) for p in points],
                           [tuple(float(v) for v in b) for b in boxes])
    if prompts.points or prompts.boxes:
        width, height = load_photo(path, max_megapixels=ctx.settings.max_upload_megapixels).image.size
        _check_prompts(prompts, width, height, photo)
    with _points_lock:
        stored = _read_points(layout)
        stored.pop(path.name, None)
        if prompts.points or prompts.boxes:
            stored[path.name] = {"points": [[p.x, p.y, p.positive] for p in prompts.points],
                                 "boxes": [list(b) for b in prompts.boxes]}
        atomic_write_json(layout.points, stored)
    return prompts


def _check_prompts(prompts: PhotoPrompts, width: int, height: int, photo: str) -> None:
    if not prompts.boxes and not any(p.positive for p in prompts.points):
        raise InvalidPoints(f"The clicks for {photo} are all negative: nothing says where the garment is.",
                            hint="Click at least once on the garment (a positive click), or draw a box around it.")
    outside = [p for p in prompts.points if not (0 <= p.x < width and 0 <= p.y < height)]
    for box in prompts.boxes:
        if len(box) != 4 or not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
            raise InvalidPoints(f"The box {list(box)} is not inside {photo} ({width}×{height}) as x0 < x1, y0 < y1.")
    if outside:
        raise InvalidPoints(f"Click ({outside[0].x:g}, {outside[0].y:g}) is outside {photo} ({width}×{height}).",
                            hint="Coordinates are pixels of the upright photo, from its top-left corner.")


def photo_prompts(layout: GarmentLayout) -> dict[str, PhotoPrompts]:
    """Photo name → its recorded clicks, for the photos that still exist."""
    names = {p.name for p in photo_files(layout.photos)}
    return {name: PhotoPrompts([Point(float(x), float(y), bool(positive)) for x, y, positive in entry["points"]],
                               [tuple(float(v) for v in box) for box in entry["boxes"]])
            for name, entry in _read_points(layout).items() if name in names}


def _read_points(layout: GarmentLayout) -> dict:
    if not layout.points.is_file():
        return {}
    data = read_json(layout.points)
    return data if isinstance(data, dict) else {}

