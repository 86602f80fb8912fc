"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/sd_vae.py: VAE list and the "loaded" VAE file.

Forge flavour: ``reload_vae_weights`` does nothing (VAEs are chosen via opts.forge_additional_modules).
"""

import os

from modules import hashes, host_env, paths, shared

IS_FORGE = host_env.is_forge()

vae_path = os.path.abspath(os.path.join(paths.models_path, "VAE"))
vae_ignore_keys = {"model_ema.decay", "model_ema.num_updates"}
vae_dict = {}

base_vae = None
loaded_vae_file = None
checkpoint_info = None

checkpoints_loaded = {}


def get_loaded_vae_name():
    return os.path.basename(loaded_vae_file) if loaded_vae_file else None


def get_loaded_vae_hash():
    if loaded_vae_file is None:
        return None
    sha256 = hashes.sha256(loaded_vae_file, "vae")
    return sha256[0:10] if sha256 else None


def refresh_vae_list():
    """models/VAE/**/*.{pt,ckpt,safetensors} and *.vae.* next to checkpoints, keyed by file name."""
    vae_dict.clear()
    candidates = list(shared.walk_files(vae_path, allowed_extensions=[".pt", ".ckpt", ".safetensors"]))
    from modules import sd_models

    for folder in [sd_models.model_path, shared.cmd_opts.ckpt_dir, shared.cmd_opts.vae_dir]:
        if folder and os.path.isdir(folder):
            candidates += [x for x in shared.walk_files(folder, allowed_extensions=[".pt", ".ckpt", ".safetensors"])
                           if ".vae." in os.path.basename(x).lower() or folder == shared.cmd_opts.vae_dir]
    for filepath in sorted(set(candidates), key=lambda x: shared.natural_sort_key(os.path.basename(x))):
        vae_dict[os.path.basename(filepath)] = filepath


def find_vae_near_checkpoint(checkpoint_file):
    checkpoint_path = os.path.basename(checkpoint_file).rsplit(".", 1)[0]
    for vae_file in vae_dict.values():
        if os.path.basename(vae_file).startswith(checkpoint_path):
            return vae_file
    return None


def is_automatic():
    return shared.opts.sd_vae in {"Automatic", "auto"}


def resolve_vae(checkpoint_file):
    """(vae_file, source) for opts.sd_vae: "None" -> None, "Automatic" -> a *.vae.* next to the checkpoint."""
    if shared.cmd_opts.vae_path is not None:
        return shared.cmd_opts.vae_path, "from commandline argument"
    if shared.opts.sd_vae == "None":
        return None, None
    if is_automatic():
        return find_vae_near_checkpoint(checkpoint_file), "found near the checkpoint"
    vae_file = vae_dict.get(shared.opts.sd_vae)
    if vae_file is None:
        print(f"Couldn't find VAE named {shared.opts.sd_vae}; using None instead")
        return None, None
    return vae_file, "specified in settings"


def load_vae(model, vae_file=None, vae_source="from unknown source"):
    global loaded_vae_file
    loaded_vae_file = vae_file


def clear_loaded_vae():
    global loaded_vae_file
    loaded_vae_file = None


unspecified = object()


def reload_vae_weights(sd_model=None, vae_file=unspecified):
    if IS_FORGE:
        return None
    if not sd_model:
        sd_model = shared.sd_model
    checkpoint_file = sd_model.sd_checkpoint_info.filename
    if vae_file == unspecified:
        vae_file, vae_source = resolve_vae(checkpoint_file)
    else:
        vae_source = "from function argument"
    if loaded_vae_file == vae_file:
        return None
    load_vae(sd_model, vae_file, vae_source)
    return sd_model
