"""The offline resize cache: every photo and its layout letterboxed ONCE to the training size (not a 2500 px photo
decoded and resized per batch), stored as two .npy arrays, memory-mapped by the trainer:

    images.npy   (N, S, S, 3) uint8 RGB, white where the letterbox pads
    labels.npy   (N, S, S)    uint8 labels, 0–45 a class, 255 background (one byte per pixel, not one-hot)
    index.json   the dataset's fingerprint, the size, the names kept and those skipped (and why)

index.json is written last and removed first, so a cache is used only when it is complete and still matches the
dataset (its fingerprint). A layout that loses every garment pixel in the resize is skipped and reported, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from easyphoto.design.layout import BACKGROUND
from easyphoto.design.smis.fgvc6 import (
    DatasetIndex,
    DesignDatasetError,
    Entry,
    check_values,
    checked_labels,
    read_labels,
)
from easyphoto.errors import Cancelled
from easyphoto.store import atomic_path, atomic_write_json, read_json

CACHE_VERSION = 1
Progress = Callable[[int, int, str], None]  # (done, total, photo name)


@dataclass(frozen=True)
class LayoutCache:
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped
    labels: np.ndarray  # (N, S, S) uint8, memory-mapped
    names: tuple[str, ...]
    skipped: tuple[dict, ...] = ()

    def __len__(self) -> int:
        return len(self.names)


def letterbox(image, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A PIL photo and its full-size labels scaled so the longer side is `size`, centred on a white square (labels:
    background); the photo with Lanczos, the labels with nearest-neighbour (never a mixed label)."""
    from PIL import Image

    width, height = image.size
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), 255, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = np.asarray(image.convert("RGB").resize((new_w, new_h),
                                                                                        Image.LANCZOS))
    rows = np.minimum(((np.arange(new_h) + 0.5) * height / new_h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * width / new_w).astype(np.int64), width - 1)
    out = np.full((size, size), BACKGROUND, np.uint8)
    out[top:top + new_h, left:left + new_w] = labels[np.ix_(rows, cols)]
    return canvas, out


def _open_photo(entry: Entry):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(entry.image)
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DesignDatasetError(f"images/{entry.name} is not a readable image ({exc}).",
                                 hint="Replace or remove that photo.") from exc
    return image


def cache_entry(entry: Entry, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(photo, labels) at the cache size, or None when no garment pixel survives the resize."""
    image = _open_photo(entry)
    labels = read_labels(entry, image.size)
    check_values(labels, entry.name)
    pixels, small = letterbox(image, labels, size)
    if not (small != BACKGROUND).any():
        return None
    return pixels, checked_labels(small, entry.name)


def load_cache(folder: Path, index: DatasetIndex, size: int) -> LayoutCache | None:
    """The cache in `folder` when it is complete and made from this dataset at this size; None otherwise."""
    meta_file = folder / "index.json"
    if not meta_file.is_file():
        return None
    meta = read_json(meta_file)
    if meta.get("version") != CACHE_VERSION or meta.get("fingerprint") != index.fingerprint(size):
        return None
    count = int(meta["count"])
    images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)[:count]
    labels = np.load(folder / "labels.npy", mmap_mode="r", allow_pickle=False)[:count]
    return LayoutCache(images, labels, tuple(meta["names"]), tuple(meta.get("skipped", ())))


def build_cache(folder: Path, index: DatasetIndex, size: int, *, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None) -> LayoutCache:
    """The cache for (dataset, size): reused when it matches, else rebuilt (every photo checked on the way)."""
    cached = load_cache(folder, index, size)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.json").unlink(missing_ok=True)
    total = len(index.entries)
    names, skipped = [], []
    with atomic_path(folder / "images.npy") as images_tmp, atomic_path(folder / "labels.npy") as labels_tmp:
        images = np.lib.format.open_memmap(images_tmp, mode="w+", dtype=np.uint8, shape=(total, size, size, 3))
        labels = np.lib.format.open_memmap(labels_tmp, mode="w+", dtype=np.uint8, shape=(total, size, size))
        for number, entry in enumerate(index.entries):
            if should_stop is not None and should_stop():
                raise Cancelled("The job was cancelled while the dataset was being cached.",
                                hint="Submit it again: the cache is rebuilt from the start.")
            cached_entry = cache_entry(entry, size)
            if cached_entry is None:
                skipped.append({"name": entry.name, "reason": f"no garment pixel is left at {size}×{size}"})
            else:
                images[len(names)], labels[len(names)] = cached_entry
                names.append(entry.name)
            if progress is not None:
                progress(number + 1, total, entry.name)
        images.flush()
        labels.flush()
        del images, labels
    if not names:
        raise DesignDatasetError(f"No layout of {index.folder} keeps a garment at {size}×{size}.",
                                 hint="Use larger garments or a larger image_size.")
    atomic_write_json(folder / "index.json", {"version": CACHE_VERSION, "fingerprint": index.fingerprint(size),
                                              "size": size, "count": len(names), "names": names, "skipped": skipped})
    return load_cache(folder, index, size)


def batch_indices(count: int, batch: int, step: int, seed: int) -> np.ndarray:
    """The dataset rows of training step `step` (0-based): a fresh permutation of the rows each epoch, drawn from
    (seed, epoch) alone, so a resumed training reads exactly the batches an uninterrupted one would."""
    positions = np.arange(step * batch, (step + 1) * batch)
    epochs, offsets = positions // count, positions % count
    rows = np.empty(batch, np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, int(epoch)]).permutation(count)
        rows[epochs == epoch] = order[offsets[epochs == epoch]]
    return rows


def flips(batch: int, step: int, seed: int) -> np.ndarray:
    """Which samples of step `step` are mirrored (the augmentation SPADE uses), from (seed, step) alone."""
    return np.random.default_rng([seed, step, 1]).random(batch) < 0.5
