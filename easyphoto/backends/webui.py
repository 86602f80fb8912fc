"""Everything that talks to the AUTOMATIC1111 / Forge WebUI (shared/reference/host-api.md).

This is the one module of the `easyphoto` package allowed to import the host (`modules`, `launch`, ControlNet).
`scripts/easyphoto.py` registers the callbacks below and nothing else. Host modules are imported inside the
functions, so importing this module is cheap and works before the host has finished loading.
"""


import contextlib
import importlib.util
import logging
import os
import secrets
from pathlib import Path

from easyphoto.config import FieldSpec, Settings
from easyphoto.context import AppContext, HostInfo

log = logging.getLogger("easyphoto")
SETTINGS_SECTION = ("easyphoto", "EasyPhoto")
SETTING_PREFIX = "easyphoto_"
TAB_TITLE = "EasyPhoto"
TAB_ID = "easyphoto"


def detect_flavour() -> str:
    """Forge ships `modules_forge` (host-api.md §6); everything else is treated as A1111."""
    return "forge" if importlib.util.find_spec("modules_forge") is not None else "a1111"


def host_version() -> str:
    try:
        from modules import launch_utils

        return str(launch_utils.git_tag())
    except Exception:  # an unreadable version must never break the tab or the health route
        return ""


def _cmd_opt(name: str, default=None):
    # An extension installed during the session has no cmd_opts attributes until a restart (host-api.md §1.3).
    from modules import shared

    value = getattr(shared.cmd_opts, name, None)
    return default if value in (None, "") else value


def make_paths():
    from modules import paths_internal

    from easyphoto.store import Paths

    models = Path(paths_internal.models_path)
    return Paths(
        data_root=Path(_cmd_opt("easyphoto_data_dir") or Path(paths_internal.data_path) / "easyphoto"),
        models_root=Path(_cmd_opt("easyphoto_models_dir") or models / "easyphoto"),
        lora_dir=Path(_cmd_opt("lora_dir") or models / "Lora"),
        controlnet_dir=Path(_cmd_opt("controlnet_dir") or models / "ControlNet"),
        checkpoints_dir=Path(_cmd_opt("ckpt_dir") or models / "Stable-diffusion"),
    )


def current_settings() -> Settings:
    """Settings from the WebUI's options; a bad stored value falls back to its default with a warning."""
    from modules import shared

    values = {}
    for spec in Settings.field_specs():
        key = SETTING_PREFIX + spec.name
        if key in shared.opts.data:
            values[spec.name] = shared.opts.data[key]
    try:
        return Settings.from_dict(values)
    except Exception as exc:
        log.warning("EasyPhoto: invalid value in Settings → EasyPhoto (%s); using defaults", exc)
        return Settings()


def host_queue_lock():
    """The lock the WebUI's own generation runs under (host-api.md §2.6)."""
    from modules import call_queue

    return call_queue.queue_lock


@contextlib.contextmanager
def host_model_offloaded():
    """Free the GPU for training: the loaded checkpoint goes to the CPU and back afterwards (host-api.md §3.6).

    A1111: unload_model_weights() only moves the model to the CPU, and reload_model_weights() would not move it
    back (it returns early for the same checkpoint), so send_model_to_device() restores it. Forge: unloading frees
    everything and Forge reloads on the next generation by itself. Reads model_data.sd_model, never shared.sd_model,
    which would load a model just to unload it."""
    from modules import sd_models

    loaded = sd_models.model_data.sd_model
    if not current_settings().unload_host_model_for_training or loaded is None:
        yield
        return
    sd_models.unload_model_weights(loaded)
    try:
        yield
    finally:
        if detect_flavour() == "a1111":
            sd_models.send_model_to_device(loaded)


def selected_checkpoint() -> Path:
    """The file of the checkpoint selected in the WebUI (resolved the host's way, host-api.md §3.6)."""
    from modules import sd_models

    from easyphoto.errors import EasyPhotoError

    try:
        info = sd_models.select_checkpoint()
    except FileNotFoundError:
        raise EasyPhotoError("The WebUI has no checkpoint installed to train on.", phase="train",
                             hint="Put an SD 1.5 .safetensors checkpoint in models/Stable-diffusion.") from None
    return Path(info.filename)


def make_context() -> AppContext:
    offline = bool(_cmd_opt("easyphoto_offline", False)) or os.environ.get("HF_HUB_OFFLINE") == "1"
    host = HostInfo(detect_flavour(), host_version())
    return AppContext(make_paths(), host, current_settings, offline, gpu_lock=host_queue_lock,
                      host_offload=host_model_offloaded, selected_checkpoint=selected_checkpoint)


# ---------------------------------------------------------------------------------------------- callbacks


def on_ui_settings() -> None:
    """Settings → EasyPhoto, one option per `Settings` field (labels, bounds and choices come from the model)."""
    from modules import shared

    for spec in Settings.field_specs():
        component, component_args = _setting_component(spec)
        info = shared.OptionInfo(
            spec.default,
            spec.title,
            component,
            component_args,
            section=SETTINGS_SECTION,
        )
        if spec.description:
            info = info.info(spec.description)
        shared.opts.add_option(SETTING_PREFIX + spec.name, info)


def _setting_component(spec: FieldSpec):
    import gradio as gr

    if spec.kind == "choice":
        return gr.Radio, {"choices": list(spec.choices)}
    if spec.kind in ("int", "float") and spec.minimum is not None and spec.maximum is not None:
        step = 1 if spec.kind == "int" else (spec.maximum - spec.minimum) / 100
        return gr.Slider, {"minimum": spec.minimum, "maximum": spec.maximum, "step": step}
    return None, None  # the WebUI picks a checkbox for bools and a textbox otherwise


def on_ui_tabs():
    from easyphoto.ui import build_ui

    return [(build_ui(make_context()), TAB_TITLE, TAB_ID)]


def on_app_started(demo, app) -> None:
    """Mount /easyphoto/v1 on the host's FastAPI app; `demo` is None in API-only (--nowebui) mode."""
    from easyphoto import api

    api.install(app, make_context(), dependencies=api_auth_dependencies())


def api_auth_dependencies() -> list:
    """Honour `--api-auth user:pass[,user2:pass2]`: the host only protects its own routes (host-api.md §2.3)."""
    credentials = _cmd_opt("api_auth")
    if not credentials:
        return []
    from fastapi import Depends, HTTPException, status
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    allowed = dict(pair.split(":", 1) for pair in str(credentials).split(",") if ":" in pair)
    basic = HTTPBasic()

    def check(cred: HTTPBasicCredentials = Depends(basic)) -> None:  # noqa: B008 - FastAPI's own idiom
        expected = allowed.get(cred.username)
        if expected is None or not secrets.compare_digest(cred.password, expected):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password",
                                headers={"WWW-Authenticate": "Basic"})

    return [Depends(check)]
