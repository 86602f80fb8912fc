"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/script_callbacks.py (host-api.md 2.3, 2.4).

Every ``on_x(callback, *, name=None)`` registrar stores a ``ScriptCallback(script, callback, name)`` with the
unique name "{extension canonical name}/{file}/{category}[/{name}]"; every invoker catches each callback's
exception and reports it (``report_exception`` -> errors.report "Error executing callback ..."), so one failing
callback never stops the others. Ordering honours metadata.ini ``[callbacks/...]`` and
``opts.prioritized_callbacks_<category>``.
"""

import dataclasses
import os
import sys
from typing import Any, Optional

from modules import errors, extensions, shared, util


def report_exception(c, job):
    errors.report(f"Error executing callback {job} for {c.script}", exc_info=True)


class ImageSaveParams:
    def __init__(self, image, p, filename, pnginfo):
        self.image = image
        self.p = p
        self.filename = filename
        self.pnginfo = pnginfo


class ExtraNoiseParams:
    def __init__(self, noise, x, xi):
        self.noise = noise
        self.x = x
        self.xi = xi


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond,
                 denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


class UiTrainTabParams:
    def __init__(self, txt2img_preview_params):
        self.txt2img_preview_params = txt2img_preview_params


class ImageGridLoopParams:
    def __init__(self, imgs, cols, rows):
        self.imgs = imgs
        self.cols = cols
        self.rows = rows


@dataclasses.dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list
    is_positive: bool = True


@dataclasses.dataclass
class ScriptCallback:
    script: str
    callback: any
    name: str = "unnamed"


def _caller_filename():
    """File of the first frame outside this module (the real code walks inspect.stack() the same way)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else "unknown file"


def add_callback(callbacks, fun, *, name=None, category="unknown", filename=None):
    if filename is None:
        filename = _caller_filename()
    extension = extensions.find_extension(filename)
    extension_name = extension.canonical_name if extension else "base"
    callback_name = f"{extension_name}/{os.path.basename(filename)}/{category}"
    if name is not None:
        callback_name += f"/{name}"
    unique_callback_name = callback_name
    for index in range(1000):
        if not any(x.name == unique_callback_name for x in callbacks):
            break
        unique_callback_name = f"{callback_name}-{index + 1}"
    callbacks.append(ScriptCallback(filename, fun, unique_callback_name))


def sort_callbacks(category, unordered_callbacks, *, enable_user_sort=True):
    """Order by metadata.ini [callbacks/<name>] Before/After, then move user-prioritized callbacks first."""
    callbacks = unordered_callbacks.copy()
    callback_lookup = {x.name: x for x in callbacks}
    order_instructions = {}
    for extension in extensions.extensions:
        for instruction in extension.metadata.list_callback_order_instructions():
            if instruction.name in callback_lookup:
                order_instructions.setdefault(instruction.name, []).append(instruction)
    if order_instructions:
        dependencies = {callback.name: [] for callback in callbacks}
        for callback in callbacks:
            for instruction in order_instructions.get(callback.name, []):
                dependencies[callback.name] += [x for x in instruction.after if x in callback_lookup]
                for before in instruction.before:
                    if before in callback_lookup:
                        dependencies[before].append(callback.name)
        callbacks = [callback_lookup[x] for x in util.topological_sort(dependencies)]
    if enable_user_sort:
        for name in reversed(getattr(shared.opts, "prioritized_callbacks_" + category, [])):
            index = next((i for i, callback in enumerate(callbacks) if callback.name == name), None)
            if index is not None:
                callbacks.insert(0, callbacks.pop(index))
    return callbacks


def ordered_callbacks(category, unordered_callbacks=None, *, enable_user_sort=True):
    if unordered_callbacks is None:
        unordered_callbacks = callback_map.get("callbacks_" + category, [])
    if not enable_user_sort:
        return sort_callbacks(category, unordered_callbacks, enable_user_sort=False)
    callbacks = ordered_callbacks_map.get(category)
    if callbacks is not None and len(callbacks) == len(unordered_callbacks):
        return callbacks
    callbacks = sort_callbacks(category, unordered_callbacks)
    ordered_callbacks_map[category] = callbacks
    return callbacks


