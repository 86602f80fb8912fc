"""Double of Forge's lib_controlnet/global_state.py: exact "name [hash8]" model names and preprocessor labels.

``get_controlnet_filename`` is a plain dict lookup, so anything but the exact name raises KeyError; preprocessor
keys are the A1111 labels with "None" (not "none") for no preprocessing (host-api.md 6).
"""

import os
from typing import List, Tuple

from modules import sd_models, shared
from modules.paths import models_path

CN_MODEL_EXTS = [".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".patch"]


class _FakePreprocessor:
    """What Forge's preprocessor objects expose to callers (name, tags, sliders); calling gives a fake map."""

    def __init__(self, name, tags=(), sorting_priority=0, model_free=False):
        self.name = name
        self.tags = list(tags)
        self.sorting_priority = sorting_priority
        self.model_filename_filters = []
        self.do_not_need_model = model_free
        self.slider_resolution = {"minimum": 64, "maximum": 2048, "value": 512}

    def __call__(self, input_image, resolution=512, slider_1=None, slider_2=None, slider_3=None, **kwargs):
        import numpy as np

        rgb = np.asarray(input_image)[:, :, :3]
        return rgb.copy() if self.name == "None" else (255 - rgb).astype(np.uint8)


supported_preprocessors = {}
for _name, _tags in [
    ("None", []), ("canny", ["Canny"]), ("openpose", ["OpenPose"]), ("openpose_full", ["OpenPose"]),
    ("openpose_face", ["OpenPose"]), ("openpose_hand", ["OpenPose"]), ("dw_openpose_full", ["OpenPose"]),
    ("depth_midas", ["Depth"]), ("depth_leres", ["Depth"]), ("depth_leres++", ["Depth"]), ("depth_zoe", ["Depth"]),
    ("depth_anything", ["Depth"]), ("tile_resample", ["Tile"]), ("tile_colorfix", ["Tile"]),
    ("tile_colorfix+sharp", ["Tile"]), ("inpaint_global_harmonious", ["Inpaint"]), ("inpaint_only", ["Inpaint"]),
    ("inpaint_only+lama", ["Inpaint"]), ("CLIP-ViT-H (IPAdapter)", ["IP-Adapter"]),
    ("CLIP-ViT-bigG (IPAdapter)", ["IP-Adapter"]), ("InsightFace (InstantID)", ["Instant-ID"]),
    # sd_forge_ipadapter's FaceID Plus preprocessor, and forge_legacy_preprocessors' InstantID keypoints (its
    # instant_id_face_embedding, ip-adapter_face_id and ip-adapter_face_id_plus are commented out; no PuLID anywhere)
    ("InsightFace+CLIP-H (IPAdapter)", ["IP-Adapter"]), ("instant_id_face_keypoints", ["Instant-ID"]),
]:
    supported_preprocessors[_name] = _FakePreprocessor(_name, _tags, sorting_priority=100 if _name == "None" else 0)


def get_all_models(sort_by, filter_by, path):
    res = {}
    if not os.path.isdir(path):
        return res
    fileinfos = []
    for root, _, files in os.walk(path, followlinks=True):
        fileinfos += [os.path.join(root, f) for f in files if os.path.splitext(f)[1] in CN_MODEL_EXTS]
    filter_by = filter_by.strip(" ")
    if filter_by:
        fileinfos = [x for x in fileinfos if filter_by.lower() in os.path.basename(x).lower()]
    for filename in sorted(fileinfos, key=os.path.basename):
        name = os.path.splitext(os.path.basename(filename))[0]
        if name != "None":
            res[name + f" [{sd_models.model_hash(filename)}]"] = filename
    return res


controlnet_filename_dict = {"None": "model.safetensors"}
controlnet_names = ["None"]


def get_preprocessor(name):
    return supported_preprocessors[name]


def get_default_preprocessor(tag):
    ps = get_filtered_preprocessors(tag)
    assert len(ps) > 0
    return ps[0] if len(ps) == 1 else list(ps.values())[1]


def get_sorted_preprocessors():
    preprocessors = [p for k, p in supported_preprocessors.items() if k != "None"]
    preprocessors = sorted(preprocessors, key=lambda x: str(x.sorting_priority).zfill(8) + x.name)[::-1]
    results = {"None": supported_preprocessors["None"]}
    results.update({p.name: p for p in preprocessors})
    return results


def get_all_controlnet_names():
    return controlnet_names


def get_controlnet_filename(controlnet_name):
    return controlnet_filename_dict[controlnet_name]


def get_all_preprocessor_names():
    return list(get_sorted_preprocessors().keys())


def get_all_preprocessor_tags():
    tags = []
    for p in supported_preprocessors.values():
        tags += p.tags
    tags = sorted(set(tags))
    return ["All"] + tags


def get_filtered_preprocessors(tag):
    if tag == "All":
        return supported_preprocessors
    return {k: v for k, v in get_sorted_preprocessors().items() if tag in v.tags or k == "None"}


def get_filtered_preprocessor_names(tag):
    return list(get_filtered_preprocessors(tag).keys())


def get_filtered_controlnet_names(tag):
    filtered_preprocessors = get_filtered_preprocessors(tag)
    model_filename_filters = [tag.lower()]
    for p in filtered_preprocessors.values():
        model_filename_filters += p.model_filename_filters
    return [x for x in controlnet_names if x == "None" or any(f in x.lower() for f in model_filename_filters)]


def update_controlnet_filenames():
    global controlnet_filename_dict, controlnet_names
    controlnet_filename_dict = {"None": "model.safetensors"}
    controlnet_names = ["None"]
    ext_dirs = (shared.opts.data.get("control_net_models_path", None), getattr(shared.cmd_opts, "controlnet_dir", None))
    extra_lora_paths = (p for p in ext_dirs if p is not None and os.path.exists(p))
    model_paths = [os.path.join(models_path, "ControlNet"), os.path.join(models_path, "ControlNetPreprocessor"),
                   *extra_lora_paths]
    for path in model_paths:
        controlnet_filename_dict.update(get_all_models("name", "", path))
    controlnet_names = list(controlnet_filename_dict.keys())


def select_control_type(control_type: str) -> Tuple[List[str], List[str], str, str]:
    global controlnet_names
    pattern = control_type.lower()
    all_models = list(controlnet_names)
    if pattern == "all":
        preprocessors = get_sorted_preprocessors().values()
        return [p.name for p in preprocessors], all_models, "None", "None"
    filtered_model_list = get_filtered_controlnet_names(control_type)
    filtered_preprocessor_list = get_filtered_preprocessor_names(control_type)
    default_option = filtered_preprocessor_list[1] if len(filtered_preprocessor_list) > 1 else "None"
    default_model = filtered_model_list[1] if len(filtered_model_list) > 1 else "None"
    return filtered_preprocessor_list, filtered_model_list, default_option, default_model


update_controlnet_filenames()
