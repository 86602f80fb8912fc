"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/upscaler_utils.py: ``upscale_with_model`` runs the model
on the whole image (the double's models are Lanczos stand-ins; tiling would not change their result)."""


def upscale_with_model(model, img, *, tile_size, tile_overlap=0, desc="tiled upscale"):
    return model(img.convert("RGB"))
