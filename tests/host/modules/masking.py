"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/masking.py: crop regions for "inpaint only masked"."""

from PIL import Image, ImageFilter, ImageOps


def _as_image(mask):
    return mask if isinstance(mask, Image.Image) else Image.fromarray(mask)


def get_crop_region_v2(mask, pad=0):
    """Bounding box (x1, y1, x2, y2) of the non-black mask pixels grown by ``pad``; None for an all-black mask."""
    mask = _as_image(mask)
    box = mask.getbbox()
    if not box:
        return None
    if not pad:
        return box
    x1, y1, x2, y2 = box
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.size[0]), min(y2 + pad, mask.size[1])


def get_crop_region(mask, pad=0):
    """Legacy variant: for an all-black mask it still returns a (possibly inverted, i.e. invalid) box."""
    mask = _as_image(mask)
    box = get_crop_region_v2(mask, pad)
    if box:
        return box
    x1, y1 = mask.size
    x2 = y2 = 0
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.size[0]), min(y2 + pad, mask.size[1])


def _grow(low, high, desired, limit):
    """Grow [low, high) to length ``desired`` around its centre, shifted back inside [0, limit)."""
    diff = int(desired - (high - low))
    low -= diff // 2
    high += diff - diff // 2
    if high >= limit:
        shift = high - limit
        high -= shift
        low -= shift
    if low < 0:
        high -= low
        low -= low
    if high >= limit:
        high = limit
    return low, high


def expand_crop_region(crop_region, processing_width, processing_height, image_width, image_height):
    """Expand the crop region so that its aspect ratio matches processing_width x processing_height."""
    x1, y1, x2, y2 = crop_region
    ratio_crop_region = (x2 - x1) / (y2 - y1)
    ratio_processing = processing_width / processing_height
    if ratio_crop_region > ratio_processing:
        y1, y2 = _grow(y1, y2, (x2 - x1) / ratio_processing, image_height)
    else:
        x1, x2 = _grow(x1, x2, (y2 - y1) * ratio_processing, image_width)
    return x1, y1, x2, y2


def fill(image, mask):
    """Fill the masked area with progressively less blurred copies of the unmasked surroundings."""
    image_mod = Image.new("RGBA", (image.width, image.height))
    image_masked = Image.new("RGBa", (image.width, image.height))
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    image_masked = image_masked.convert("RGBa")
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = image_masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            image_mod.alpha_composite(blurred)
    return image_mod.convert("RGB")
