"""The script_callbacks scripts/easyphoto.py registers: Settings → EasyPhoto, the EasyPhoto tab, /easyphoto/v1."""

import dataclasses
import logging

from easyphoto.backends.webui import make_context
from easyphoto.backends.webui.host import SETTING_PREFIX, cmd_opt
from easyphoto.config import FieldSpec, Settings
from easyphoto_webui.api_guard import api_auth_dependencies, api_exposure
from easyphoto_webui.paste import paste_buttons

log = logging.getLogger("easyphoto")
SETTINGS_SECTION = ("easyphoto", "EasyPhoto")
TAB_TITLE = "EasyPhoto"
TAB_ID = "easyphoto"


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

    ctx = dataclasses.replace(make_context(), paste_buttons=paste_buttons)
    return [(build_ui(ctx), TAB_TITLE, TAB_ID)]


def on_app_started(demo, app) -> None:
    """Mount /easyphoto/v1 on the host's FastAPI app; `demo` is None in API-only (--nowebui) mode."""
    from easyphoto import api

    exposure = api_exposure()
    if not exposure.private:
        log.info("EasyPhoto: the REST API serves only /health; %s", exposure.hint)
    elif exposure.refuse:
        log.warning("EasyPhoto: the REST API refuses requests: %s", exposure.hint)
    api.install(app, make_context(), dependencies=api_auth_dependencies(), exposure=exposure)
    if cmd_opt("easyphoto_worker", False):
        from easyphoto_webui.worker import start_worker

        start_worker(make_context())
