"""Double of Mikubill/sd-webui-controlnet:scripts/controlnet.py: the "ControlNet" alwayson Script.

``process`` resolves each enabled unit's model like ``build_control_model`` (exact key, lower-cased stem, shortest
stem containing the search) and raises ``RuntimeError("model not found: ...")`` where the real one does -- the
ScriptRunner swallows it and the image is generated without control. Resolved units are recorded as
``p.extra_generation_params["ControlNet N"]``; ``postprocess`` appends one fake detected map per enabled unit unless
``opts.data["control_net_no_detectmap"]`` or ``unit.save_detected_map`` is False.
"""

import os
from collections import OrderedDict
from copy import copy
from typing import Dict, Optional, Tuple

import numpy as np
from internal_controlnet.external_code import ControlNetUnit
from modules import images, masking, processing, script_callbacks, scripts, shared
from modules.processing import StableDiffusionProcessing, StableDiffusionProcessingImg2Img
from PIL import Image, ImageFilter, ImageOps

from scripts import external_code, global_state
from scripts.enums import ResizeMode, StableDiffusionVersion
from scripts.supported_preprocessor import Preprocessor

global_state.update_cn_models()


def find_closest_lora_model_name(search: str):
    """Exact "name [hash]" key, else the lower-cased stem, else the shortest stem containing ``search``."""
    if not search:
        return None
    if search in global_state.cn_models:
        return search
    search = search.lower()
    if search in global_state.cn_models_names:
        return global_state.cn_models_names.get(search)
    applicable = [name for name in global_state.cn_models_names.keys() if search in name.lower()]
    if not applicable:
        return None
    applicable = sorted(applicable, key=lambda name: len(name))
    return global_state.cn_models_names[applicable[0]]


def prepare_mask(mask: Image.Image, p: processing.StableDiffusionProcessing) -> Image.Image:
    """The A1111 inpaint mask as "L", inverted/blurred like processing does."""
    mask = mask.convert("L")
    if getattr(p, "inpainting_mask_invert", False):
        mask = ImageOps.invert(mask)
    blur = max(getattr(p, "mask_blur_x", 0), getattr(p, "mask_blur_y", 0))
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask


class ControlModel:
    """What the double "loads": the resolved model name and file."""

    def __init__(self, name, path):
        self.name = name
        self.path = path


class _UnitControl:
    """Stands for one unit's UI group: its ``value`` is the default (disabled) ControlNetUnit."""

    def __init__(self, index, is_img2img):
        self.value = ControlNetUnit()
        self.label = f"ControlNet Unit {index}"
        self.elem_id = f"{'img2img' if is_img2img else 'txt2img'}_controlnet_ControlNet-{index}"


