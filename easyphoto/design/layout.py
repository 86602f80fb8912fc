"""Garment layouts: the 46 garment-part classes of FGVC6 / iMaterialist-Fashion-2019 (also Fashionpedia's), their
palette, and the checks every layout passes before a route draws it.

    layout = read_layout(png_bytes)            # (H, W) uint8: 0..45 = a class, 255 = background; errors named
    check_layout(layout)                       # labels outside 0–45, an empty layout, a wrong size: LayoutError
    colour = visualise(layout)                 # RGB: the editor's palette, white background
    condition = seg_condition(layout)          # RGB: the segmentation ControlNet's ADE20K colour coding

A layout is stored as labels [H, W] (one byte per pixel, not one-hot: a 256×256 layout is 64 KiB, not 2.9 MiB),
as the dataset cache and the generator take it. A label PNG is a one-channel image of those values; an RGB PNG is
read back through the palette (the editor's download), and any other colour is refused by position.
"""

from __future__ import annotations

import io

import numpy as np

from easyphoto.errors import EasyPhotoError

BACKGROUND = 255
CLASSES: tuple[str, ...] = (
    "shirt, blouse", "top, t-shirt, sweatshirt", "sweater", "cardigan", "jacket", "vest", "pants", "shorts", "skirt",
    "coat", "dress", "jumpsuit", "cape", "glasses", "hat", "headband, head covering, hair accessory", "tie", "glove",
    "watch", "belt", "leg warmer", "tights, stockings", "sock", "shoe", "bag, wallet", "scarf", "umbrella", "hood",
    "collar", "lapel", "epaulette", "sleeve", "pocket", "neckline", "buckle", "zipper", "applique", "bead", "bow",
    "flower", "fringe", "ribbon", "rivet", "ruffle", "sequin", "tassel",
)  # FGVC6 ClassId 0..45: 27 garments and accessories (0–26), then 19 garment parts (27–45)
NUM_CLASSES = len(CLASSES)
GARMENTS = range(0, 27)
PARTS = range(27, NUM_CLASSES)
MIN_SIDE, MAX_SIDE = 64, 2048
BACKGROUND_RGB = (255, 255, 255)


def _palette() -> np.ndarray:
    """46 well-separated colours (golden-angle hues, two value levels), none near white: the editor's and the
    visualisation's colour of each class."""
    import colorsys

    colours = []
    for index in range(NUM_CLASSES):
        hue = (index * 0.381966) % 1.0
        saturation = 0.85 if index % 2 == 0 else 0.6
        value = 0.9 if index < 23 else 0.62
        colours.append([round(c * 255) for c in colorsys.hsv_to_rgb(hue, saturation, value)])
    return np.asarray(colours, np.uint8)


PALETTE = _palette()

# ADE20K colours (the 150-class palette control_v11p_sd15_seg was trained on) chosen per class: main garments take
# ADE20K's "apparel" colour family, accessories the colours of the objects they resemble, and each part a distinct
# nearby colour so the ControlNet sees every region's boundary. The seg ControlNet knows no "sleeve" or "collar":
# what it gets is where the regions are; the prompt and an optional garment LoRA say what they are.
ADE_APPAREL = (0, 255, 112)  # ADE20K "apparel, wearing apparel, dress, clothes"


def _seg_palette() -> np.ndarray:
    colours = np.zeros((NUM_CLASSES, 3), np.uint8)
    for index in range(NUM_CLASSES):
        shift = (index * 37) % 96
        if index in GARMENTS:
            colours[index] = (shift, 255, 112 + (index * 5) % 60)
        else:
            colours[index] = (255 - shift, 112 + (index * 7) % 80, shift)
    return colours


SEG_PALETTE = _seg_palette()


class LayoutError(EasyPhotoError):
    """A layout no route can draw: said with what is wrong and where."""

    phase = "design"
    http_status = 422


