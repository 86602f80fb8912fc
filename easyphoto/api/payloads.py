"""Images and files sent to the API as base64 strings or data URLs, decoded with limits and named errors."""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from pathlib import Path

from easyphoto.errors import InvalidRequest
from easyphoto.store import atomic_write_bytes

# The request limits, stated once: the API's messages, its OpenAPI descriptions and the README quote these.
MAX_IMAGES = 50  # images per request
MAX_IMAGE_MB = 25
MAX_IMAGE_BYTES = MAX_IMAGE_MB * 1024 * 1024  # "25 MB" means 25 × 1024 × 1024 bytes everywhere
_DATA_URL = re.compile(r"data:(?P<mime>[^,;]*)(?P<params>(?:;[^,;]*)*),", re.IGNORECASE)
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"), (b"BM", "bmp"),
          (b"II*\x00", "tif"), (b"MM\x00*", "tif"))


def megabytes(size: int) -> str:
    """A byte count in the unit the limits are stated in (MB = 1024 × 1024 bytes), rounded up to 0.1 MB so that
    a size over a limit never reads as the limit itself."""
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value == int(value) else f"{math.ceil(value * 10) / 10:.1f} MB"


def decode_base64(value: str, field: str, *, max_bytes: int = MAX_IMAGE_BYTES, mime_prefix: str = "image/") -> bytes:
    """Bytes of a base64 string or a base64 data URL whose type starts with `mime_prefix`; errors name the field
    and the limit."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field}: empty; expected base64 or a data URL.")
    text = _strip_data_url(value.strip(), field, mime_prefix)
    # The decoded size, computed before decoding so that an oversized string costs nothing (exact for valid
    # base64, line breaks and padding included).
    size = _decoded_size(text)
    if size > max_bytes:
        raise InvalidRequest(f"{field}: about {megabytes(size)}, over the {megabytes(max_bytes)} limit.",
                             hint="Send a smaller image (a 12 MP JPEG is about 4 MB).")
    try:
        return base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field}: not valid base64.", hint="Encode the file bytes with standard base64.") from None


def _decoded_size(text: str) -> int:
    chars = len(text) - sum(text.count(c) for c in " \t\r\n")
    padding = len(text.rstrip()) - len(text.rstrip().rstrip("="))
    return max(chars * 3 // 4 - min(padding, 2), 0)


def _strip_data_url(text: str, field: str, mime_prefix: str) -> str:
    """The base64 part of a data URL (or `text` itself); refuses non-base64 data URLs and other media types."""
    if text[:5].lower() != "data:":
        return text
    match = _DATA_URL.match(text)
    params = match.group("params").lower().split(";") if match else []
    if match is None or "base64" not in params:
        raise InvalidRequest(f"{field}: only base64 data URLs are accepted (data:image/png;base64,...).")
    mime = match.group("mime").strip().lower()
    if not mime.startswith(mime_prefix):
        raise InvalidRequest(f"{field}: the data URL says {mime or 'no media type'!r}; expected {mime_prefix}*.",
                             hint="Send the image file itself (JPEG, PNG or WebP), not another kind of file.")
    return text[match.end():]


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


# ---------------------------------------------------------------------------------------------- multipart uploads

_FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and small text fields around the one file part


class UnsupportedMediaType(InvalidRequest):
    http_status = 415


class PayloadTooLarge(InvalidRequest):
    http_status = 413


class _OverLimit(Exception):
    pass


async def read_upload(request, file_field: str, *, max_bytes: int, text_fields: tuple[str, ...] = ()):
    """(file part, {text field: value}) of a multipart/form-data body, refused past `max_bytes`.

    The body is counted while Starlette's parser streams it, and the file part is spooled to a temporary file
    (in memory only up to 1 MB), so a large upload never sits in memory and an oversized one stops being read
    at the limit. The caller closes the returned form (`.close()`)."""
    from starlette.requests import Request

    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(f"Send the file as multipart/form-data with a file field {file_field!r}.",
                                   hint=f"curl -F {file_field}=@FILE ...")
    cap = max_bytes + _FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(file_field, max_bytes)
    counted = Request(request.scope, receive=_capped(request.receive, cap))
    try:
        form = await counted.form()
    except _OverLimit:
        raise _too_large(file_field, max_bytes) from None
    except Exception as exc:  # the parser's errors differ between Starlette versions; all mean a broken body
        raise InvalidRequest(f"The multipart body could not be read ({type(exc).__name__}).") from None
    try:
        return form, _form_fields(form, file_field, text_fields)
    except InvalidRequest:
        await form.close()
        raise


def _form_fields(form, file_field: str, text_fields: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(form.keys()) - {file_field, *text_fields})
    upload = form.get(file_field)
    if unknown or not hasattr(upload, "file"):
        problem = f"unknown fields {', '.join(unknown)}" if unknown else f"no file field {file_field!r}"
        raise InvalidRequest(f"The form has {problem}.",
                             hint=f"Send {file_field} as a file part; other fields: {', '.join(text_fields) or 'none'}.")
    values = {name: form.get(name) for name in text_fields if form.get(name) not in (None, "")}
    for name, value in values.items():
        if not isinstance(value, str):
            raise InvalidRequest(f"{name}: expected a text field, not a file.")
    return values


def _capped(receive, cap: int):
    total = 0

    async def counting_receive():
        nonlocal total
        message = await receive()
        if message.get("type") == "http.request":
            total += len(message.get("body", b""))
            if total > cap:
                raise _OverLimit()
        return message

    return counting_receive


def _too_large(field: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{field}: over the {megabytes(max_bytes)} limit.",
                           hint="Import a bundle exported without the dataset (include_dataset=false).")
