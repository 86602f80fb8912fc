"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/scripts.py (host-api.md 1.5, 3.5).

``load_scripts()`` reproduces the real import mechanics: the ordered file list of ``list_scripts`` (root, then
active extensions, built-ins first, metadata.ini Before/After), ``sys.path = [ext_dir] + sys.path`` and
``current_basedir`` only while a file runs (Forge keeps every extension dir on sys.path), ``load_module`` without
sys.modules registration, and collection of EVERY ``Script`` subclass found in the module namespace.
``ScriptRunner`` hooks call each script with ``p.script_args[args_from:args_to]`` inside try/except +
``errors.report`` so a failing script (e.g. ControlNet with an unknown model) never stops generation.
"""

import inspect
import os
import sys
from collections import namedtuple
from dataclasses import dataclass

from modules import (
    errors,
    extensions,
    host_env,
    paths,
    script_callbacks,
    script_loading,
    scripts_postprocessing,
    shared,
    timer,
)
from modules.util import topological_sort

IS_FORGE = host_env.is_forge()

AlwaysVisible = object()


class MaskBlendArgs:
    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent = current_latent
        self.nmask = nmask
        self.init_latent = init_latent
        self.mask = mask
        self.blended_latent = blended_latent
        self.denoiser = denoiser
        self.is_final_blend = denoiser is None
        self.sigma = sigma


class PostSampleArgs:
    def __init__(self, samples):
        self.samples = samples


if IS_FORGE:

    class PostprocessImageArgs:
        """Forge adds the index of the image in the batch."""

        def __init__(self, image, index):
            self.image = image
            self.index = index

else:

    class PostprocessImageArgs:
        def __init__(self, image):
            self.image = image


class PostProcessMaskOverlayArgs:
    def __init__(self, index, mask_for_overlay, overlay_image):
        self.index = index
        self.mask_for_overlay = mask_for_overlay
        self.overlay_image = overlay_image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


@dataclass
class OnComponent:
    component: object


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None
    api_info = None
    on_before_component_elem_id = None
    on_after_component_elem_id = None
    setup_for_ui_only = False
    controls = None
    if IS_FORGE:
        sorting_priority = 0

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs):
        pass

    def on_mask_blend(self, p, mba: MaskBlendArgs, *args):
        pass

    def post_sample(self, p, ps: PostSampleArgs, *args):
        pass

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs, *args):
        pass

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def on_before_component(self, callback, *, elem_id):
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback, *, elem_id):
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self):
        return ""

    def elem_id(self, item_id):
        """"script_<tab>_<title>_<item_id>" with the title lower-cased and made id-safe, like the real one."""
        need_tabname = self.show(True) == self.show(False)
        tabkind = "img2img" if self.is_img2img else "txt2img"
        tabname = f"{tabkind}_" if need_tabname else ""
        title = "".join(c if c.isalnum() or c in "_-" else "_" for c in self.title().lower().replace(" ", "_"))
        return f"script_{tabname}{title}_{item_id}"

    def before_hr(self, p, *args):
        pass


class ScriptBuiltinUI(Script):
    setup_for_ui_only = True

    def elem_id(self, item_id):
        need_tabname = self.show(True) == self.show(False)
        tabname = ("img2img" if self.is_img2img else "txt2img") + "_" if need_tabname else ""
        return f"{tabname}{item_id}"

    def show(self, is_img2img):
        return AlwaysVisible


current_basedir = paths.script_path


def basedir():
    """The extension dir of the script file being loaded -- only valid while it is imported (1.5)."""
    return current_basedir


ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])

scripts_data = []
postprocessing_scripts_data = []
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])


@dataclass
class ScriptWithDependencies:
    script_canonical_name: str
    file: ScriptFile
    requires: list
    load_before: list
    load_after: list


def _root_scripts(scriptdirname, extension):
    res = {}
    root = os.path.join(paths.script_path, scriptdirname)
    if not os.path.exists(root):
        return res
    for filename in sorted(os.listdir(root)):
        path = os.path.join(root, filename)
        if os.path.isfile(path) and os.path.splitext(filename)[1].lower() == extension:
            res[filename] = ScriptWithDependencies(filename, ScriptFile(paths.script_path, filename, path), [], [], [])
    return res


def _extension_scripts(scriptdirname, extension, scripts, by_extension):
    for ext in extensions.active():
        for script_file in ext.list_files(scriptdirname, extension):
            canonical = ("builtin/" if ext.is_builtin else "") + ext.canonical_name + "/" + script_file.filename
            relative_path = scriptdirname + "/" + script_file.filename
            meta = ext.metadata
            script = ScriptWithDependencies(
                script_canonical_name=canonical,
                file=script_file,
                requires=meta.get_script_requirements("Requires", relative_path, scriptdirname),
                load_before=meta.get_script_requirements("Before", relative_path, scriptdirname),
                load_after=meta.get_script_requirements("After", relative_path, scriptdirname),
            )
            scripts[canonical] = script
            by_extension[ext.canonical_name].append(script)


def _resolve_order(scripts, by_extension):
    """Turn Before into the other script's After, and an extension name in After into all of its scripts."""
    for canonical, script in scripts.items():
        for load_before in script.load_before:
            other = scripts.get(load_before)
            if other:
                other.load_after.append(canonical)
            for other in by_extension.get(load_before, []):
                other.load_after.append(canonical)
        for load_after in list(script.load_after):
            if load_after not in scripts and load_after in by_extension:
                script.load_after.remove(load_after)
                script.load_after += [x.script_canonical_name for x in by_extension[load_after]]


