"""Double of Mikubill/sd-webui-controlnet:scripts/api.py: the /controlnet/* routes of host-api.md 5.2."""

import base64
import io

import numpy as np
from modules import script_callbacks
from modules.api import api
from PIL import Image

from scripts import external_code, global_state
from scripts.supported_preprocessor import Preprocessor


def encode_to_base64(image):
    if isinstance(image, str):
        return image
    if isinstance(image, Image.Image):
        return api.encode_pil_to_base64(image).decode("utf-8")
    if isinstance(image, np.ndarray):
        return encode_np_to_base64(image)
    return ""


def encode_np_to_base64(image):
    return api.encode_pil_to_base64(Image.fromarray(image)).decode("utf-8")


def encode_tensor_to_base64(obj) -> str:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return base64.b64encode(buffer.getvalue()).decode("utf-8")


def controlnet_api(_, app):
    from fastapi import Body, HTTPException

    @app.get("/controlnet/version")
    async def version():
        return {"version": external_code.get_api_version()}

    @app.get("/controlnet/model_list")
    async def model_list(update: bool = True):
        return {"model_list": external_code.get_models(update=update)}

    @app.get("/controlnet/module_list")
    async def module_list(alias_names: bool = False):
        modules = external_code.get_modules(alias_names)
        return {"module_list": modules, "module_detail": external_code.get_modules_detail(alias_names)}

    @app.get("/controlnet/control_types")
    async def control_types():
        result = {}
        for tag in ["All", *Preprocessor.get_all_preprocessor_tags()]:
            modules, models, default_option, default_model = global_state.select_control_type(tag)
            result[tag] = {"module_list": modules, "model_list": models, "default_option": default_option,
                           "default_model": default_model}
        return {"control_types": result}

    @app.get("/controlnet/settings")
    async def settings():
        return {"control_net_unit_count": external_code.get_max_models_num()}

    @app.post("/controlnet/detect")
    async def detect(controlnet_module: str = Body("none", title="Controlnet Module"),
                     controlnet_input_images: list = Body([], title="Controlnet Input Images"),
                     controlnet_processor_res: int = Body(-1, title="Controlnet Processor Resolution"),
                     controlnet_threshold_a: float = Body(-1, title="Controlnet Threshold a"),
                     controlnet_threshold_b: float = Body(-1, title="Controlnet Threshold b"),
                     controlnet_masks: list = Body([], title="Controlnet Masks"),
                     low_vram: bool = Body(False, title="Low vram")):
        preprocessor = Preprocessor.get_preprocessor(controlnet_module)
        if preprocessor is None:
            raise HTTPException(status_code=422, detail="Module not available")
        if len(controlnet_input_images) == 0:
            raise HTTPException(status_code=422, detail="No image selected")
        results = []
        for image in controlnet_input_images:
            np_image = external_code.to_base64_nparray(image)
            results.append(encode_np_to_base64(preprocessor(np_image, controlnet_processor_res)))
        return {"images": results, "info": "Success"}


script_callbacks.on_app_started(controlnet_api)
