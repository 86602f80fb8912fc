"""Double of Forge's lib_controlnet/api.py: /controlnet/model_list, module_list, control_types, detect (no version)."""

from modules.api import api
from PIL import Image

from lib_controlnet import external_code, global_state


def controlnet_api(_, app):
    from fastapi import Body, HTTPException

    @app.get("/controlnet/model_list")
    async def model_list():
        global_state.update_controlnet_filenames()
        return {"model_list": [x for x in global_state.get_all_controlnet_names() if x != "None"]}

    @app.get("/controlnet/module_list")
    async def module_list():
        return {"module_list": global_state.get_all_preprocessor_names()}

    @app.get("/controlnet/control_types")
    async def control_types():
        result = {}
        for tag in global_state.get_all_preprocessor_tags():
            modules, models, default_option, default_model = global_state.select_control_type(tag)
            result[tag] = {"module_list": modules, "model_list": models, "default_option": default_option,
                           "default_model": default_model}
        return {"control_types": result}

    @app.post("/controlnet/detect")
    async def detect(controlnet_module: str = Body("None", title="Controlnet Module"),
                     controlnet_input_images: list = Body([], title="Controlnet Input Images"),
                     controlnet_processor_res: int = Body(512, title="Controlnet Processor Resolution")):
        if controlnet_module not in global_state.supported_preprocessors:
            raise HTTPException(status_code=422, detail="Module not available")
        preprocessor = global_state.get_preprocessor(controlnet_module)
        results = []
        for encoded in controlnet_input_images:
            detected = preprocessor(external_code.to_base64_nparray(encoded), controlnet_processor_res)
            results.append(api.encode_pil_to_base64(Image.fromarray(detected)).decode("utf-8"))
        return {"images": results, "info": "Success"}