def list_scripts(scriptdirname, extension, *, include_extensions=True):
    scripts = _root_scripts(scriptdirname, extension)
    by_extension = {ext.canonical_name: [] for ext in extensions.active()}
    if include_extensions:
        _extension_scripts(scriptdirname, extension, scripts, by_extension)
    _resolve_order(scripts, by_extension)
    loaded = {ext.canonical_name for ext in extensions.active()}
    dependencies = {}
    for canonical, script in scripts.items():
        for required in script.requires:
            if required not in scripts and required not in loaded:
                errors.report(f'Script "{canonical}" requires "{required}" to be loaded, but it is not.', exc_info=False)
        dependencies[canonical] = script.load_after
    return [scripts[name].file for name in topological_sort(dependencies)]


def list_files_with_name(filename):
    res = []
    for dirpath in [paths.script_path] + [ext.path for ext in extensions.active()]:
        path = os.path.join(dirpath, filename)
        if os.path.isdir(dirpath) and os.path.isfile(path):
            res.append(path)
    return res


def _register_scripts_from_module(module, scriptfile):
    for script_class in module.__dict__.values():
        if not inspect.isclass(script_class):
            continue
        if issubclass(script_class, Script):
            scripts_data.append(ScriptClassData(script_class, scriptfile.path, scriptfile.basedir, module))
        elif issubclass(script_class, scripts_postprocessing.ScriptPostprocessing):
            postprocessing_scripts_data.append(ScriptClassData(script_class, scriptfile.path, scriptfile.basedir, module))


def load_scripts():
    """Clear callbacks and script data, exec every scripts/*.py in order, and create fresh ScriptRunners."""
    global current_basedir, scripts_txt2img, scripts_img2img, scripts_postproc
    scripts_data.clear()
    postprocessing_scripts_data.clear()
    script_callbacks.clear_callbacks()
    scripts_list = list_scripts("scripts", ".py") + list_scripts("modules/processing_scripts", ".py",
                                                                include_extensions=False)
    if IS_FORGE:  # lllyasviel/stable-diffusion-webui-forge:modules/scripts.py keeps every extension dir importable
        for ext_dir in {s.basedir for s in scripts_list if s.basedir != paths.script_path}:
            if ext_dir not in sys.path:
                sys.path.insert(0, ext_dir)
    syspath = sys.path
    for scriptfile in scripts_list:
        try:
            if scriptfile.basedir != paths.script_path:
                sys.path = [scriptfile.basedir] + sys.path
            current_basedir = scriptfile.basedir
            script_module = script_loading.load_module(scriptfile.path)
            _register_scripts_from_module(script_module, scriptfile)
        except Exception:
            errors.report(f"Error loading script: {scriptfile.filename}", exc_info=True)
        finally:
            sys.path = syspath
            current_basedir = paths.script_path
            timer.startup_timer.record(scriptfile.filename)
    scripts_txt2img = ScriptRunner()
    scripts_img2img = ScriptRunner()
    scripts_postproc = scripts_postprocessing.ScriptPostprocessingRunner()