class Script(scripts.Script):
    model_cache: Dict[str, ControlModel] = OrderedDict()

    def __init__(self) -> None:
        super().__init__()
        self.enabled_units = []
        self.detected_map = []

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        count = shared.opts.data.get("control_net_unit_count", 3)
        return tuple(_UnitControl(i, is_img2img) for i in range(count))

    @staticmethod
    def clear_control_model_cache():
        Script.model_cache.clear()

    @staticmethod
    def load_control_model(p, unet, model) -> ControlModel:
        if model in Script.model_cache:
            return Script.model_cache[model]
        control_model = Script.build_control_model(p, unet, model)
        if shared.opts.data.get("control_net_model_cache_size", 2) > 0:
            Script.model_cache[model] = control_model
        return control_model

    @staticmethod
    def build_control_model(p, unet, model) -> ControlModel:
        if model is None or model == "None":
            raise RuntimeError("You have not selected any ControlNet Model.")
        model_path = global_state.cn_models.get(model, None)
        if model_path is None:
            resolved = find_closest_lora_model_name(model)
            model_path = global_state.cn_models.get(resolved, None)
            if model_path is None:
                raise RuntimeError(f"model not found: {model}")
            model = resolved
        if not os.path.exists(model_path):
            raise ValueError(f"file not found: {model_path}")
        return ControlModel(model, model_path)

    @staticmethod
    def get_remote_call(p, attribute, default=None, idx=0, strict=False, force=False):
        """Legacy ``p.control_net_*`` attributes (only with opts control_net_allow_script_control)."""
        if not force and not shared.opts.data.get("control_net_allow_script_control", False):
            return default
        value = getattr(p, attribute, None)
        if value is None:
            return default
        if isinstance(value, (list, tuple)):
            return value[idx] if idx < len(value) else default
        return value if idx == 0 or not strict else default

    @staticmethod
    def parse_remote_call(p, unit: ControlNetUnit, idx):
        selector = Script.get_remote_call
        unit = copy(unit)
        unit.enabled = selector(p, "control_net_enabled", unit.enabled, idx, strict=True)
        unit.module = selector(p, "control_net_module", unit.module, idx)
        unit.model = selector(p, "control_net_model", unit.model, idx)
        unit.weight = selector(p, "control_net_weight", unit.weight, idx)
        unit.guidance_start = selector(p, "control_net_guidance_start", unit.guidance_start, idx)
        unit.guidance_end = selector(p, "control_net_guidance_end", unit.guidance_end, idx)
        return unit

    @staticmethod
    def get_enabled_units(p):
        units = external_code.get_all_units_in_processing(p)
        enabled_units = []
        for idx, unit in enumerate(units):
            local_unit = Script.parse_remote_call(p, unit, idx)
            if local_unit.enabled:
                enabled_units.append(copy(local_unit))
        return enabled_units

    @staticmethod
    def choose_input_image(p: processing.StableDiffusionProcessing, unit: ControlNetUnit,
                           idx: int) -> Tuple[np.ndarray, ResizeMode]:
        """The unit image (RGBA), else p.init_images[0] in img2img; txt2img without an image raises."""
        images_rgba = unit.get_input_images_rgba()
        if images_rgba:
            return images_rgba[0], unit.resize_mode
        init_images = getattr(p, "init_images", None)
        if isinstance(p, StableDiffusionProcessingImg2Img) and init_images:
            image = np.asarray(init_images[0].convert("RGBA")).copy()
            return image, external_code.resize_mode_from_value(p.resize_mode)
        raise ValueError("controlnet is enabled but no input image is given")

    @staticmethod
    def try_crop_image_with_a1111_mask(p: StableDiffusionProcessing, unit: ControlNetUnit, input_image: np.ndarray,
                                       resize_mode: ResizeMode) -> np.ndarray:
        """With img2img + mask + "Only masked", crop the unit image the way A1111 crops the init image."""
        a1111_mask_image = getattr(p, "image_mask", None)
        is_only_masked_inpaint = (isinstance(p, StableDiffusionProcessingImg2Img) and p.inpaint_full_res
                                  and a1111_mask_image is not None)
        if "reference" in unit.module or not is_only_masked_inpaint or not unit.inpaint_crop_input_image:
            return input_image
        channels = [Image.fromarray(input_image[:, :, i]) for i in range(input_image.shape[2])]
        mask = prepare_mask(a1111_mask_image, p)
        crop_region = masking.get_crop_region_v2(np.array(mask), p.inpaint_full_res_padding)
        if crop_region is None:
            return input_image
        crop_region = masking.expand_crop_region(crop_region, p.width, p.height, mask.width, mask.height)
        channels = [images.resize_image(resize_mode.int_value(), x, mask.width, mask.height) for x in channels]
        channels = [x.crop(crop_region) for x in channels]
        channels = [images.resize_image(ResizeMode.OUTER_FIT.int_value(), x, p.width, p.height) for x in channels]
        return np.concatenate([np.asarray(x)[:, :, None] for x in channels], axis=2)

    @staticmethod
    def check_sd_version_compatible(unit: ControlNetUnit) -> None:
        cnet_sd_version = StableDiffusionVersion.detect_from_model_name(unit.model)
        if cnet_sd_version == StableDiffusionVersion.UNKNOWN:
            return
        sd_version = global_state.get_sd_version()
        if not sd_version.is_compatible_with(cnet_sd_version):
            raise Exception(f"ControlNet model {unit.model}({cnet_sd_version}) is not compatible with sd model"
                            f"({sd_version})")

    @staticmethod
    def get_target_dimensions(p: StableDiffusionProcessing) -> Tuple[int, int, int, int]:
        h, w = p.height, p.width
        hr_y = int(p.height * p.hr_scale) if getattr(p, "enable_hr", False) else h
        hr_x = int(p.width * p.hr_scale) if getattr(p, "enable_hr", False) else w
        return h, w, hr_y, hr_x

    def _process_unit(self, p, unit: ControlNetUnit):
        Script.check_sd_version_compatible(unit)
        control_model = Script.load_control_model(p, None, unit.model)
        unit.model = control_model.name
        input_image, resize_mode = Script.choose_input_image(p, unit, len(self.detected_map))
        input_image = Script.try_crop_image_with_a1111_mask(p, unit, input_image, resize_mode)
        preprocessor = Preprocessor.get_preprocessor(unit.module)
        detected = preprocessor(input_image, unit.processor_res, unit.threshold_a, unit.threshold_b)
        h, w, _, _ = Script.get_target_dimensions(p)
        detected_map = images.resize_image(resize_mode.int_value(), Image.fromarray(detected), w, h)
        return detected_map

    @staticmethod
    def control_model_type(model_name: str) -> str:
        """What build_control_model would make of the file (controlnet_model_guess.py): the double has no state
        dict, so the kind is read from the name the way users must name these files ("ip-adapter" / "ip_adapter"
        = IP-Adapter incl. FaceID, PuLID and InstantID's adapter; a ControlNet with "instant_id" = InstantID)."""
        name = model_name.lower()
        if "ip-adapter" in name or "ip_adapter" in name:
            return "IPAdapter"
        return "InstantID" if "instant_id" in name else "ControlNet"

    def controlnet_main_entry(self, p):
        self.enabled_units = Script.get_enabled_units(p)
        self.detected_map = []
        types = []
        for i, unit in enumerate(self.enabled_units):
            detected_map = self._process_unit(p, unit)
            types.append(Script.control_model_type(unit.model))
            if types[-1] == "InstantID":
                # the real hook takes the face embedding of the IP-Adapter unit right before it
                assert i > 0, "InstantID control model should follow ipadapter model."
                assert types[i - 1] == "IPAdapter", "InstantID control model should follow ipadapter model."
            p.extra_generation_params[f"ControlNet {i}"] = unit.serialize()
            if unit.save_detected_map:
                self.detected_map.append((detected_map, unit.module))

    def controlnet_hack(self, p):
        self.controlnet_main_entry(p)

    @staticmethod
    def process_has_sdxl_refiner(p):
        return getattr(p, "refiner_checkpoint", None) not in (None, "", "None")

    def process(self, p, *args, **kwargs):
        if not Script.process_has_sdxl_refiner(p):
            self.controlnet_hack(p)

    def before_process_batch(self, p, *args, **kwargs):
        if Script.process_has_sdxl_refiner(p):
            self.controlnet_hack(p)

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess(self, p, processed, *args):
        if shared.opts.data.get("control_net_no_detectmap", False):
            return
        for detected_map, _module in self.detected_map:
            processed.images.append(detected_map)


