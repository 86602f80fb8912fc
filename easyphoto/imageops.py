"""Image operations shared by training and portraits; first of all, loading untrusted uploads safely.

`load_photo` never crashes on a bad upload: every failure is an `UnreadableImage` whose message says, in words, why
the file was refused (empty, not an image, truncated, too large, ...). Sizes are checked from the header before
any pixel is decoded, so a 20000×20000 "decompression bomb" costs nothing. Whatever decodes is returned as 8-bit
RGB, upright (EXIF orientation applied), with notes on what was converted.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from easyphoto.errors import EasyPhotoError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_MEGAPIXELS = 64.0
MIN_SIDE = 32  # below this there is no usable face


class UnreadableImage(EasyPhotoError):
    phase = "photos"
    http_status = 422


@dataclass
class LoadedImage:
    image: Image.Image  # RGB, 8-bit, upright
    notes: list[str] = field(default_factory=list)  # conversions applied, in words
    original_mode: str = ""
    original_size: tuple[int, int] = (0, 0)


def load_photo(
    source: Path | str | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    min_side: int = MIN_SIDE,
) -> LoadedImage:
    """Decode an uploaded photo into upright 8-bit RGB, or raise UnreadableImage saying why not."""
    data = _read_bytes(source, max_bytes)
    name = source.name if isinstance(source, Path) else (Path(source).name if isinstance(source, str) else "upload")
    try:
        return _load(data, name, max_megapixels, min_side)
    except UnreadableImage:
        raise
    except MemoryError:
        raise UnreadableImage(f"{name}: decoding it needs more memory than is free.",
                              hint="Resize the photo and upload it again.") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes is this file's fault, said so
        raise UnreadableImage(f"{name}: the image could not be decoded: {_decoder_reason(exc)}.",
                              hint="The file is damaged or in an unusual variant of its format; export it again "
                                   "as JPEG or PNG.") from None


def photo_thumbnail(path: Path | str, size: int = 256) -> Image.Image:
    """The photo at most size×size (EXIF-upright), or a grey tile when it cannot be read (the report says why)."""
    try:
        image = load_photo(path).image
    except EasyPhotoError:
        return Image.new("RGB", (size, size), (128, 128, 128))
    image.thumbnail((size, size))
    return image


def _decoder_reason(exc: Exception) -> str:
    """PIL's own words where it has some ("Truncated File Read" means the header ends early)."""
    text = str(exc).strip()
    if "truncated" in text.lower():
        return "truncated (the file ends inside its header or image data)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load(data: bytes, name: str, max_megapixels: float, min_side: int) -> LoadedImage:
    image = _open(data, name)
    width, height = image.size
    if width * height > max_megapixels * 1_000_000:
        raise UnreadableImage(
            f"{name}: {width}×{height} pixels ({width * height / 1e6:.0f} MP) is larger than the {max_megapixels:g} MP "
            "limit; it was not decoded.",
            hint="Resize the photo, or raise 'Largest accepted photo' in the settings if it is genuine.",
        )
    loaded = LoadedImage(image, original_mode=image.mode, original_size=(width, height))
    if getattr(image, "is_animated", False):
        loaded.notes.append(f"animated ({getattr(image, 'n_frames', '?')} frames): the first frame is used")
        image.seek(0)
    image = _decode(image, name)
    image = _upright(image, loaded.notes)
    loaded.image = _to_rgb8(image, loaded.notes)
    if min(loaded.image.size) < min_side:
        raise UnreadableImage(
            f"{name}: {loaded.image.width}×{loaded.image.height} pixels is too small to hold a usable face "
            f"(at least {min_side} px per side).",
        )
    return loaded


def _read_bytes(source: Path | str | bytes, max_bytes: int) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise UnreadableImage(f"{path.name}: file not found or not a regular file.")
        size = path.stat().st_size
        if size > max_bytes:
            raise UnreadableImage(f"{path.name}: {_human(size)} is over the {_human(max_bytes)} upload limit.")
        try:
            data = path.read_bytes()
        except OSError as exc:  # permissions, a file that vanished, an I/O error: that photo's reason, not a crash
            raise UnreadableImage(f"{path.name}: the file cannot be read ({exc.strerror or exc}).") from None
    if not data:
        raise UnreadableImage("The file is empty (0 bytes).", hint="Upload the photo again.")
    if len(data) > max_bytes:
        raise UnreadableImage(f"{_human(len(data))} is over the {_human(max_bytes)} upload limit.")
    return data


# Image formats by their first bytes, for files PIL cannot open (a JPEG cut inside its header is still a JPEG).
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"), (b"BM", "bmp"),
          (b"II*\x00", "tif"), (b"MM\x00*", "tif"))
_PIL_SUFFIX = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp",
               "JPEG2000": "jp2"}


