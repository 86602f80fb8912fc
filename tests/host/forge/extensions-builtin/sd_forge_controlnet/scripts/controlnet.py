"""Double of Forge's extensions-builtin/sd_forge_controlnet/scripts/controlnet.py (``ControlNetForForgeOfficial``).

Title "ControlNet" (so ``alwayson_scripts.controlnet`` and title lookups still work); dict args go through
``ControlNetUnit.from_dict``; the preprocessor must be a Forge label ("None", not "none") and the model the exact
"name [hash]" (KeyError otherwise) -- errors are swallowed by the ScriptRunner like on the real host. Detected maps
go to ``p.extra_result_images`` (-> ``Processed.extra_images``), not into ``processed.images``.
"""

from typing import Tuple

import numpy as np
from lib_controlnet import api, external_code, global_state
from lib_controlnet.external_code import ControlNetUnit
from modules import images, masking, script_callbacks, scripts, shared
from modules.processing import StableDiffusionProcessing, StableDiffusionProcessingImg2Img
from PIL import Image


class ControlNetCachedParameters:
    def __init__(self):
        self.preprocessor = None
        self.model = None
        self.control_cond = None


class _UnitControl:
    def __init__(self, index, is_img2img):
        self.value = ControlNetUnit(enabled=False)
        self.label = f"ControlNet Unit {index}"
        self.elem_id = f"{'img2img' if is_img2img else 'txt2img'}_controlnet_ControlNet-{index}"


class ControlNetForForgeOfficial(scripts.Script):
    sorting_priority = 10

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        count = shared.opts.data.get("control_net_unit_count", 3)
        return tuple(_UnitControl(i, is_img2img) for i in range(count))

    def get_enabled_units(self, units):
        units = [ControlNetUnit.from_dict(unit) if isinstance(unit, dict) else unit for unit in units]
        assert all(isinstance(unit, ControlNetUnit) for unit in units)
        return [x for x in units if x.enabled]

    @staticmethod
    def try_crop_image_with_a1111_mask(p: StableDiffusionProcessing, unit: ControlNetUnit, input_image: np.ndarray,
                                       resize_mode: external_code.ResizeMode, preprocessor) -> np.ndarray:
        a1111_mask_image = getattr(p, "image_mask", None)
        if not (isinstance(p, StableDiffusionProcessingImg2Img) and p.inpaint_full_res and a1111_mask_image is not None):
            return input_image
        mask = a1111_mask_image.convert("L")
        crop_region = masking.get_crop_region_v2(np.array(mask), p.inpaint_full_res_padding)
        if crop_region is None:
            return input_image
        crop_region = masking.expand_crop_region(crop_region, p.width, p.height, mask.width, mask.height)
        image = images.resize_image(resize_mode.int_value(), Image.fromarray(input_image), mask.width, mask.height)
        image = images.resize_image(2, image.crop(crop_region), p.width, p.height)
        return np.asarray(image)

    def get_input_data(self, p, unit, preprocessor, h, w):
        """The unit image must be an ndarray (a dict or PIL image crashes here, as on Forge)."""
        resize_mode = external_code.resize_mode_from_value(unit.resize_mode)
        if unit.image is None:
            init_images = getattr(p, "init_images", None)
            if not init_images:
                raise ValueError("controlnet is enabled but no input image is given")
            return [np.asarray(init_images[0].convert("RGB"))], resize_mode
        image = unit.image
        if not isinstance(image, np.ndarray):
            raise TypeError(f"ControlNet unit image must be a numpy array, got {type(image).__name__}")
        image = self.try_crop_image_with_a1111_mask(p, unit, image, resize_mode, preprocessor)
        return [image], resize_mode

    @staticmethod
    def get_target_dimensions(p: StableDiffusionProcessing) -> Tuple[int, int, int, int]:
        h, w = p.height, p.width
        if getattr(p, "enable_hr", False):
            return h, w, int(h * p.hr_scale), int(w * p.hr_scale)
        return h, w, h, w

    def process_unit_after_click_generate(self, p: StableDiffusionProcessing, unit: ControlNetUnit,
                                          params: ControlNetCachedParameters, *args, **kwargs):
        h, w, _, _ = self.get_target_dimensions(p)
        preprocessor = global_state.get_preprocessor(unit.module)
        input_list, resize_mode = self.get_input_data(p, unit, preprocessor, h, w)
        model_filename = global_state.get_controlnet_filename(unit.model)
        params.preprocessor = preprocessor
        params.model = model_filename
        detected = preprocessor(input_list[0], unit.processor_res, unit.threshold_a, unit.threshold_b)
        detected_map = images.resize_image(resize_mode.int_value(), Image.fromarray(detected), w, h)
        if unit.save_detected_map and not shared.opts.data.get("control_net_no_detectmap", False):
            p.extra_result_images.append(detected_map)

    def process_unit_before_every_sampling(self, p: StableDiffusionProcessing, unit: ControlNetUnit,
                                           params: ControlNetCachedParameters, *args, **kwargs):
        pass

    @staticmethod
    def bound_check_params(unit: ControlNetUnit) -> None:
        """Out-of-range (e.g. -1) slider values fall back to 512 / the preprocessor defaults."""
        if unit.processor_res < 64 or unit.processor_res > 2048:
            unit.processor_res = 512

    def process_unit_after_every_sampling(self, p: StableDiffusionProcessing, unit: ControlNetUnit,
                                          params: ControlNetCachedParameters, *args, **kwargs):
        pass

    def process(self, p, *args, **kwargs):
        self.current_params = {}
        enabled_units = self.get_enabled_units(args)
        for i, unit in enumerate(enabled_units):
            self.bound_check_params(unit)
            params = ControlNetCachedParameters()
            self.process_unit_after_click_generate(p, unit, params, *args, **kwargs)
            self.current_params[i] = params
            p.extra_generation_params[f"ControlNet {i}"] = ", ".join(
                f"{k.replace('_', ' ').title()}: {getattr(unit, k).value if hasattr(getattr(unit, k), 'value') else getattr(unit, k)}"
                for k in ControlNetUnit.infotext_fields())

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        pass

    def postprocess(self, p, processed, *args):
        self.current_params = {}


script_callbacks.on_app_started(api.controlnet_api)