def on_ui_settings():
    section = ("control_net", "ControlNet")
    for key, default, label in [
        ("control_net_detectedmap_dir", global_state.default_detectedmap_dir, "Directory for detected maps auto saving"),
        ("control_net_models_path", "", "Extra path to scan for ControlNet models"),
        ("control_net_modules_path", "", "Path to directory containing annotator model directories"),
        ("control_net_unit_count", 3, "Multi-ControlNet: ControlNet unit number (requires restart)"),
        ("control_net_model_cache_size", 2, "Model cache size (requires restart)"),
        ("control_net_inpaint_blur_sigma", 7, "ControlNet inpainting Gaussian blur sigma"),
        ("control_net_no_detectmap", False, "Do not append detectmap to output"),
        ("control_net_detectmap_autosaving", False, "Allow detectmap auto saving"),
        ("control_net_allow_script_control", False, "Allow other script to control this extension"),
        ("control_net_sync_field_args", True, "Paste ControlNet parameters in infotext"),
        ("controlnet_show_batch_images_in_ui", False, "Show batch images in gradio gallery output"),
        ("controlnet_increment_seed_during_batch", False, "Increment seed after each controlnet batch iteration"),
        ("controlnet_disable_openpose_edit", False, "Disable openpose edit"),
        ("controlnet_disable_photopea_edit", False, "Disable photopea edit"),
        ("controlnet_photopea_warning", True, "Photopea popup warning"),
        ("controlnet_ignore_noninpaint_mask", False, "Ignore mask on ControlNet input image if control type is not "
                                                     "inpaint"),
        ("controlnet_clip_detector_on_cpu", False, "Load CLIP preprocessor model on CPU"),
        ("controlnet_control_type_dropdown", False, "Use dropdown for control type selection"),
    ]:
        shared.opts.add_option(key, shared.OptionInfo(default, label, section=section))


script_callbacks.on_ui_settings(on_ui_settings)