def image_suffix(data: bytes) -> str | None:
    """The file extension of the image format `data` really is ("jpg", "png", ...), judged from its header and
    never from a file name; None when it is no image format we know."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    known = next((suffix for magic, suffix in _MAGIC if data.startswith(magic)), None)
    if known:
        return known
    try:  # other formats PIL identifies from the header alone (nothing is decoded)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return _PIL_SUFFIX.get(image.format or "", (image.format or "").lower()[:5] or None)
    except Exception:  # noqa: BLE001 - unknown or damaged: no format to name
        return None


def _human(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"


def _open(data: bytes, name: str) -> Image.Image:
    # Image.open reads the header only; MAX_IMAGE_PIXELS is disabled here because we apply our own limit above
    # with a clearer message, and PIL's own check would only warn below 2× its limit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise UnreadableImage(
                f"{name}: not an image PIL can read (the content is not JPEG, PNG, WebP, GIF, BMP or TIFF).",
                hint="Check that the file really is a photo; renaming a file does not change its format.",
            ) from None
        except Image.DecompressionBombError as exc:  # PIL refuses headers above 2× its own limit by itself
            claimed = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(claimed.group(1)) / 1e6:.0f} MP" if claimed else "an enormous size"
            raise UnreadableImage(
                f"{name}: the header claims {size}, a decompression bomb; it was not decoded.",
                hint="Resize the photo to a normal size and upload it again.",
            ) from None


def _decode(image: Image.Image, name: str) -> Image.Image:
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated upload is reported, not silently padded with grey
    try:
        image.load()
        return image
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated (the file ends before the image data does)" if "truncated" in str(exc) else str(exc)
        raise UnreadableImage(f"{name}: the image data is damaged: {reason}.", hint="Upload the photo again.") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _upright(image: Image.Image, notes: list[str]) -> Image.Image:
    orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
    if orientation not in (None, 1):
        notes.append(f"rotated upright (EXIF orientation {orientation})")
        return ImageOps.exif_transpose(image)
    return image


def _to_rgb8(image: Image.Image, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        notes.append(f"{mode} high-bit-depth image scaled to 8 bits")
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        array = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        notes.append("transparent areas composited onto white")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode not in ("L", "P", "1"):
        notes.append(f"{mode} converted to RGB")
    return image.convert("RGB")


def to_array(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB array (contiguous), the form the face models take."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------- colour and blending


def color_transfer(source: np.ndarray, target: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Shift `source`'s colours so their LAB mean and spread match `target`'s (Reinhard et al., 2001).

    Statistics are taken inside `region` (HxW, >0 = in) of both images when given; the whole of `source` is
    shifted, so callers blend the result back with a soft mask. Both are HxWx3 uint8 RGB of the same size."""
    import cv2

    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = (region > 0) if region is not None else np.ones(source.shape[:2], bool)
    if inside.sum() < 16:  # too few pixels for stable statistics: leave the colours alone
        return source.copy()
    src_mean, src_std = src[inside].mean(0), src[inside].std(0) + 1e-6
    tgt_mean, tgt_std = tgt[inside].mean(0), tgt[inside].std(0) + 1e-6
    shifted = (src - src_mean) * (tgt_std / src_std) + tgt_mean
    return cv2.cvtColor(np.clip(shifted, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def soft_mask(mask: np.ndarray, blur: float) -> np.ndarray:
    """HxW float32 0..1 from a 0/255 mask, Gaussian-feathered by `blur` px (sigma)."""
    import cv2

    weight = mask.astype(np.float32) / 255.0
    return cv2.GaussianBlur(weight, (0, 0), blur) if blur > 0 else weight


def blend(base: np.ndarray, over: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """base × (1 − w) + over × w with an HxW weight in 0..1; uint8 out. Where w is 0 the base is kept exactly."""
    w = weight[..., None].astype(np.float32)
    mixed = base.astype(np.float32) * (1 - w) + over.astype(np.float32) * w
    out = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return np.where(w > 0, out, base)


def smooth_skin(image: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Bilateral filter inside the skin mask (0/255), blended at half strength so pores and freckles stay.

    Used on training crops (easyphoto.train.dataset) and on finished portraits (skin_retouch)."""
    import cv2

    smoothed = cv2.bilateralFilter(image, d=9, sigmaColor=40, sigmaSpace=9)
    weight = (cv2.GaussianBlur(skin.astype(np.float32) / 255.0, (0, 0), 3) * 0.5)[..., None]
    return np.clip(image * (1 - weight) + smoothed * weight, 0, 255).astype(np.uint8)


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    if px <= 0:
        return mask.copy()
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1)))


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    if px <= 0:
        return mask.copy()
    return cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1)))
