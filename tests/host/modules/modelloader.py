"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/modelloader.py: model file lookup, the upscaler list and
spandrel loading. ``load_file_from_url`` is defined here on A1111 v1.10.1 and imported from ``modules.util`` on Forge.

``load_upscalers()`` builds ``shared.sd_upscalers`` the real way (import every ``*_model.py`` module, instantiate each
``Upscaler`` subclass with its ``--<name>-models-path``, sort with None/Lanczos/Nearest first), looking for the
``*_model.py`` files next to this file rather than under ``shared.script_path`` (the fake WebUI root).
``load_spandrel_model`` reads the file and returns a ``ModelDescriptor`` double whose "network" is a Lanczos
enlargement by the scale the file states (its first line, e.g. ``scale=4``); every load is recorded in ``loads``
(double-only), so tests see that A1111 loads the model again on every upscale.
"""

from __future__ import annotations

import importlib
import logging
import os
from urllib.parse import urlparse

from modules import host_env, shared, util
from modules.upscaler import Upscaler, UpscalerLanczos, UpscalerNearest, UpscalerNone

logger = logging.getLogger(__name__)
loads = []  # double-only: (path, device) of every load_spandrel_model call

if host_env.is_forge():
    from modules.util import load_file_from_url  # noqa: F401  (Forge keeps the name here for old callers)
else:
    def load_file_from_url(url, *, model_dir, progress=True, file_name=None, hash_prefix=None):
        """A1111 v1.10.1's own (torch.hub download; creates model_dir first)."""
        os.makedirs(model_dir, exist_ok=True)
        if not file_name:
            file_name = os.path.basename(urlparse(url).path)
        cached_file = os.path.abspath(os.path.join(model_dir, file_name))
        if not os.path.exists(cached_file):
            util.fetch_served(url, cached_file, hash_prefix, mismatch=RuntimeError)
        return cached_file


def load_models(model_path, model_url=None, command_path=None, ext_filter=None, download_name=None,
                ext_blacklist=None, hash_prefix=None) -> list:
    """Files under command_path (if it differs) and model_path; the URL itself when none is found."""
    output = []
    places = []
    if command_path is not None and command_path != model_path and os.path.exists(command_path):
        places.append(command_path)
    places.append(model_path)
    for place in places:
        for full_path in shared.walk_files(place, allowed_extensions=ext_filter):
            if ext_blacklist is not None and any(full_path.endswith(x) for x in ext_blacklist):
                continue
            if full_path not in output:
                output.append(full_path)
    if model_url is not None and len(output) == 0:
        if download_name is not None:
            output.append(load_file_from_url(model_url, model_dir=places[0], file_name=download_name,
                                             hash_prefix=hash_prefix))
        else:
            output.append(model_url)
    return output


def friendly_name(file: str):
    if file.startswith("http"):
        file = urlparse(file).path
    file = os.path.basename(file)
    model_name, extension = os.path.splitext(file)
    return model_name


def load_upscalers():
    modules_dir = os.path.dirname(os.path.abspath(__file__))
    for file in os.listdir(modules_dir):
        if "_model.py" in file:
            try:
                importlib.import_module(f"modules.{file.replace('_model.py', '')}_model")
            except Exception:
                pass
    data = []
    commandline_options = vars(shared.cmd_opts)
    used_classes = {}
    for cls in reversed(Upscaler.__subclasses__()):
        classname = str(cls)
        if classname not in used_classes:
            used_classes[classname] = cls
    for cls in reversed(used_classes.values()):
        name = cls.__name__
        cmd_name = f"{name.lower().replace('upscaler', '')}_models_path"
        commandline_model_path = commandline_options.get(cmd_name, None)
        scaler = cls(commandline_model_path)
        scaler.user_path = commandline_model_path
        scaler.model_download_path = commandline_model_path or scaler.model_path
        data += scaler.scalers
    shared.sd_upscalers = sorted(
        data,
        key=lambda x: x.name.lower() if not isinstance(x.scaler, (UpscalerNone, UpscalerLanczos, UpscalerNearest))
        else "",
    )


class ModelDescriptor:
    """Double of spandrel's ModelDescriptor: ``scale``, ``supports_half``, ``model`` and ``__call__``."""

    def __init__(self, path, scale, device):
        self.path = path
        self.scale = scale
        self.device = device
        self.supports_half = True
        self.model = self
        self.half_precision = False

    def half(self):
        self.half_precision = True
        return self

    def eval(self):
        return self

    def __call__(self, img):
        from modules.upscaler import LANCZOS

        return img.resize((img.width * self.scale, img.height * self.scale), resample=LANCZOS)


def load_spandrel_model(path, *, device, prefer_half=False, dtype=None, expected_architecture=None):
    with open(path, encoding="utf8", errors="replace") as file:
        header = file.readline().strip()
    if not header.startswith("scale="):
        raise ValueError(f"Unsupported model file {path}")  # spandrel's UnsupportedModelError
    model_descriptor = ModelDescriptor(str(path), int(header.split("=", 1)[1]), device)
    if prefer_half:
        model_descriptor.model.half()
    model_descriptor.model.eval()
    loads.append((str(path), device))
    return model_descriptor
