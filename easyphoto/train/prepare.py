"""Identity-level operations of Train part 1: take uploads in, check them, prepare the dataset.

Front ends (Train tab, API, CLI) call these with an AppContext; they never touch Gradio or HTTP.
Uploads are copied into identities/<id>/photos/ byte for byte and never modified afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from easyphoto import upscale
from easyphoto.config import TrainConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.face import stacks
from easyphoto.face.stacks import FaceStack
from easyphoto.imageops import image_suffix, load_photo, photo_thumbnail
from easyphoto.store import (
    IdentityLayout,
    atomic_path,
    atomic_write_json,
    file_digest,
    photo_digests,
    photo_digests_by_name,
    photo_files,
    photos_lock,
    read_json,
    safe_photo_name,
    store_photo,
)
from easyphoto.store import remove_photos as _remove_files
from easyphoto.train.dataset import DatasetItem, dataset_changes, prepare_dataset, square_crop
from easyphoto.train.photos import PhotoReport, select_photos

Progress = Callable[[int, int, str], None]
MAX_PHOTOS_PER_IDENTITY = 200
Upload = Path | str | tuple[str, bytes]  # a file, or (name, bytes) for an upload that arrived without one


@dataclass
class AddedPhotos:
    """What an upload did: the photos stored, and the uploads skipped because that content was already there."""

    added: list[Path] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (upload name, stored photo with its bytes)

    def summary(self) -> str:
        text = f"{len(self.added)} photo{'' if len(self.added) == 1 else 's'} added"
        if self.duplicates:
            pairs = ", ".join(f"{upload} = {stored}" for upload, stored in self.duplicates[:5])
            more = f", … ({len(self.duplicates)} in all)" if len(self.duplicates) > 5 else ""
            text += f"; {len(self.duplicates)} already there, not stored again ({pairs}{more})"
        return text


@dataclass
class _Upload:
    name: str
    read: Callable[[], bytes]
    digest: str


def _upload(item: Upload) -> _Upload:
    if isinstance(item, tuple):
        name, data = item
        return _Upload(str(name), lambda: data, hashlib.sha256(data).hexdigest())
    path = Path(item)
    if not path.is_file():
        raise EasyPhotoError(f"Upload {path.name} is not a file.", phase="photos",
                             hint="Pass photo files (a folder's photos: DIR/*.jpg).")
    return _Upload(path.name, path.read_bytes, file_digest(path))


def add_photos(ctx: AppContext, identity_id: str, files: Sequence[Upload]) -> AddedPhotos:
    """Copy uploads into the identity (created when new), byte for byte, under their own names (sanitised, with
    the extension of the format they really are). Content already stored (the same bytes) is not stored again.
    Unreadable files are copied too: the report says why they are not used, and nothing the user gave is lost."""
    ctx.identities.layout(identity_id)  # a bad id first, before any file is read
    uploads = [_upload(item) for item in files]
    layout = ctx.identities.create(identity_id, exist_ok=True)
    result = AddedPhotos()
    with photos_lock(layout):
        known = photo_digests(layout)  # sha256 → stored name
        fresh, seen = [], set(known)
        for upload in uploads:  # the first of equal uploads is stored, also within one batch
            if upload.digest not in seen:
                seen.add(upload.digest)
                fresh.append(upload)
        _check_photo_limit(identity_id, len(photo_files(layout.photos)), len(fresh))
        for upload in fresh:
            data = upload.read()
            path = store_photo(layout, data, safe_photo_name(upload.name, image_suffix(data) or "bin"))
            known[upload.digest] = path.name
            result.added.append(path)
    stored = {id(u) for u in fresh}
    result.duplicates = [(u.name, known[u.digest]) for u in uploads if id(u) not in stored]
    return result


def _check_photo_limit(identity_id: str, existing: int, new: int) -> None:
    if existing + new > MAX_PHOTOS_PER_IDENTITY:
        raise EasyPhotoError(
            f"{identity_id!r} would have {existing + new} photos; at most {MAX_PHOTOS_PER_IDENTITY}.",
            hint="5–20 varied photos of the person are enough; remove some first.",
            phase="photos",
        )


def remove_photos(ctx: AppContext, identity_id: str, names: Sequence[str]) -> list[str]:
    """Delete photos of an identity by name (names are looked up, never joined to paths). The saved report
    forgets them at once and says it predates the removal; the next check or training starts from what is left."""
    layout = ctx.identities.get(identity_id)
    if not names:
        raise EasyPhotoError("Name the photos to remove.", phase="photos",
                             hint=f"Its photos: {', '.join(p.name for p in photo_files(layout.photos)) or 'none'}.")
    removed = _remove_files(layout, list(names))
    _forget_in_report(layout, removed)
    return removed


def _forget_in_report(layout: IdentityLayout, removed: list[str]) -> None:
    if not layout.report.is_file():
        return
    report = read_json(layout.report)
    photos = [p for p in report.get("photos", []) if p.get("file") not in removed]
    report.update(photos=photos, kept=sum(1 for p in photos if p.get("kept")), total=len(photos),
                  stale=f"{', '.join(removed)} removed after this check: check the photos again.")
    if report.get("reference") in removed:
        report["reference"] = None
        (layout.root / "reference.jpg").unlink(missing_ok=True)
    atomic_write_json(layout.report, report)


def check_photos(
    ctx: AppContext, identity_id: str, config: TrainConfig = TrainConfig(), progress: Progress | None = None
) -> PhotoReport:
    """Decide kept/dropped for every photo of the identity; saves report.json and reference.jpg."""
    layout = ctx.identities.get(identity_id)
    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    return check_layout(layout, stack, config, max_megapixels=ctx.settings.max_upload_megapixels, progress=progress)


def check_layout(layout: IdentityLayout, stack: FaceStack, config: TrainConfig, *, max_megapixels: float,
                 progress: Progress | None = None) -> PhotoReport:
    """check_photos without an AppContext (the training process rebuilds an out-of-date dataset with it)."""
    files = photo_files(layout.photos)
    if not files:
        raise EasyPhotoError(f"{layout.identity_id!r} has no photos yet.", hint="Upload 5–20 photos first.",
                             phase="photos")
    report = select_photos(files, stack, config, max_megapixels=max_megapixels, progress=progress)
    report.save(layout.report)
    save_reference_face(layout, report)
    return report


def save_reference_face(layout: IdentityLayout, report: PhotoReport) -> Path | None:
    """reference.jpg: the reference photo cropped around the face (×1.5), for the UI and the portrait pipeline."""
    target = layout.root / "reference.jpg"
    decision = next((d for d in report.decisions if d.file == report.reference), None)
    if decision is None or decision.face is None:
        target.unlink(missing_ok=True)
        return None
    image = load_photo(layout.photos / decision.file).image
    crop = image.crop(square_crop(decision.face, 1.5, image.size))
    with atomic_path(target) as tmp:
        crop.convert("RGB").save(tmp, "JPEG", quality=95)
    return target


def prepare_identity_dataset(
    ctx: AppContext, identity_id: str, config: TrainConfig = TrainConfig(), progress: Progress | None = None
) -> list[DatasetItem]:
    """Check the photos (fresh: the settings or photos may have changed) and write identities/<id>/dataset/."""
    layout = ctx.identities.get(identity_id)
    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    upscaler = upscale.for_context(ctx) if config.upscale_small else None
    try:
        return rebuild_dataset(layout, stack, config, max_megapixels=ctx.settings.max_upload_megapixels,
                               upscaler=upscaler, progress=progress)
    finally:  # the training that follows needs the memory the upscaler's model holds
        if upscaler is not None:
            upscaler.unload()


def rebuild_dataset(layout: IdentityLayout, stack: FaceStack, config: TrainConfig, *, max_megapixels: float,
                    upscaler=None, progress: Progress | None = None) -> list[DatasetItem]:
    """Check the photos and write the dataset, recording the settings and the photos (by content) it was made
    from, so that a later training can tell when it is out of date (dataset.dataset_changes)."""
    digests = photo_digests_by_name(layout)  # before the check: exactly what it looks at
    report = check_layout(layout, stack, config, max_megapixels=max_megapixels, progress=progress)
    return prepare_dataset(report, layout.photos, layout.dataset, stack, config, upscaler=upscaler, photos=digests)


def dataset_out_of_date(layout: IdentityLayout, config: TrainConfig) -> list[str]:
    """Why the identity's dataset no longer matches `config` and its photos ([] when it does)."""
    return dataset_changes(layout.dataset, config, photo_digests_by_name(layout))


