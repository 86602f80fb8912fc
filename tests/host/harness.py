"""``WebUIHost``: start the WebUI host double for one test, the way the real WebUI starts (host-api.md 1.4).

Per host: a temp data root (models/, extensions/, extensions-builtin/, outputs/, config.json, one fake
checkpoint), the extensions under test symlinked into ``extensions/``, the ControlNet double (Mikubill's for
"a1111", Forge's built-in lib_controlnet for "forge"), env vars read by modules/host_env.py, and the double's root
(plus tests/host/forge for Forge) first on sys.path. ``start()`` purges every previously imported double or
extension module first; ``stop()`` restores sys.path, sys.modules, os.environ and sys.argv.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
import types
from pathlib import Path

DOUBLE_ROOT = Path(__file__).resolve().parent
FORGE_ROOT = DOUBLE_ROOT / "forge"
CONTROLNET_A1111 = DOUBLE_ROOT / "extensions" / "sd-webui-controlnet"
CONTROLNET_FORGE = FORGE_ROOT / "extensions-builtin" / "sd_forge_controlnet"
LORA = DOUBLE_ROOT / "extensions-builtin" / "Lora"
FLAVOURS = ("a1111", "forge")

# top-level names the double (or a loaded extension) puts in sys.modules
_DOUBLE_MODULE_NAMES = ("modules", "launch", "scripts", "internal_controlnet", "lib_controlnet", "networks", "network",
                        "network_lora", "extra_networks_lora", "lora_script", "modules_forge", "preload", "webui")
_KEEP_PREFIXES = ("tests", "conftest")
_ENV_KEYS = ("HOST_FLAVOR", "WEBUI_HOST_DATA_DIR", "WEBUI_HOST_BUILTIN_DIR", "WEBUI_HOST_ARGV",
             "IGNORE_CMD_ARGS_ERRORS", "COMMANDLINE_ARGS")



def safetensors_bytes(metadata: dict | None = None) -> bytes:
    """A minimal valid .safetensors file (8-byte header length + JSON header, no tensors) with ``metadata``."""
    header = json.dumps({"__metadata__": {"format": "pt", **(metadata or {})}}).encode("utf8")
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header


@functools.lru_cache(maxsize=None)
def _realpath(path):
    return os.path.realpath(path)


def _is_under(path, roots):
    try:
        real = _realpath(path)
    except (TypeError, ValueError):
        return False
    return any(real == r or real.startswith(r + os.sep) for r in roots)


# ---------------------------------------------------------------------------------------------- compiled-code cache
# Every host re-imports the double and the extensions from source (and CI runs with PYTHONDONTWRITEBYTECODE=1), so
# compiling dominates start-up. Code objects of files under these roots are cached per (real path, mtime, size) and
# re-targeted to the path they are loaded from this time (tracebacks and callback file names stay right).
_CODE_CACHE = {}
_CACHED_ROOTS = {str(DOUBLE_ROOT)}
_INSTALLED_ROOTS: list[str] = []  # filled on first use by _installed_roots()


def _retarget(code, filename):
    if code.co_filename == filename:
        return code
    consts = tuple(_retarget(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _install_code_cache():
    _INSTALLED_ROOTS[:] = _installed_roots()
    loader = importlib.machinery.SourceFileLoader
    if getattr(loader.get_code, "_webui_host_double", False):
        return
    original = loader.get_code

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        if not _is_under(path, _CACHED_ROOTS) or _is_under(path, _INSTALLED_ROOTS):
            return original(self, fullname)
        stat = os.stat(path)
        key = (_realpath(path), stat.st_mtime_ns, stat.st_size)
        code = _CODE_CACHE.get(key)
        if code is None:
            code = _CODE_CACHE[key] = original(self, fullname)
        return _retarget(code, path)

    get_code._webui_host_double = True
    loader.get_code = get_code


def _module_paths(module):
    paths = []
    file = getattr(module, "__file__", None)
    if file:
        paths.append(file)
    spec_path = getattr(module, "__path__", None)
    if spec_path is not None:
        try:
            paths.extend(list(spec_path))
        except Exception:
            pass
    return paths


def _installed_roots() -> list[str]:
    """Where the interpreter's own packages live. A virtual environment inside the repository (run-tests.sh makes
    .venvs/ there) is under an extension source root too, and purging torch or pytest from sys.modules crashes."""
    import site
    import sysconfig

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    roots |= {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    return [os.path.realpath(r) for r in roots if r]


def purge_modules(roots=()) -> list[str]:
    """Remove double modules (by name) and any module loaded from under ``roots`` from sys.modules (never one
    of the interpreter's installed packages, wherever the environment lives)."""
    real_roots = [os.path.realpath(r) for r in roots]
    installed = _installed_roots()
    removed = []
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        if top in _KEEP_PREFIXES:
            continue
        by_name = top in _DOUBLE_MODULE_NAMES or name == "modules.generation_parameters_copypaste"
        paths = _module_paths(module) if module is not None else []
        by_path = any(_is_under(p, real_roots) and not _is_under(p, installed) for p in paths)
        if by_name or by_path:
            del sys.modules[name]
            removed.append(name)
    importlib.invalidate_caches()
    return removed


class WebUIHost:
    """One WebUI (A1111 v1.10.1 or Forge) double, started in-process for one test."""

    _active: WebUIHost | None = None

    def __init__(self, tmp_path: Path, flavour: str = "a1111", extensions: dict[str, Path] | None = None,
                 controlnet: bool = True, cmd_args=(), *, strict_sys_path: bool = False):
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
        self.flavour = flavour
        self.root = Path(tmp_path) / "webui"
        self.extensions = {name: Path(src) for name, src in (extensions or {}).items()}
        self.controlnet = controlnet
        self.cmd_args = [str(x) for x in cmd_args]
        self.strict_sys_path = strict_sys_path  # drop sys.path entries containing the extension sources while running
        self.app = None
        self.demo = None
        self._saved = None

    # ---------------------------------------------------------------- layout
    def _builtin_links(self) -> dict[str, Path]:
        if self.flavour == "forge":
            links = {"sd_forge_lora": LORA}
            if self.controlnet:
                links["sd_forge_controlnet"] = CONTROLNET_FORGE
            return links
        return {"Lora": LORA}

    def _extension_links(self) -> dict[str, Path]:
        links = dict(self.extensions)
        if self.controlnet and self.flavour == "a1111":
            links.setdefault("sd-webui-controlnet", CONTROLNET_A1111)
        return links

    def _layout(self):
        for sub in ("models/Stable-diffusion", "models/Lora", "models/ControlNet", "models/VAE", "extensions",
                    "extensions-builtin", "outputs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for folder, links in (("extensions-builtin", self._builtin_links()), ("extensions", self._extension_links())):
            for name, src in links.items():
                link = self.root / folder / name
                if link.is_symlink() or link.exists():
                    continue
                link.symlink_to(Path(src).resolve(), target_is_directory=True)
        config = self.root / "config.json"
        if not config.exists():
            config.write_text("{}", encoding="utf8")
        ckpt = self.root / "models" / "Stable-diffusion" / "v1-5-pruned-emaonly.safetensors"
        if not ckpt.exists():
            ckpt.write_bytes(safetensors_bytes({"name": ckpt.stem}))

    def environment(self) -> dict[str, str]:
        """The env vars the double reads (also given to install.py subprocesses)."""
        return {
            "HOST_FLAVOR": self.flavour,
            "WEBUI_HOST_DATA_DIR": str(self.root),
            "WEBUI_HOST_BUILTIN_DIR": str(self.root / "extensions-builtin"),
            "WEBUI_HOST_ARGV": json.dumps(self.cmd_args),
            "IGNORE_CMD_ARGS_ERRORS": "1",
        }

    def _purge_roots(self) -> list[Path]:
        return [DOUBLE_ROOT / "modules", DOUBLE_ROOT / "launch.py", DOUBLE_ROOT / "extensions-builtin",
                DOUBLE_ROOT / "extensions", FORGE_ROOT, self.root,
                *[src.resolve() for src in self.extensions.values()]]

    def _exposes_extension(self, entry: str) -> bool:
        """True if the sys.path entry is (or contains) an extension source dir, so its packages would be importable."""
        real = _realpath(entry or os.getcwd())
        return any(src == real or src.startswith(real + os.sep)
                   for src in (_realpath(str(s)) for s in self.extensions.values()))

    def _double_paths(self) -> list[str]:
        return [str(DOUBLE_ROOT)] + ([str(FORGE_ROOT)] if self.flavour == "forge" else [])

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> WebUIHost:
        """Purge, set env and sys.path, run preload + argv parsing, initialize, load_scripts(), build runners."""
        if WebUIHost._active is not None and WebUIHost._active is not self:
            WebUIHost._active.stop()
        if self._saved is not None:
            return self
        self._layout()
        _CACHED_ROOTS.update(_realpath(str(src)) for src in self.extensions.values())
        _install_code_cache()
        before = dict(sys.modules)
        self._saved = {"path": list(sys.path), "argv": list(sys.argv),
                       "env": {k: os.environ.get(k) for k in _ENV_KEYS}}
        # Remember what the purge takes away (e.g. the extension's package as the test module imported it) and put
        # it back on stop(): otherwise a test holding the old classes meets new ones (`except` clauses miss).
        self._saved["modules"] = {name: before[name] for name in purge_modules(self._purge_roots())}
        os.environ.pop("COMMANDLINE_ARGS", None)
        os.environ.update(self.environment())
        if self.strict_sys_path:
            sys.path[:] = [entry for entry in sys.path if not self._exposes_extension(entry)]
        sys.path[:0] = self._double_paths()
        WebUIHost._active = self
        try:
            self._initialize()
        except BaseException:
            self.stop()
            raise
        return self

    def _initialize(self):
        from modules import initialize, script_callbacks, shared

        initialize.imports()
        initialize.initialize()
        shared.opts.save(shared.config_filename)
        self._prepare_script_runners()
        script_callbacks.before_ui_callback()

    def _prepare_script_runners(self):
        """What ui.create_ui() does to the runners: instantiate scripts and assign args_from/args_to."""
        from modules import scripts

        for runner, is_img2img in ((scripts.scripts_txt2img, False), (scripts.scripts_img2img, True)):
            scripts.scripts_current = runner
            runner.initialize_scripts(is_img2img=is_img2img)
            runner.setup_ui()
        scripts.scripts_current = None

    def stop(self) -> None:
        """Purge the double's modules and restore sys.path, sys.argv and the environment."""
        if self._saved is None:
            return
        purge_modules(self._purge_roots())
        sys.modules.update(self._saved["modules"])
        sys.path[:] = self._saved["path"]
        sys.argv[:] = self._saved["argv"]
        for key, value in self._saved["env"].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = None
        self.app = None
        self.demo = None
        if WebUIHost._active is self:
            WebUIHost._active = None

    @property
    def started(self) -> bool:
        return self._saved is not None

    def _require_started(self):
        if not self.started:
            raise RuntimeError("WebUIHost is not started (call start())")

    # ---------------------------------------------------------------- WebUI events
    def create_ui(self) -> list:
        """Settings then tabs (real create_ui order); the tabs are rendered into a demo Blocks like the real UI."""
        self._require_started()
        import gradio as gr
        from modules import infotext_utils, script_callbacks, shared

        infotext_utils.reset()  # the real create_ui starts afresh: no paste bindings of a previous build
        script_callbacks.ui_settings_callback()
        tabs = script_callbacks.ui_tabs_callback()
        with gr.Blocks(analytics_enabled=False) as demo:
            with gr.Tabs():
                for interface, label, ifid in tabs:
                    with gr.TabItem(label, id=ifid, elem_id=f"tab_{ifid}"):
                        interface.render()
        shared.demo = self.demo = demo
        shared.tab_names = [label for _, label, _ in tabs]
        return tabs

    def app_started(self, demo=None):
        """A new FastAPI app, /internal/progress, then app_started_callback(demo, app) (None demo = --nowebui)."""
        self._require_started()
        from fastapi import FastAPI
        from modules import progress, script_callbacks

        app = FastAPI()
        progress.setup_progress_api(app)
        script_callbacks.app_started_callback(demo, app)
        self.app = app
        return app

    def reload_ui(self) -> None:
        """Settings -> Reload UI: on_before_reload, on_script_unloaded, re-exec scripts (callbacks cleared)."""
        self._require_started()
        from modules import initialize, script_callbacks

        script_callbacks.app_reload_callback()
        script_callbacks.script_unloaded_callback()
        initialize.initialize_rest(reload_script_modules=True)
        self._prepare_script_runners()
        script_callbacks.before_ui_callback()

    def run_extension_installer(self, extension_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run ``<extension_dir>/install.py`` like launch.run_extension_installer (PYTHONPATH = double root)."""
        full_env = os.environ.copy()
        full_env.pop("COMMANDLINE_ARGS", None)
        full_env.update(self.environment())
        full_env.update(env or {})
        entries = self._double_paths()
        if full_env.get("PYTHONPATH"):
            entries.append(full_env["PYTHONPATH"])
        full_env["PYTHONPATH"] = os.pathsep.join(entries)
        self.root.mkdir(parents=True, exist_ok=True)
        return subprocess.run([sys.executable, str(Path(extension_dir) / "install.py")], capture_output=True,
                              text=True, env=full_env, cwd=str(self.root), timeout=300)

    # ---------------------------------------------------------------- conveniences
    @property
    def modules(self):
        """The imported ``modules`` package of the double."""
        self._require_started()
        return sys.modules["modules"]

    @property
    def errors(self) -> list:
        """Everything reported so far (modules.errors.reported: str subclasses with .message and .exception)."""
        self._require_started()
        return sys.modules["modules.errors"].reported

    @property
    def callback_errors(self) -> list:
        """The reported errors that came from a callback raising (script_callbacks.report_exception)."""
        return [e for e in self.errors if e.startswith("Error executing callback")]

    @property
    def calls(self) -> list:
        """modules.processing.calls: one ProcessImagesCall per process_images()."""
        return importlib.import_module("modules.processing").calls

    def import_module(self, name):
        self._require_started()
        return importlib.import_module(name)

    def add_checkpoint(self, name: str, data: bytes | None = None) -> Path:
        """Write models/Stable-diffusion/<name> (default: a tiny safetensors file) and refresh the checkpoint list."""
        path = self.root / "models" / "Stable-diffusion" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else safetensors_bytes({"name": path.stem}))
        if self.started:
            self.import_module("modules.sd_models").list_models()
        return path

    def add_lora(self, name: str, data: bytes | None = None) -> Path:
        """Write models/Lora/<name>; the Lora double finds it at the next generation (lazy lookup)."""
        path = self.root / "models" / "Lora" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else safetensors_bytes({"ss_output_name": path.stem}))
        return path

    def add_controlnet_model(self, name: str, data: bytes = b"\0" * 16) -> Path:
        """Write models/ControlNet/<name> and refresh the ControlNet double's model list."""
        path = self.root / "models" / "ControlNet" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if self.started and self.controlnet:
            if self.flavour == "forge":
                self.import_module("lib_controlnet.global_state").update_controlnet_filenames()
            else:
                sys.modules["scripts.global_state"].update_cn_models()
        return path