def enumerate_callbacks():
    for category, callbacks in callback_map.items():
        if category.startswith("callbacks_"):
            category = category[10:]
        yield category, callbacks


callback_map = dict(
    callbacks_app_started=[],
    callbacks_model_loaded=[],
    callbacks_ui_tabs=[],
    callbacks_ui_train_tabs=[],
    callbacks_ui_settings=[],
    callbacks_before_image_saved=[],
    callbacks_image_saved=[],
    callbacks_extra_noise=[],
    callbacks_cfg_denoiser=[],
    callbacks_cfg_denoised=[],
    callbacks_cfg_after_cfg=[],
    callbacks_before_component=[],
    callbacks_after_component=[],
    callbacks_image_grid=[],
    callbacks_infotext_pasted=[],
    callbacks_script_unloaded=[],
    callbacks_before_ui=[],
    callbacks_on_reload=[],
    callbacks_list_optimizers=[],
    callbacks_list_unets=[],
    callbacks_before_token_counter=[],
)

ordered_callbacks_map = {}


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()
    ordered_callbacks_map.clear()


def _run(category, job, *args, **kwargs):
    for c in ordered_callbacks(category):
        try:
            c.callback(*args, **kwargs)
        except Exception:
            report_exception(c, job)


def app_started_callback(demo: Optional[Any], app: Any):
    _run("app_started", "app_started_callback", demo, app)


def app_reload_callback():
    _run("on_reload", "callback_app_reload")


def model_loaded_callback(sd_model):
    _run("model_loaded", "model_loaded_callback", sd_model)


def ui_tabs_callback():
    res = []
    for c in ordered_callbacks("ui_tabs"):
        try:
            res += c.callback() or []
        except Exception:
            report_exception(c, "ui_tabs_callback")
    return res


def ui_train_tabs_callback(params: UiTrainTabParams):
    _run("ui_train_tabs", "callback_ui_train_tabs", params)


def ui_settings_callback():
    _run("ui_settings", "ui_settings_callback")


def before_image_saved_callback(params: ImageSaveParams):
    _run("before_image_saved", "before_image_saved_callback", params)


def image_saved_callback(params: ImageSaveParams):
    _run("image_saved", "image_saved_callback", params)


def extra_noise_callback(params: ExtraNoiseParams):
    _run("extra_noise", "callbacks_extra_noise", params)


def cfg_denoiser_callback(params: CFGDenoiserParams):
    _run("cfg_denoiser", "cfg_denoiser_callback", params)


def cfg_denoised_callback(params: CFGDenoisedParams):
    _run("cfg_denoised", "cfg_denoised_callback", params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams):
    _run("cfg_after_cfg", "cfg_after_cfg_callback", params)


def before_component_callback(component, **kwargs):
    _run("before_component", "before_component_callback", component, **kwargs)


def after_component_callback(component, **kwargs):
    _run("after_component", "after_component_callback", component, **kwargs)


def image_grid_callback(params: ImageGridLoopParams):
    _run("image_grid", "image_grid", params)


def infotext_pasted_callback(infotext: str, params: dict[str, Any]):
    _run("infotext_pasted", "infotext_pasted", infotext, params)


def script_unloaded_callback():
    for c in reversed(ordered_callbacks("script_unloaded")):
        try:
            c.callback()
        except Exception:
            report_exception(c, "script_unloaded")


def before_ui_callback():
    _run("before_ui", "before_ui")


def list_optimizers_callback():
    res = []
    for c in ordered_callbacks("list_optimizers"):
        try:
            c.callback(res)
        except Exception:
            report_exception(c, "list_optimizers")
    return res


