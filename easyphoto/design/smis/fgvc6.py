"""A user's training set in the FGVC6 (iMaterialist-Fashion 2019) layout, read and checked before anything trains:

    <dataset>/images/<ImageId>                 photos (ImageId with or without its .jpg/.png suffix)
    <dataset>/train.csv                        ImageId,EncodedPixels,Height,Width,ClassId (one row per mask, RLE)
  or
    <dataset>/masks/<image stem>.png           one label PNG per photo (0–45 a class, 255 background), or the
                                               editor's colour PNG

Every photo needs a layout and every layout a photo: what is missing is named (the first few, and how many). Class
ids outside 0–45 are LayoutErrors. RLE masks are painted in ascending ClassId order, so the garment parts (27–45:
sleeve, collar, pocket, ...) lie on the garments they belong to. ClassId may carry FGVC6's attribute suffix
("32_102_115"): the number before the first "_" is the class. Masks keep the photo's stored pixel orientation (EXIF
rotation is not applied: the competition's masks were drawn on the stored pixels)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from easyphoto.design.layout import (
    BACKGROUND,
    NUM_CLASSES,
    LayoutError,
    check_label_values,
    check_layout,
    decode_rle,
    from_colours,
)
from easyphoto.errors import EasyPhotoError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CSV_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width", "ClassId")
SHOWN = 5  # names listed in an error before "and N more"
LAYOUT_HELP = ("A design dataset is a folder with images/ and either train.csv (FGVC6: ImageId, EncodedPixels, "
               "Height, Width, ClassId) or masks/<image name>.png (label PNGs).")


class DesignDatasetError(EasyPhotoError):
    """The training set is not in the FGVC6 layout, or photos and layouts do not pair up."""

    phase = "design"
    http_status = 422


@dataclass(frozen=True)
class Entry:
    name: str  # the photo's file name
    image: Path
    mask: Path | None = None  # PNG variant
    rows: tuple[tuple[int, str, int, int], ...] = ()  # RLE variant: (class, EncodedPixels, height, width)


@dataclass(frozen=True)
class DatasetIndex:
    folder: Path
    kind: str  # "rle" | "png"
    entries: tuple[Entry, ...]
    sources: tuple[Path, ...] = field(default=())  # every file the layouts are read from

    def fingerprint(self, size: int) -> str:
        """Changes when a file is added, removed, replaced or touched, or the cache size changes."""
        digest = hashlib.sha256(f"{self.kind}:{size}".encode())
        for path in sorted({e.image for e in self.entries} | set(self.sources)):
            stat = path.stat()
            digest.update(f"{path.relative_to(self.folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def scan_dataset(folder: Path | str) -> DatasetIndex:
    """The dataset's photos paired with their layouts, or DesignDatasetError / LayoutError saying what is wrong."""
    folder = Path(folder)
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise DesignDatasetError(f"{folder} has no images/ folder.", hint=LAYOUT_HELP)
    photos = {p.name: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    if (folder / "train.csv").is_file():
        return _rle_index(folder, photos)
    if (folder / "masks").is_dir():
        return _png_index(folder, photos)
    raise DesignDatasetError(f"{folder} has neither train.csv nor a masks/ folder.", hint=LAYOUT_HELP)


def _read_rows(path: Path) -> dict[str, list[tuple[int, str, int, int]]]:
    by_image: dict[str, list[tuple[int, str, int, int]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise DesignDatasetError(f"{path} lacks the column(s) {', '.join(missing)}.", hint=LAYOUT_HELP)
        for line, row in enumerate(reader, start=2):
            try:
                class_id = int(str(row["ClassId"]).split("_")[0])
                height, width = int(row["Height"]), int(row["Width"])
            except ValueError:
                raise DesignDatasetError(f"{path}, line {line}: ClassId, Height and Width must be numbers.",
                                         hint=LAYOUT_HELP) from None
            if not 0 <= class_id < NUM_CLASSES:
                raise LayoutError(f"{path}, line {line}: ClassId {class_id} is outside 0–{NUM_CLASSES - 1}.",
                                  hint=f"FGVC6 has {NUM_CLASSES} classes (easyphoto.design.layout.CLASSES).")
            by_image.setdefault(str(row["ImageId"]), []).append((class_id, row["EncodedPixels"], height, width))
    return by_image


def _photo_for(image_id: str, photos: dict[str, Path]) -> Path | None:
    if image_id in photos:
        return photos[image_id]
    return next((photos[image_id + s] for s in IMAGE_SUFFIXES if image_id + s in photos), None)


def _rle_index(folder: Path, photos: dict[str, Path]) -> DatasetIndex:
    csv_file = folder / "train.csv"
    rows = _read_rows(csv_file)
    paired = {image_id: _photo_for(image_id, photos) for image_id in rows}
    missing = sorted(i for i, p in paired.items() if p is None)
    if missing:
        raise DesignDatasetError(f"{len(missing)} image(s) of {csv_file.name} are not in images/: {_listing(missing)}.",
                                 hint="Copy those photos into images/, or remove their rows from train.csv.")
    unlabelled = sorted(set(photos) - {p.name for p in paired.values()})
    if unlabelled:
        raise DesignDatasetError(f"{len(unlabelled)} photo(s) in images/ have no mask in {csv_file.name}: "
                                 f"{_listing(unlabelled)}.", hint="Add their rows, or move the photos out.")
    entries = tuple(Entry(p.name, p, rows=tuple(sorted(rows[i], key=lambda r: r[0])))
                    for i, p in sorted(paired.items(), key=lambda item: item[1].name))
    return _non_empty(DatasetIndex(folder, "rle", entries, (csv_file,)))


def _png_index(folder: Path, photos: dict[str, Path]) -> DatasetIndex:
    masks = {p.stem: p for p in sorted((folder / "masks").glob("*.png"))}
    missing = sorted(name for name, path in photos.items() if path.stem not in masks)
    if missing:
        raise DesignDatasetError(f"{len(missing)} photo(s) have no mask in masks/: {_listing(missing)}.",
                                 hint="Add masks/<image name>.png for each (a label PNG: 0–45 a class, 255 "
                                      "background), or move the photos out.")
    stems = {p.stem for p in photos.values()}
    orphans = sorted(f"{stem}.png" for stem in masks if stem not in stems)
    if orphans:
        raise DesignDatasetError(f"{len(orphans)} mask(s) in masks/ have no photo in images/: {_listing(orphans)}.",
                                 hint="Add the photos, or remove those masks.")
    entries = tuple(Entry(name, path, mask=masks[path.stem]) for name, path in photos.items())
    return _non_empty(DatasetIndex(folder, "png", entries, tuple(masks[p.stem] for p in photos.values())))


def _non_empty(index: DatasetIndex) -> DatasetIndex:
    if not index.entries:
        raise DesignDatasetError(f"{index.folder} has no photos.", hint=LAYOUT_HELP)
    return index


def read_labels(entry: Entry, size: tuple[int, int]) -> np.ndarray:
    """The entry's full-size (H, W) labels, int32 (255 background); `size` is the photo's (width, height)."""
    if entry.mask is not None:
        return _png_labels(entry.mask, size)
    labels = np.full((size[1], size[0]), BACKGROUND, np.int32)
    for class_id, encoded, height, width in entry.rows:
        if (width, height) != size:
            raise DesignDatasetError(f"{entry.name} is {size[0]}×{size[1]}, but a mask of it in train.csv says "
                                     f"{width}×{height}.", hint="Use the photo the masks were drawn on.")
        labels[decode_rle(encoded, height, width)] = class_id
    return labels


def _png_labels(path: Path, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode_is_labels = image.mode in ("L", "P", "I", "I;16")
            array = np.asarray(image.convert("L") if image.mode == "P" else image) if mode_is_labels else \
                np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DesignDatasetError(f"masks/{path.name} is not a readable PNG ({exc}).") from exc
    if (array.shape[1], array.shape[0]) != size:
        raise DesignDatasetError(f"masks/{path.name} is {array.shape[1]}×{array.shape[0]}, its photo "
                                 f"{size[0]}×{size[1]}.", hint="A mask has its photo's size.")
    if not mode_is_labels:
        try:
            return from_colours(array).astype(np.int32)
        except LayoutError as exc:
            raise LayoutError(f"masks/{path.name}: {exc.message}", hint=exc.hint) from exc
    return array.astype(np.int32)


def check_values(labels: np.ndarray, name: str) -> None:
    """LayoutError when a full-size layout has labels outside 0–45 (and not the background), before the resize
    could drop a stray pixel; said with the values and the first position, as check_layout says it."""
    check_label_values(labels, name)


def checked_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """check_layout's verdict on a resized, non-empty layout, naming the photo."""
    try:
        return check_layout(labels)
    except LayoutError as exc:
        raise LayoutError(f"{name}: {exc.message}", hint=exc.hint) from exc
