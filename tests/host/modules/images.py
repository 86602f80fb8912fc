"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/images.py: resize modes, grids, PNG saving with infotext."""

import io
import math
import os

import numpy as np
from modules import script_callbacks, shared
from PIL import Image, ImageColor, PngImagePlugin

LANCZOS = Image.Resampling.LANCZOS if hasattr(Image, "Resampling") else Image.LANCZOS
NEAREST = Image.Resampling.NEAREST if hasattr(Image, "Resampling") else Image.NEAREST


def image_grid(imgs, batch_size=1, rows=None):
    if rows is None:
        n_rows = shared.opts.data.get("n_rows", -1)
        if n_rows > 0:
            rows = n_rows
        elif n_rows == 0:
            rows = batch_size
        else:
            rows = round(math.sqrt(len(imgs)))
    rows = max(1, min(rows, len(imgs)))
    cols = math.ceil(len(imgs) / rows)
    params = script_callbacks.ImageGridLoopParams(imgs, cols, rows)
    script_callbacks.image_grid_callback(params)
    w, h = map(max, zip(*(img.size for img in imgs), strict=False))
    color = ImageColor.getcolor(shared.opts.data.get("grid_background_color", "#ffffff"), "RGB")
    grid = Image.new("RGB", size=(params.cols * w, params.rows * h), color=color)
    for i, img in enumerate(params.imgs):
        w_offset = 0 if img.size[0] == w else (w - img.size[0]) // 2
        h_offset = 0 if img.size[1] == h else (h - img.size[1]) // 2
        grid.paste(img, box=(i % params.cols * w + w_offset, i // params.cols * h + h_offset))
    return grid


def _resize(im, w, h):
    return im.resize((w, h), resample=LANCZOS)


def _crop_and_resize(im, width, height):
    ratio, src_ratio = width / height, im.width / im.height
    src_w = width if ratio > src_ratio else im.width * height // im.height
    src_h = height if ratio <= src_ratio else im.height * width // im.width
    resized = _resize(im, src_w, src_h)
    res = Image.new("RGB" if im.mode not in ("L", "RGBA") else im.mode, (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    return res


def _resize_and_fill(im, width, height):
    """Fit inside, then stretch the edge rows/columns into the empty borders (real mode 2)."""
    ratio, src_ratio = width / height, im.width / im.height
    src_w = width if ratio < src_ratio else im.width * height // im.height
    src_h = height if ratio >= src_ratio else im.height * width // im.width
    resized = _resize(im, src_w, src_h)
    res = Image.new("RGB" if im.mode not in ("L", "RGBA") else im.mode, (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill_height = height // 2 - src_h // 2
        if fill_height > 0:
            res.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)), box=(0, 0))
            res.paste(resized.resize((width, fill_height), box=(0, resized.height, width, resized.height)),
                      box=(0, fill_height + src_h))
    elif ratio > src_ratio:
        fill_width = width // 2 - src_w // 2
        if fill_width > 0:
            res.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)), box=(0, 0))
            res.paste(resized.resize((fill_width, height), box=(resized.width, 0, resized.width, height)),
                      box=(fill_width + src_w, 0))
    return res


def resize_image(resize_mode, im, width, height, upscaler_name=None):
    """0/3: just resize; 1: crop and resize (cover, centre crop); 2: resize and fill (fit, stretch borders)."""
    if resize_mode == 1:
        return _crop_and_resize(im, width, height)
    if resize_mode == 2:
        return _resize_and_fill(im, width, height)
    return _resize(im, width, height)


def sanitize_filename_part(text, replace_spaces=True):
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    text = "".join(c for c in text if c not in '<>:"/\\|?*\n\r\t')
    return text.lstrip()[:128].rstrip(". ")


def save_image_with_geninfo(image, geninfo, filename, extension=None, existing_pnginfo=None,
                            pnginfo_section_name="parameters"):
    extension = extension or os.path.splitext(filename)[1]
    if extension.lower() == ".png":
        pnginfo = PngImagePlugin.PngInfo()
        for k, v in (existing_pnginfo or {}).items():
            if isinstance(k, str) and isinstance(v, str):
                pnginfo.add_text(k, v)
        if geninfo is not None:
            pnginfo.add_text(pnginfo_section_name, geninfo)
        image.save(filename, format="PNG", pnginfo=pnginfo)
    else:
        image.convert("RGB").save(filename, quality=shared.opts.data.get("jpeg_quality", 80))


def save_image(image, path, basename, seed=None, prompt=None, extension="png", info=None, short_filename=False,
               no_prompt=False, grid=False, pnginfo_section_name="parameters", p=None, existing_info=None,
               forced_filename=None, suffix="", save_to_dirs=None):
    """Write a real PNG "<NNNNN>-<seed>[-basename]<suffix>.<ext>" into ``path``; returns (fullfn, None).

    The before/after image-saved callbacks run like in the real function; ``path=None`` fails like the real one.
    """
    os.makedirs(path, exist_ok=True)
    if forced_filename is None:
        basecount = len([x for x in os.listdir(path) if not x.startswith(".")])
        name = "-".join(str(x) for x in (f"{basecount:05}", seed, basename) if x not in (None, ""))
        forced_filename = name + suffix
    fullfn = os.path.join(path, f"{forced_filename}.{extension}")
    params = script_callbacks.ImageSaveParams(image, p, fullfn, {pnginfo_section_name: info, **(existing_info or {})})
    script_callbacks.before_image_saved_callback(params)
    info = params.pnginfo.get(pnginfo_section_name, None)
    geninfo = info if shared.opts.data.get("enable_pnginfo", True) else None
    save_image_with_geninfo(params.image, geninfo, params.filename, f".{extension}", existing_info,
                            pnginfo_section_name)
    script_callbacks.image_saved_callback(params)
    return params.filename, None


def read_info_from_image(image: Image.Image) -> "tuple[str | None, dict]":
    items = dict(image.info or {})
    geninfo = items.pop("parameters", None)
    return geninfo, items


def image_data(data):
    try:
        image = read(io.BytesIO(data))
        textinfo, _ = read_info_from_image(image)
        return textinfo, None
    except Exception:
        pass
    try:
        return data.decode("utf8"), None
    except Exception:
        return None, None


def flatten(img, bgcolor):
    """Composite an RGBA image over ``bgcolor`` and return RGB."""
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def read(fp, **kwargs):
    image = Image.open(fp, **kwargs)
    return fix_image(image)


def fix_image(image: Image.Image):
    if image is None:
        return None
    try:
        from PIL import ImageOps

        image = ImageOps.exif_transpose(image)
    except Exception:
        pass
    return image


def fake_image(seed, width, height):
    """Double-only: deterministic "generated" RGB image (8x8 random blocks from ``seed``, upscaled)."""
    rng = np.random.default_rng(int(seed) % (2**32))
    blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks, "RGB").resize((width, height), resample=NEAREST)
