"""Images and files sent to the API as base64 strings or data URLs, decoded with limits and named errors."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from pathlib import Path

from easyphoto.errors import InvalidRequest
from easyphoto.store import atomic_write_bytes

MAX_IMAGES = 50
MAX_IMAGE_BYTES = 25 * 1024 * 1024
_DATA_URL = re.compile(r"data:[\w/+.-]*(?:;[\w=.-]+)*;base64,", re.IGNORECASE)
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"), (b"BM", "bmp"),
          (b"II*\x00", "tif"), (b"MM\x00*", "tif"))


def decode_base64(value: str, field: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Bytes of a base64 string (a data-URL prefix is allowed); errors name the field and the limit."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field}: empty; expected base64 or a data URL.")
    text = _DATA_URL.sub("", value.strip(), count=1)
    if len(text) * 3 // 4 > max_bytes:  # checked before decoding, so an oversized body costs nothing
        raise InvalidRequest(f"{field}: about {len(text) * 3 // 4 / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit.",
                             hint="Send a smaller image (a 12 MP JPEG is about 4 MB).")
    try:
        return base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field}: not valid base64.", hint="Encode the file bytes with standard base64.") from None


def decode_images(values: list[str], field: str) -> list[tuple[bytes, str]]:
    """(bytes, file suffix) per image. Content is judged later by the photo check, which says what is wrong."""
    if len(values) > MAX_IMAGES:
        raise InvalidRequest(f"{field}: {len(values)} images; at most {MAX_IMAGES} per request.")
    decoded = []
    for index, value in enumerate(values):
        data = decode_base64(value, f"{field}[{index}]")
        decoded.append((data, sniff_suffix(data)))
    return decoded


def sniff_suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((suffix for magic, suffix in _MAGIC if data.startswith(magic)), "bin")


def write_uploads(images: list[tuple[bytes, str]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [atomic_write_bytes(folder / f"upload_{i:02d}_{uuid.uuid4().hex[:6]}.{suffix}", data)
            for i, (data, suffix) in enumerate(images)]
