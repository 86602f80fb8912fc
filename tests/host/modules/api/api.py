"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/api/api.py: the base64 image helpers extensions import.

fastapi is imported lazily (only for HTTPException), so importing this module stays light.
"""

import base64
import io

from modules import images, shared
from PIL import PngImagePlugin


def _http_error(status_code, detail):
    from fastapi.exceptions import HTTPException

    return HTTPException(status_code=status_code, detail=detail)


def script_name_to_index(name, scripts):
    try:
        return [script.title().lower() for script in scripts].index(name.lower())
    except Exception as e:
        raise _http_error(422, f"Script '{name}' not found") from e


def validate_sampler_name(name):
    from modules import sd_samplers

    config = sd_samplers.all_samplers_map.get(name, None)
    if config is None:
        raise _http_error(400, "Sampler not found")
    return name


def decode_base64_to_image(encoding):
    """base64 (optionally "data:image/...;base64," prefixed) -> PIL image; URLs are refused (no network in CI)."""
    if encoding.startswith("http://") or encoding.startswith("https://"):
        if not shared.opts.data.get("api_enable_requests", True):
            raise _http_error(500, "Requests not allowed")
        raise _http_error(500, "Invalid image url (the host double does not download)")
    if encoding.startswith("data:image/"):
        encoding = encoding.split(";")[1].split(",")[1]
    try:
        return images.read(io.BytesIO(base64.b64decode(encoding)))
    except Exception as e:
        raise _http_error(500, "Invalid encoded image") from e


def encode_pil_to_base64(image):
    """PIL image -> base64 bytes in opts.samples_format (PNG keeps the text chunks)."""
    with io.BytesIO() as output_bytes:
        if isinstance(image, str):
            return image
        fmt = shared.opts.data.get("samples_format", "png").lower()
        if fmt == "png":
            metadata = PngImagePlugin.PngInfo()
            use_metadata = False
            for key, value in image.info.items():
                if isinstance(key, str) and isinstance(value, str):
                    metadata.add_text(key, value)
                    use_metadata = True
            image.save(output_bytes, format="PNG", pnginfo=(metadata if use_metadata else None))
        elif fmt in ("jpg", "jpeg", "webp"):
            if image.mode in ("RGBA", "P"):
                image = image.convert("RGB")
            image.save(output_bytes, format="JPEG" if fmt in ("jpg", "jpeg") else "WEBP",
                       quality=shared.opts.data.get("jpeg_quality", 80))
        else:
            raise _http_error(500, "Invalid image format")
        bytes_data = output_bytes.getvalue()
    return base64.b64encode(bytes_data)