def list_unets_callback():
    res = []
    for c in ordered_callbacks("list_unets"):
        try:
            c.callback(res)
        except Exception:
            report_exception(c, "list_unets")
    return res


def before_token_counter_callback(params: BeforeTokenCounterParams):
    _run("before_token_counter", "before_token_counter", params)


def remove_current_script_callbacks():
    """Remove every callback registered from the calling file (what a script does before re-registering)."""
    filename = _caller_filename()
    if filename == "unknown file":
        return
    for callback_list in callback_map.values():
        for callback_to_remove in [cb for cb in callback_list if cb.script == filename]:
            callback_list.remove(callback_to_remove)
    for ordered_callbacks_list in ordered_callbacks_map.values():
        for callback_to_remove in [cb for cb in ordered_callbacks_list if cb.script == filename]:
            ordered_callbacks_list.remove(callback_to_remove)


def remove_callbacks_for_function(callback_func):
    for callback_list in callback_map.values():
        for callback_to_remove in [cb for cb in callback_list if cb.callback == callback_func]:
            callback_list.remove(callback_to_remove)
    for ordered_callback_list in ordered_callbacks_map.values():
        for callback_to_remove in [cb for cb in ordered_callback_list if cb.callback == callback_func]:
            ordered_callback_list.remove(callback_to_remove)


def on_app_started(callback, *, name=None):
    """callback(demo: gr.Blocks | None, app: FastAPI) after the server starts (demo is None with --nowebui)."""
    add_callback(callback_map["callbacks_app_started"], callback, name=name, category="app_started")


def on_before_reload(callback, *, name=None):
    add_callback(callback_map["callbacks_on_reload"], callback, name=name, category="on_reload")


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name, category="model_loaded")


def on_ui_tabs(callback, *, name=None):
    """callback() -> [(gr.Blocks, title, elem_id)] or None."""
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name, category="ui_tabs")


def on_ui_train_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_train_tabs"], callback, name=name, category="ui_train_tabs")


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name, category="ui_settings")


def on_before_image_saved(callback, *, name=None):
    add_callback(callback_map["callbacks_before_image_saved"], callback, name=name, category="before_image_saved")


def on_image_saved(callback, *, name=None):
    add_callback(callback_map["callbacks_image_saved"], callback, name=name, category="image_saved")


def on_extra_noise(callback, *, name=None):
    add_callback(callback_map["callbacks_extra_noise"], callback, name=name, category="extra_noise")


def on_cfg_denoiser(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoiser"], callback, name=name, category="cfg_denoiser")


def on_cfg_denoised(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoised"], callback, name=name, category="cfg_denoised")


def on_cfg_after_cfg(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_after_cfg"], callback, name=name, category="cfg_after_cfg")


def on_before_component(callback, *, name=None):
    add_callback(callback_map["callbacks_before_component"], callback, name=name, category="before_component")


def on_after_component(callback, *, name=None):
    add_callback(callback_map["callbacks_after_component"], callback, name=name, category="after_component")


def on_image_grid(callback, *, name=None):
    add_callback(callback_map["callbacks_image_grid"], callback, name=name, category="image_grid")


def on_infotext_pasted(callback, *, name=None):
    add_callback(callback_map["callbacks_infotext_pasted"], callback, name=name, category="infotext_pasted")


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name, category="script_unloaded")


def on_before_ui(callback, *, name=None):
    add_callback(callback_map["callbacks_before_ui"], callback, name=name, category="before_ui")


def on_list_optimizers(callback, *, name=None):
    add_callback(callback_map["callbacks_list_optimizers"], callback, name=name, category="list_optimizers")


def on_list_unets(callback, *, name=None):
    add_callback(callback_map["callbacks_list_unets"], callback, name=name, category="list_unets")


def on_before_token_counter(callback, *, name=None):
    add_callback(callback_map["callbacks_before_token_counter"], callback, name=name,
                 category="before_token_counter")