def check_layout(labels: np.ndarray, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """The layout as (H, W) uint8 after every check; `size` (width, height) when the route needs exactly that."""
    array = np.asarray(labels)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise LayoutError(f"A layout is one label per pixel (H, W); this one has shape {array.shape}.",
                          hint="Send a one-channel label PNG, or the editor's colour PNG.")
    height, width = array.shape
    if size is not None and (width, height) != tuple(size):
        raise LayoutError(f"The layout is {width}×{height}, this route needs {size[0]}×{size[1]}.",
                          hint="Resize the canvas in the editor, or pick the size the route was trained at.")
    if not (min(width, height) >= MIN_SIDE and max(width, height) <= MAX_SIDE):
        raise LayoutError(f"The layout is {width}×{height}; sides must be {MIN_SIDE}–{MAX_SIDE} px.")
    if not np.issubdtype(array.dtype, np.integer):
        raise LayoutError(f"Layout labels must be integers, not {array.dtype}.")
    check_label_values(array)
    if not (array != BACKGROUND).any():
        raise LayoutError("The layout is empty: every pixel is background.",
                          hint="Paint at least one garment class in the editor.")
    return array.astype(np.uint8)


def check_label_values(labels: np.ndarray, where: str = "") -> None:
    """LayoutError for labels outside 0–45 that are not the background: how many, which values, the first pixel;
    `where` names the file when there is one."""
    bad = (labels != BACKGROUND) & ((labels < 0) | (labels >= NUM_CLASSES))
    if bad.any():
        ys, xs = np.nonzero(bad)
        values = sorted({int(v) for v in np.unique(labels[bad])})[:8]
        raise LayoutError(f"{where + ': ' if where else ''}{int(bad.sum())} layout pixels have labels outside "
                          f"0–{NUM_CLASSES - 1} (values {values}; first at x={int(xs[0])}, y={int(ys[0])}).",
                          hint=f"Labels are the {NUM_CLASSES} FGVC6 classes 0–{NUM_CLASSES - 1}; background is "
                               f"{BACKGROUND}.")


def read_layout(data: bytes, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """A layout from PNG bytes: a one-channel label image, or an RGB image in the editor's palette."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise LayoutError(f"The layout is not a readable image ({exc}).", hint="Send a PNG.") from exc
    if image.mode in ("L", "P", "I", "I;16"):
        array = np.asarray(image if image.mode != "P" else image.convert("L"))
        return check_layout(array.astype(np.int64), size=size)
    return check_layout(from_colours(np.asarray(image.convert("RGB"))), size=size)


def from_colours(rgb: np.ndarray) -> np.ndarray:
    """Labels of an RGB image painted in PALETTE (white = background); any other colour is refused by position."""
    flat = rgb.reshape(-1, 3).astype(np.int32)
    table = np.vstack([PALETTE.astype(np.int32), np.asarray([BACKGROUND_RGB], np.int32)])
    keys = flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]
    table_keys = table[:, 0] << 16 | table[:, 1] << 8 | table[:, 2]
    order = np.argsort(table_keys)
    position = np.searchsorted(table_keys[order], keys).clip(0, len(table_keys) - 1)
    found = table_keys[order][position] == keys
    if not found.all():
        first = int(np.argmax(~found))
        y, x = divmod(first, rgb.shape[1])
        raise LayoutError(f"{int((~found).sum())} pixels of the colour layout are not palette colours (first at "
                          f"x={x}, y={y}: {tuple(int(c) for c in rgb[y, x])}).",
                          hint="Paint with the editor's palette (no anti-aliasing), or send a label PNG.")
    labels = order[position]
    labels = np.where(labels == NUM_CLASSES, BACKGROUND, labels)
    return labels.reshape(rgb.shape[:2]).astype(np.int64)


def visualise(labels: np.ndarray) -> np.ndarray:
    """RGB uint8: each class in PALETTE, background white (the editor's view; the GAN's "layout is fake" input)."""
    out = np.full((*labels.shape, 3), 255, np.uint8)
    inside = labels != BACKGROUND
    out[inside] = PALETTE[labels[inside]]
    return out


def seg_condition(labels: np.ndarray) -> np.ndarray:
    """RGB uint8 for the segmentation ControlNet: SEG_PALETTE per class, background black (ADE20K's "unlabelled")."""
    out = np.zeros((*labels.shape, 3), np.uint8)
    inside = labels != BACKGROUND
    out[inside] = SEG_PALETTE[labels[inside]]
    return out


def layout_mask(labels: np.ndarray) -> np.ndarray:
    """uint8 0/255: where the layout has a class."""
    return ((np.asarray(labels) != BACKGROUND) * 255).astype(np.uint8)


def decode_rle(encoded: str, height: int, width: int) -> np.ndarray:
    """An FGVC6 run-length mask ("start length ..." pairs, 1-based, column-major as the competition's files are)
    as a bool (height, width) array; a malformed string or a run past the image is a LayoutError."""
    try:
        numbers = [int(v) for v in str(encoded).split()]
    except ValueError as exc:
        raise LayoutError(f"An RLE mask has a non-number: {str(encoded)[:40]!r}.") from exc
    if len(numbers) % 2:
        raise LayoutError("An RLE mask has an odd number of values (start/length pairs expected).")
    flat = np.zeros(height * width, bool)
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        if start < 1 or length < 0 or start - 1 + length > flat.size:
            raise LayoutError(f"An RLE run ({start}, {length}) lies outside the {width}×{height} image.")
        flat[start - 1:start - 1 + length] = True
    return flat.reshape((width, height)).T


__all__ = ["BACKGROUND", "CLASSES", "LayoutError", "NUM_CLASSES", "PALETTE", "SEG_PALETTE", "check_label_values",
           "check_layout",
           "decode_rle", "from_colours", "layout_mask", "read_layout", "seg_condition", "visualise"]
