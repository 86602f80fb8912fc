"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/sd_models.py (host-api.md 3.6) -- no weights loaded.

Checkpoint discovery, ``CheckpointInfo`` naming/ids, the legacy 8-hex ``model_hash`` and the sha256 "shorthash"
gained at first load are real; the "model" is a ``FakeSdModel`` carrying the attributes extensions read.
Forge flavour: ``load_model``/``reload_model_weights``/``reuse_model_from_already_loaded`` do nothing and the
model is switched by ``forge_model_reload()`` during processing (host-api.md 6).
"""

import collections
import enum
import json
import os
import re
import sys
import threading

from modules import devices, errors, hashes, host_env, paths, script_callbacks, shared

IS_FORGE = host_env.is_forge()

model_dir = "Stable-diffusion"
model_path = os.path.abspath(os.path.join(paths.models_path, model_dir))

checkpoints_list = {}
checkpoint_aliases = {}
checkpoint_alisases = checkpoint_aliases  # for compatibility with old name
checkpoints_loaded = collections.OrderedDict()


class ModelType(enum.Enum):
    SD1 = 1
    SD2 = 2
    SDXL = 3
    SSD = 4
    SD3 = 5


def replace_key(d, key, new_key, value):
    keys = list(d.keys())
    d[new_key] = value
    if key not in keys:
        return d
    index = keys.index(key)
    keys[index] = new_key
    new_d = {k: d[k] for k in keys}
    d.clear()
    d.update(new_d)
    return d


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        abspath = os.path.abspath(filename)
        abs_ckpt_dir = os.path.abspath(shared.cmd_opts.ckpt_dir) if shared.cmd_opts.ckpt_dir is not None else None
        self.is_safetensors = os.path.splitext(filename)[1].lower() == ".safetensors"
        if abs_ckpt_dir and abspath.startswith(abs_ckpt_dir):
            name = abspath.replace(abs_ckpt_dir, "")
        elif abspath.startswith(model_path):
            name = abspath.replace(model_path, "")
        else:
            name = os.path.basename(filename)
        if name.startswith("\\") or name.startswith("/"):
            name = name[1:]
        self.metadata = {}
        if self.is_safetensors:
            try:
                self.metadata = read_metadata_from_safetensors(filename)
            except Exception as e:
                errors.display(e, f"reading metadata for {filename}")
        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.hash = model_hash(filename)
        self.sha256 = hashes.sha256_from_cache(self.filename, f"checkpoint/{name}")
        self.shorthash = self.sha256[0:10] if self.sha256 else None
        self.title = name if self.shorthash is None else f"{name} [{self.shorthash}]"
        self.short_title = self.name_for_extra if self.shorthash is None else f"{self.name_for_extra} [{self.shorthash}]"
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra, f"{name} [{self.hash}]"]
        if self.shorthash:
            self.ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]",
                         f"{self.name_for_extra} [{self.shorthash}]"]

    def register(self):
        checkpoints_list[self.title] = self
        for id in self.ids:
            checkpoint_aliases[id] = self

    def calculate_shorthash(self):
        """Compute the sha256 (as a real load does): the title gains " [shorthash]" and new ids are registered."""
        self.sha256 = hashes.sha256(self.filename, f"checkpoint/{self.name}")
        if self.sha256 is None:
            return None
        shorthash = self.sha256[0:10]
        if self.shorthash == shorthash:
            return self.shorthash
        self.shorthash = shorthash
        if self.shorthash not in self.ids:
            self.ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]",
                         f"{self.name_for_extra} [{self.shorthash}]"]
        old_title = self.title
        self.title = f"{self.name} [{self.shorthash}]"
        self.short_title = f"{self.name_for_extra} [{self.shorthash}]"
        replace_key(checkpoints_list, old_title, self.title, self)
        self.register()
        return self.shorthash

    def __str__(self):
        return str(dict(filename=self.filename, hash=self.hash))

    def __repr__(self):
        return str(dict(filename=self.filename, hash=self.hash))


def setup_model():
    os.makedirs(model_path, exist_ok=True)
    list_models()


def checkpoint_tiles(use_short=False):
    return [x.short_title if use_short else x.title for x in checkpoints_list.values()]


def _model_files():
    dirs = [model_path] + ([shared.cmd_opts.ckpt_dir] if shared.cmd_opts.ckpt_dir else [])
    found = []
    for folder in dirs:
        for path in shared.walk_files(folder, allowed_extensions=[".ckpt", ".safetensors"]):
            if not path.lower().endswith((".vae.ckpt", ".vae.safetensors")) and path not in found:
                found.append(path)
    return found


def list_models():
    """Scan models/Stable-diffusion and --ckpt-dir for .ckpt/.safetensors (not *.vae.*); --ckpt is registered too."""
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    cmd_ckpt = shared.cmd_opts.ckpt
    if os.path.exists(cmd_ckpt):
        checkpoint_info = CheckpointInfo(cmd_ckpt)
        checkpoint_info.register()
        shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title
    elif cmd_ckpt is not None and cmd_ckpt != shared.default_sd_model_file:
        print(f"Checkpoint in --ckpt argument not found (Possible it was moved to {model_path}: {cmd_ckpt}",
              file=sys.stderr)
    for filename in _model_files():
        CheckpointInfo(filename).register()


re_strip_checksum = re.compile(r"\s*\[[^]]+]\s*$")


def get_closet_checkpoint_match(search_string):
    """Exact alias, else the shortest title containing it, else the same without a trailing "[hash]"."""
    if not search_string:
        return None
    checkpoint_info = checkpoint_aliases.get(search_string, None)
    if checkpoint_info is not None:
        return checkpoint_info
    found = sorted([info for info in checkpoints_list.values() if search_string in info.title], key=lambda x: len(x.title))
    if found:
        return found[0]
    search_string_without_checksum = re.sub(re_strip_checksum, "", search_string)
    found = sorted([info for info in checkpoints_list.values() if search_string_without_checksum in info.title],
                   key=lambda x: len(x.title))
    return found[0] if found else None


def model_hash(filename):
    """Old 8-hex hash: sha256 of the 64 KiB at offset 1 MiB ("NOFILE" when absent)."""
    try:
        with open(filename, "rb") as file:
            import hashlib

            m = hashlib.sha256()
            file.seek(0x100000)
            m.update(file.read(0x10000))
            return m.hexdigest()[0:8]
    except FileNotFoundError:
        return "NOFILE"


def select_checkpoint():
    """The checkpoint named by opts.sd_model_checkpoint; the first one if unknown; FileNotFoundError if none."""
    model_checkpoint = shared.opts.sd_model_checkpoint
    checkpoint_info = checkpoint_aliases.get(model_checkpoint, None)
    if checkpoint_info is not None:
        return checkpoint_info
    if len(checkpoints_list) == 0:
        raise FileNotFoundError("No checkpoints found. When searching for checkpoints, looked at:\n"
                                f" - file {os.path.abspath(shared.cmd_opts.ckpt)}\n - directory {model_path}\n"
                                "Can't run without a checkpoint. Find and place a .ckpt or .safetensors file into "
                                "any of those locations.")
    checkpoint_info = next(iter(checkpoints_list.values()))
    if model_checkpoint is not None:
        print(f"Checkpoint {model_checkpoint} not found; loading fallback {checkpoint_info.title}", file=sys.stderr)
    return checkpoint_info


def read_metadata_from_safetensors(filename):
    with open(filename, mode="rb") as file:
        metadata_len = int.from_bytes(file.read(8), "little")
        json_start = file.read(2)
        assert metadata_len > 2 and json_start in (b'{"', b"{'"), f"{filename} is not a safetensors file"
        res = {}
        try:
            json_obj = json.loads(json_start + file.read(metadata_len - 2))
            for k, v in json_obj.get("__metadata__", {}).items():
                res[k] = v
                if isinstance(v, str) and v[0:1] == "{":
                    try:
                        res[k] = json.loads(v)
                    except Exception:
                        pass
        except Exception:
            errors.report(f"Error reading metadata from file: {filename}", exc_info=True)
        return res


def read_state_dict(checkpoint_file, print_global_state=False, map_location=None):
    raise NotImplementedError("the host double does not load weights")


def get_checkpoint_state_dict(checkpoint_info: CheckpointInfo, timer):
    raise NotImplementedError("the host double does not load weights")


_SDXL_CONDITIONER_KEYS = {"conditioner.embedders.1.model.ln_final.weight",
                          "conditioner.embedders.0.model.ln_final.weight"}


def _tensor_names(checkpoint_info) -> list:
    """The tensor names of a .safetensors checkpoint from its header ([] for other files or unreadable ones)."""
    if not checkpoint_info.is_safetensors:
        return []
    try:
        with open(checkpoint_info.filename, mode="rb") as file:
            length = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(length))
    except (OSError, ValueError):
        return []
    return [key for key in header if key != "__metadata__"] if isinstance(header, dict) else []


class FakeSdModel:
    """Stands for the loaded model (modules/sd_models_types.WebuiSdModel): attributes only, no weights.

    ``is_sdxl`` is what the real load makes of the state dict: sd_models_config.guess_model_config_from_state_dict
    picks an SDXL config when 'conditioner.embedders.1.model.ln_final.weight' (base, inpainting) or
    'conditioner.embedders.0.model.ln_final.weight' (refiner) is present, and load_model sets
    ``is_sdxl = hasattr(sd_model, "conditioner")``. The double reads the tensor names from the safetensors header
    (no tensor is loaded); a .ckpt is SD 1.x here.
    """

    cond_stage_key = "txt"
    latent_channels = 4
    lowvram = False
    is_sd2 = False
    is_sd3 = False
    is_ssd = False

    def __init__(self, checkpoint_info):
        self.sd_checkpoint_info = checkpoint_info
        self.sd_model_checkpoint = checkpoint_info.filename
        self.sd_model_hash = checkpoint_info.shorthash
        self.is_sdxl = bool(_SDXL_CONDITIONER_KEYS & set(_tensor_names(checkpoint_info)))
        self.is_sd1 = not self.is_sdxl
        self.device = devices.device
        self.used_config = None

    def ema_scope(self):
        import contextlib

        return contextlib.nullcontext()


class FakeInitialModel:
    """Forge's placeholder before the first generation: no sd_checkpoint_info, no is_sdxl (host-api.md 6)."""

    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel() if IS_FORGE else None
        self.loaded_sd_models = []
        self.was_loaded_at_least_once = False
        self.lock = threading.Lock()
        self.forge_loading_parameters = {}
        self.forge_hash = ""

    def get_sd_model(self):
        """Lazily "loads" the selected checkpoint on first access (A1111); Forge returns what is there."""
        if IS_FORGE or self.was_loaded_at_least_once:
            return self.sd_model
        if self.sd_model is None:
            with self.lock:
                if self.sd_model is not None or self.was_loaded_at_least_once:
                    return self.sd_model
                try:
                    load_model()
                except Exception as e:
                    errors.display(e, "loading stable diffusion model", full_traceback=True)
                    self.sd_model = None
        return self.sd_model

    def set_sd_model(self, v, already_loaded=False):
        self.sd_model = v
        if v is not None and v not in self.loaded_sd_models:
            self.loaded_sd_models.insert(0, v)