def ensure_dataset(ctx: AppContext, identity_id: str, config: TrainConfig, progress: Progress | None = None,
                   ) -> list[str]:
    """Rebuild the identity's dataset when it is missing or was made with other settings or photos; returns the
    reasons it was rebuilt ([] when the existing one is current). For the train job, before it counts images."""
    layout = ctx.identities.get(identity_id)
    reasons = dataset_out_of_date(layout, config)
    if not (layout.dataset / "metadata.jsonl").is_file():
        reasons = ["there is no dataset yet"]
    if reasons:
        prepare_identity_dataset(ctx, identity_id, config, progress)
    return reasons


def thumbnails(layout: IdentityLayout, report: dict, size: int = 256) -> list[tuple[Image.Image, str]]:
    """(thumbnail, badge) per photo of a saved report (report.json's form); unreadable files get a grey tile."""
    items = []
    for photo in report.get("photos", []):
        image = photo_thumbnail(layout.photos / photo["file"], size)
        if photo["kept"]:
            similarity = photo.get("similarity")
            badge = "✓ kept" + (f" · similarity {similarity:.2f}" if similarity is not None else "")
        else:
            badge = f"✗ dropped · {photo['reason']}"
        star = " ★ reference" if photo["file"] == report.get("reference") else ""
        items.append((image, f"{photo['file']}: {badge}{star}"))
    return items