def wrap_call(func, filename, funcname, *args, default=None, **kwargs):
    try:
        return func(*args, **kwargs)
    except Exception:
        errors.report(f"Error calling: {filename}/{funcname}", exc_info=True)
    return default


# the default order of modules/shared_items.ui_reorder_categories() as far as the double needs it: every built-in
# section is laid out before "scripts", where ScriptRunner.setup_ui() runs
_UI_CATEGORIES = ("prompt", "image", "inpaint", "sampler", "accordions", "checkboxes", "dimensions", "cfg",
                  "denoising", "seed", "batch", "override_settings", "scripts")


def _ui_category_rank(section):
    return (_UI_CATEGORIES.index(section), "") if section in _UI_CATEGORIES else (len(_UI_CATEGORIES), str(section))


class _ScriptDropdown:
    """Stands for the "Script" gr.Dropdown(type="index") at ``inputs[0]``: its default value maps to arg 0."""

    label = "Script"
    elem_id = "script_list"
    value = "None"


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.selectable_scripts = []
        self.alwayson_scripts = []
        self.titles = []
        self.title_map = {}
        self.infotext_fields = []
        self.paste_field_names = []
        self.inputs = [None]
        self.callback_map = {}
        self.callback_names = []
        self.on_before_component_elem_id = {}
        self.on_after_component_elem_id = {}

    def initialize_scripts(self, is_img2img):
        """Instantiate every collected Script class; show() decides alwayson / selectable / hidden."""
        self.scripts.clear()
        self.alwayson_scripts.clear()
        self.selectable_scripts.clear()
        for script_data in scripts_data:
            try:
                script = script_data.script_class()
            except Exception:
                errors.report(f"Error # failed to initialize Script {script_data.module}: ", exc_info=True)
                continue
            script.filename = script_data.path
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            script.tabname = "img2img" if is_img2img else "txt2img"
            visibility = wrap_call(script.show, script.filename, "show", script.is_img2img)
            if visibility == AlwaysVisible:
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
                script.alwayson = True
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)
        if IS_FORGE:
            self.alwayson_scripts.sort(key=lambda x: getattr(x, "sorting_priority", 0))
        self.callback_map.clear()
        self.apply_on_before_component_callbacks()

    def apply_on_before_component_callbacks(self):
        for script in self.scripts:
            for elem_id, callback in script.on_before_component_elem_id or []:
                self.on_before_component_elem_id.setdefault(elem_id, []).append((callback, script))
            for elem_id, callback in script.on_after_component_elem_id or []:
                self.on_after_component_elem_id.setdefault(elem_id, []).append((callback, script))
        for script in self.scripts:
            script.on_before_component_elem_id = []
            script.on_after_component_elem_id = []

    def create_script_ui(self, script):
        script.args_from = len(self.inputs)
        script.args_to = len(self.inputs)
        try:
            self.create_script_ui_inner(script)
        except Exception:
            errors.report(f"Error creating UI for {script.name}: ", exc_info=True)

    def create_script_ui_inner(self, script):
        controls = wrap_call(script.ui, script.filename, "ui", script.is_img2img)
        script.controls = controls
        if controls is None:
            return
        script.name = wrap_call(script.title, script.filename, "title", default=script.filename).lower()
        for control in controls:
            try:
                control.custom_script_source = os.path.basename(script.filename)
            except Exception:
                pass
        self.inputs += list(controls)
        script.args_to = len(self.inputs)

    def setup_ui_for_section(self, section, scriptlist=None):
        if scriptlist is None:
            scriptlist = self.alwayson_scripts
        for script in scriptlist:
            if script.alwayson and script.section != section:
                continue
            self.create_script_ui(script)

    def prepare_ui(self):
        self.inputs = [None]

    def setup_ui(self):
        """Assign args_from/args_to the way ui.create_ui builds the tab: prepare_ui(), then the built-in sections in
        the order of the tab's UI categories (the sampler, accordions and seed rows come before the script area),
        then setup_ui() proper: index 0 is the script dropdown, the other alwayson scripts, then selectable ones."""
        all_titles = [wrap_call(script.title, script.filename, "title") or script.filename for script in self.scripts]
        self.title_map = {title.lower(): script for title, script in zip(all_titles, self.scripts, strict=False)}
        self.titles = [wrap_call(script.title, script.filename, "title") or f"{script.filename} [error]"
                       for script in self.selectable_scripts]
        self.prepare_ui()
        with _blocks_context():
            sections = {s.section for s in self.alwayson_scripts if s.section is not None}
            for section in sorted(sections, key=_ui_category_rank):
                self.setup_ui_for_section(section)
            self.setup_ui_for_section(None)
            self.inputs[0] = _ScriptDropdown()
            self.setup_ui_for_section(None, self.selectable_scripts)
        return self.inputs

    def run(self, p, *args):
        script_index = args[0]
        if script_index == 0 or script_index is None:
            return None
        script = self.selectable_scripts[script_index - 1]
        if script is None:
            return None
        script_args = args[script.args_from:script.args_to]
        processed = script.run(p, *script_args)
        shared.total_tqdm.clear()
        return processed

    def list_scripts_for_method(self, method_name):
        if method_name in ("before_component", "after_component"):
            return self.scripts
        return self.alwayson_scripts

    def create_ordered_callbacks_list(self, method_name, *, enable_user_sort=True):
        script_list = self.list_scripts_for_method(method_name)
        category = f"script_{method_name}"
        callbacks = []
        for script in script_list:
            if getattr(script.__class__, method_name, None) == getattr(Script, method_name, None):
                continue
            script_callbacks.add_callback(callbacks, script, category=category, name=script.__class__.__name__,
                                          filename=script.filename)
        return script_callbacks.sort_callbacks(category, callbacks, enable_user_sort=enable_user_sort)

    def ordered_callbacks(self, method_name, *, enable_user_sort=True):
        script_list = self.list_scripts_for_method(method_name)
        category = f"script_{method_name}"
        scrpts_len, callbacks = self.callback_map.get(category, (-1, None))
        if callbacks is None or scrpts_len != len(script_list):
            callbacks = self.create_ordered_callbacks_list(method_name, enable_user_sort=enable_user_sort)
            self.callback_map[category] = len(script_list), callbacks
        return callbacks

    def ordered_scripts(self, method_name):
        return [x.callback for x in self.ordered_callbacks(method_name)]

    def _each(self, method_name, p, call):
        """Run ``call(script, script_args)`` for every script implementing the hook; report, never raise."""
        for script in self.ordered_scripts(method_name):
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                call(script, script_args)
            except Exception:
                errors.report(f"Error running {method_name}: {script.filename}", exc_info=True)

    def before_process(self, p):
        self._each("before_process", p, lambda s, a: s.before_process(p, *a))

    def process(self, p):
        self._each("process", p, lambda s, a: s.process(p, *a))

    def process_before_every_sampling(self, p, **kwargs):
        self._each("process_before_every_sampling", p, lambda s, a: s.process_before_every_sampling(p, *a, **kwargs))

    def before_process_batch(self, p, **kwargs):
        self._each("before_process_batch", p, lambda s, a: s.before_process_batch(p, *a, **kwargs))

    if IS_FORGE:

        def before_process_init_images(self, p, pp, **kwargs):
            for script in self.alwayson_scripts:
                hook = getattr(script, "before_process_init_images", None)
                if hook is None:
                    continue
                try:
                    hook(p, pp, *p.script_args[script.args_from:script.args_to], **kwargs)
                except Exception:
                    errors.report(f"Error running before_process_init_images: {script.filename}", exc_info=True)

    def after_extra_networks_activate(self, p, **kwargs):
        self._each("after_extra_networks_activate", p, lambda s, a: s.after_extra_networks_activate(p, *a, **kwargs))

    def process_batch(self, p, **kwargs):
        self._each("process_batch", p, lambda s, a: s.process_batch(p, *a, **kwargs))

    def postprocess(self, p, processed):
        self._each("postprocess", p, lambda s, a: s.postprocess(p, processed, *a))

    def postprocess_batch(self, p, images, **kwargs):
        self._each("postprocess_batch", p, lambda s, a: s.postprocess_batch(p, *a, images=images, **kwargs))

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, **kwargs):
        self._each("postprocess_batch_list", p, lambda s, a: s.postprocess_batch_list(p, pp, *a, **kwargs))

    def post_sample(self, p, ps: PostSampleArgs):
        self._each("post_sample", p, lambda s, a: s.post_sample(p, ps, *a))

    def on_mask_blend(self, p, mba: MaskBlendArgs):
        self._each("on_mask_blend", p, lambda s, a: s.on_mask_blend(p, mba, *a))

    def postprocess_image(self, p, pp: PostprocessImageArgs):
        self._each("postprocess_image", p, lambda s, a: s.postprocess_image(p, pp, *a))

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs):
        self._each("postprocess_maskoverlay", p, lambda s, a: s.postprocess_maskoverlay(p, ppmo, *a))

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs):
        self._each("postprocess_image_after_composite", p,
                   lambda s, a: s.postprocess_image_after_composite(p, pp, *a))

    def before_component(self, component, **kwargs):
        for callback, script in self.on_before_component_elem_id.get(kwargs.get("elem_id"), []):
            try:
                callback(OnComponent(component=component))
            except Exception:
                errors.report(f"Error running on_before_component: {script.filename}", exc_info=True)
        for script in self.ordered_scripts("before_component"):
            try:
                script.before_component(component, **kwargs)
            except Exception:
                errors.report(f"Error running before_component: {script.filename}", exc_info=True)

    def after_component(self, component, **kwargs):
        for callback, script in self.on_after_component_elem_id.get(component.elem_id, []):
            try:
                callback(OnComponent(component=component))
            except Exception:
                errors.report(f"Error running on_after_component: {script.filename}", exc_info=True)
        for script in self.ordered_scripts("after_component"):
            try:
                script.after_component(component, **kwargs)
            except Exception:
                errors.report(f"Error running after_component: {script.filename}", exc_info=True)

    def script(self, title):
        return self.title_map.get(title.lower())

    def reload_sources(self, cache):
        for si, script in list(enumerate(self.scripts)):
            args_from, args_to, filename = script.args_from, script.args_to, script.filename
            module = cache.get(filename, None)
            if module is None:
                module = script_loading.load_module(script.filename)
                cache[filename] = module
            for script_class in module.__dict__.values():
                if type(script_class) is type and issubclass(script_class, Script):
                    self.scripts[si] = script_class()
                    self.scripts[si].filename = filename
                    self.scripts[si].args_from = args_from
                    self.scripts[si].args_to = args_to

    def before_hr(self, p):
        self._each("before_hr", p, lambda s, a: s.before_hr(p, *a))

    def setup_scrips(self, p, *, is_ui=True):
        for script in self.alwayson_scripts:
            if not is_ui and script.setup_for_ui_only:
                continue
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                script.setup(p, *script_args)
            except Exception:
                errors.report(f"Error running setup: {script.filename}", exc_info=True)

    def set_named_arg(self, args, script_name, arg_elem_id, value, fuzzy=False):
        script = next((x for x in self.scripts if x.name == script_name), None)
        if script is None:
            raise RuntimeError(f"script {script_name} not found")
        for i, control in enumerate(script.controls):
            control_elem_id = getattr(control, "elem_id", None) or ""
            if arg_elem_id in control_elem_id if fuzzy else arg_elem_id == control_elem_id:
                index = script.args_from + i
                if isinstance(args, tuple):
                    return args[:index] + (value,) + args[index + 1:]
                if isinstance(args, list):
                    args[index] = value
                    return args
                raise RuntimeError(f"args is not a list or tuple, but {type(args)}")
        raise RuntimeError(f"arg_elem_id {arg_elem_id} not found in script {script_name}")


def _blocks_context():
    """Real ui() calls happen inside gr.Blocks; the double opens one only if gradio is already imported."""
    import contextlib

    gr = sys.modules.get("gradio")
    if gr is None:
        return contextlib.nullcontext()
    return gr.Blocks(analytics_enabled=False)


scripts_txt2img: "ScriptRunner" = None
scripts_img2img: "ScriptRunner" = None
scripts_postproc = None
scripts_current: "ScriptRunner" = None


def reload_script_body_only():
    cache = {}
    scripts_txt2img.reload_sources(cache)
    scripts_img2img.reload_sources(cache)


reload_scripts = load_scripts
