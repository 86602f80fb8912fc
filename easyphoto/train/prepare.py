"""Identity-level operations of Train part 1: take uploads in, check them, prepare the dataset.

Front ends (Train tab, API, CLI) call these with an AppContext; they never touch Gradio or HTTP.
Uploads are copied into identities/<id>/photos/ byte for byte and never modified afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from easyphoto.config import TrainConfig
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError
from easyphoto.face import stacks
from easyphoto.imageops import load_photo
from easyphoto.store import IdentityLayout, atomic_path, atomic_write_bytes
from easyphoto.train.dataset import DatasetItem, prepare_dataset, square_crop
from easyphoto.train.photos import PhotoReport, list_photos, select_photos
from easyphoto.upscale import model_upscaler

Progress = Callable[[int, int, str], None]
MAX_PHOTOS_PER_IDENTITY = 200


def safe_upload_name(index: int, original: str) -> str:
    """`003_name.jpg`: an index keeps the upload order, the sanitised original name keeps it recognisable."""
    path = Path(Path(original).name)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)[:60].strip("_") or "photo"
    suffix = re.sub(r"[^a-z0-9]", "", path.suffix.lower())[:5] or "bin"
    return f"{index:03d}_{stem}.{suffix}"


def add_photos(ctx: AppContext, identity_id: str, files: Sequence[Path | str]) -> list[Path]:
    """Copy uploads into the identity (created when new). Unreadable files are copied too: the report says why
    they are not used, and nothing the user gave is lost."""
    layout = ctx.identities.create(identity_id, exist_ok=True)
    existing = list_photos(layout.photos)
    if len(existing) + len(files) > MAX_PHOTOS_PER_IDENTITY:
        raise EasyPhotoError(
            f"{identity_id!r} would have {len(existing) + len(files)} photos; at most {MAX_PHOTOS_PER_IDENTITY}.",
            hint="5–20 varied photos of the person are enough.",
            phase="photos",
        )
    added = []
    for offset, source in enumerate(files):
        source = Path(source)
        if not source.is_file():
            raise EasyPhotoError(f"Upload {source.name} is not a file.", phase="photos")
        target = layout.photos / safe_upload_name(len(existing) + offset, source.name)
        added.append(atomic_write_bytes(target, source.read_bytes()))
    return added


def check_photos(
    ctx: AppContext, identity_id: str, config: TrainConfig = TrainConfig(), progress: Progress | None = None
) -> PhotoReport:
    """Decide kept/dropped for every photo of the identity; saves report.json and reference.jpg."""
    layout = ctx.identities.get(identity_id)
    files = list_photos(layout.photos)
    if not files:
        raise EasyPhotoError(f"{identity_id!r} has no photos yet.", hint="Upload 5–20 photos first.", phase="photos")
    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    report = select_photos(files, stack, config, max_megapixels=ctx.settings.max_upload_megapixels, progress=progress)
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
    report = check_photos(ctx, identity_id, config, progress)
    layout = ctx.identities.get(identity_id)
    stack = stacks.load(ctx.settings.face_stack, ctx.paths)
    upscaler = model_upscaler(ctx.paths) if config.upscale_small else None
    return prepare_dataset(report, layout.photos, layout.dataset, stack, config, upscaler=upscaler)


def thumbnails(layout: IdentityLayout, report: dict, size: int = 256) -> list[tuple[Image.Image, str]]:
    """(thumbnail, badge) per photo of a saved report (report.json's form); unreadable files get a grey tile."""
    items = []
    for photo in report.get("photos", []):
        try:
            image = load_photo(layout.photos / photo["file"]).image
            image.thumbnail((size, size))
        except EasyPhotoError:
            image = Image.new("RGB", (size, size), (128, 128, 128))
        if photo["kept"]:
            similarity = photo.get("similarity")
            badge = "✓ kept" + (f" · similarity {similarity:.2f}" if similarity is not None else "")
        else:
            badge = f"✗ dropped · {photo['reason']}"
        star = " ★ reference" if photo["file"] == report.get("reference") else ""
        items.append((image, f"{photo['file']}: {badge}{star}"))
    return items