model_data = SdModelData()


def send_model_to_cpu(m):
    if m is not None:
        m.device = devices.cpu
    devices.torch_gc()


def model_target_device(m):
    return devices.device


def send_model_to_device(m):
    m.device = model_target_device(m)


def send_model_to_trash(m):
    m.device = "meta"
    devices.torch_gc()


def _load(checkpoint_info):
    if not shared.cmd_opts.no_hashing:
        checkpoint_info.calculate_shorthash()
    model = FakeSdModel(checkpoint_info)
    model_data.set_sd_model(model)
    model_data.was_loaded_at_least_once = True
    shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title
    script_callbacks.model_loaded_callback(model)
    return model


def load_model(checkpoint_info=None, already_loaded_state_dict=None):
    if IS_FORGE:
        return None
    return _load(checkpoint_info or select_checkpoint())


def reuse_model_from_already_loaded(sd_model, checkpoint_info, timer):
    if IS_FORGE:
        return None
    for model in model_data.loaded_sd_models:
        if getattr(model, "sd_model_checkpoint", None) == checkpoint_info.filename:
            model_data.set_sd_model(model)
            return model
    return None


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    """Switch the fake model to the selected checkpoint; returns early (no device move) if it is already loaded."""
    if IS_FORGE:
        return None
    checkpoint_info = info or select_checkpoint()
    if not sd_model:
        sd_model = model_data.sd_model
    if sd_model is not None and sd_model.sd_model_checkpoint == checkpoint_info.filename and not forced_reload:
        return sd_model
    if sd_model is not None:
        send_model_to_cpu(sd_model)
    return _load(checkpoint_info)


def unload_model_weights(sd_model=None, info=None):
    """Only moves the model to "cpu" (A1111); Forge unloads everything."""
    sd_model = sd_model or model_data.sd_model
    if sd_model is not None and not isinstance(sd_model, FakeInitialModel):
        send_model_to_cpu(sd_model)
    return sd_model


def apply_token_merging(sd_model, token_merging_ratio):
    """No-op in the double."""


def apply_alpha_schedule_override(sd_model, p=None):
    """No-op in the double."""


def forge_model_reload():
    """Forge: (re)load the checkpoint chosen by main_entry.refresh_model_loading_parameters(); (model, reloaded)."""
    params = model_data.forge_loading_parameters or {}
    checkpoint_info = params.get("checkpoint_info") or select_checkpoint()
    current = model_data.sd_model
    if getattr(current, "sd_model_checkpoint", None) == checkpoint_info.filename:
        return current, False
    return _load(checkpoint_info), True
