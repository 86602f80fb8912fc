"""Double of Mikubill/sd-webui-controlnet:scripts/global_state.py: ControlNet model discovery (host-api.md 4.6).

``cn_models["<stem> [<sd_models.model_hash(file)>]"] = path`` ("None" first) from models/ControlNet, the
extension's own models/ folder, opts.control_net_models_path and --controlnet-dir; ``cn_models_names`` maps the
lower-cased stem to that key.
"""

import os
from collections import OrderedDict
from typing import Dict, List, Tuple

from modules import scripts, sd_models, shared
from modules.paths import models_path

from scripts.enums import StableDiffusionVersion

CN_MODEL_EXTS = [".pt", ".pth", ".ckpt", ".safetensors", ".bin"]
cn_models_dir = os.path.join(models_path, "ControlNet")
cn_models_dir_old = os.path.join(scripts.basedir(), "models")
cn_models = OrderedDict()  # "My_Lora(abcd1234)" -> C:/path/to/model.safetensors
cn_models_names = {}  # "my_lora" -> "My_Lora(abcd1234)"

default_detectedmap_dir = os.path.join("detected_maps")
script_dir = scripts.basedir()


def traverse_all_files(curr_path, model_list):
    f_list = [(os.path.join(curr_path, entry.name), entry.stat()) for entry in os.scandir(curr_path)
              if os.path.isdir(curr_path)]
    for f_info in f_list:
        fname, fstat = f_info
        if os.path.splitext(fname)[1] in CN_MODEL_EXTS:
            model_list.append(f_info)
        elif os.path.isdir(fname):
            model_list = traverse_all_files(fname, model_list)
    return model_list


def get_all_models(sort_by, filter_by, path):
    res = OrderedDict()
    fileinfos = traverse_all_files(path, [])
    filter_by = filter_by.strip(" ")
    if len(filter_by) != 0:
        fileinfos = [x for x in fileinfos if filter_by.lower() in os.path.basename(x[0]).lower()]
    if sort_by == "name":
        fileinfos = sorted(fileinfos, key=lambda x: os.path.basename(x[0]))
    elif sort_by == "date":
        fileinfos = sorted(fileinfos, key=lambda x: -x[1].st_mtime)
    elif sort_by == "path name":
        fileinfos = sorted(fileinfos)
    for finfo in fileinfos:
        filename = finfo[0]
        name = os.path.splitext(os.path.basename(filename))[0]
        if name != "None":  # prevent a hypothetical "None.pt" from being listed
            res[name + f" [{sd_models.model_hash(filename)}]"] = filename
    return res


def update_cn_models():
    cn_models.clear()
    ext_dirs = (shared.opts.data.get("control_net_models_path", None), getattr(shared.cmd_opts, "controlnet_dir", None))
    extra_lora_paths = (p for p in ext_dirs if p is not None and os.path.exists(p))
    for path in [cn_models_dir, cn_models_dir_old, *extra_lora_paths]:
        if not os.path.isdir(path):
            continue
        sort_by = shared.opts.data.get("control_net_models_sort_models_by", "name")
        filter_by = shared.opts.data.get("control_net_models_name_filter", "")
        found = get_all_models(sort_by, filter_by, path)
        cn_models.update({**found, **cn_models})
    cn_models_copy = OrderedDict(cn_models)
    cn_models.clear()
    cn_models.update({**{"None": None}, **cn_models_copy})  # "None" first
    cn_models_names.clear()
    for name_and_hash, filename in cn_models.items():
        if filename is None:
            continue
        name = os.path.splitext(os.path.basename(filename))[0].lower()
        cn_models_names[name] = name_and_hash


def get_sd_version() -> StableDiffusionVersion:
    sd = shared.sd_model
    if getattr(sd, "is_sdxl", False):
        return StableDiffusionVersion.SDXL
    if getattr(sd, "is_sd2", False):
        return StableDiffusionVersion.SD2x
    if getattr(sd, "is_sd1", False):
        return StableDiffusionVersion.SD1x
    return StableDiffusionVersion.UNKNOWN


def select_control_type(control_type: str, sd_version: StableDiffusionVersion = StableDiffusionVersion.UNKNOWN,
                        cn_models: Dict = cn_models) -> Tuple[List[str], List[str], str, str]:
    """(preprocessor labels, model names, default preprocessor, default model) for a control type tag."""
    from scripts.supported_preprocessor import Preprocessor

    pattern = control_type.lower()
    all_models = list(cn_models.keys())
    if pattern == "all":
        preprocessors = [p.label for p in Preprocessor.get_sorted_preprocessors()]
        return preprocessors, all_models, "none", "None"
    filtered_preprocessors = [p.label for p in Preprocessor.get_filtered_preprocessors(control_type)]
    filtered_models = ["None"] + [m for m in all_models if pattern in m.lower()]
    default_preprocessor = Preprocessor.get_default_preprocessor(control_type).label
    default_model = filtered_models[1] if len(filtered_models) > 1 else "None"
    return filtered_preprocessors, filtered_models, default_preprocessor, default_model
