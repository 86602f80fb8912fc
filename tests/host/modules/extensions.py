"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/extensions.py (host-api.md 1.7, 1.8).

Reproduced on purpose: ``[Extension] Name`` is read but overwritten by the lower-cased directory name (the
canonical name); ``Requires`` only reports; ``a|b`` resolves to the first alternative among the loaded (even
disabled) extensions. Forge force-disables ``modules_forge.config.always_disabled_extensions``.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
import threading

from modules import errors, host_env, shared
from modules.paths_internal import extensions_builtin_dir, extensions_dir


def active():
    if shared.cmd_opts.disable_all_extensions or shared.opts.disable_all_extensions == "all":
        return []
    if shared.cmd_opts.disable_extra_extensions or shared.opts.disable_all_extensions == "extra":
        return [x for x in extensions if x.enabled and x.is_builtin]
    return [x for x in extensions if x.enabled]


@dataclasses.dataclass
class CallbackOrderInfo:
    name: str
    before: list
    after: list


class ExtensionMetadata:
    filename = "metadata.ini"
    config: configparser.ConfigParser
    canonical_name: str
    requires: list

    def __init__(self, path, canonical_name):
        self.config = configparser.ConfigParser()
        filepath = os.path.join(path, self.filename)
        try:
            self.config.read(filepath)  # a missing file is silently ignored by configparser
        except Exception:
            errors.report(f"Error reading {self.filename} for extension {canonical_name}.", exc_info=True)
        self.canonical_name = self.config.get("Extension", "Name", fallback=canonical_name)
        self.canonical_name = canonical_name.lower().strip()  # v1.10.1: the Name key is effectively ignored
        self.requires = None

    def get_script_requirements(self, field, section, extra_section=None):
        """Names listed in ``field`` of ``section`` (+ ``extra_section``); "a|b" -> first loaded alternative."""
        x = self.config.get(section, field, fallback="")
        if extra_section:
            x = x + ", " + self.config.get(extra_section, field, fallback="")
        res = []
        for requirement in self.parse_list(x.lower()):
            loaded = (name for name in requirement.split("|") if name in loaded_extensions)
            res.append(next(loaded, requirement))
        return res

    def parse_list(self, text):
        if not text:
            return []
        return [x for x in re.split(r"[,\s]+", text.strip()) if x]

    def list_callback_order_instructions(self):
        for section in self.config.sections():
            if not section.startswith("callbacks/"):
                continue
            callback_name = section[10:]
            if not callback_name.startswith(self.canonical_name):
                errors.report(f"Callback order section for extension {self.canonical_name} is referencing the "
                              f"wrong extension: {section}")
                continue
            before = self.parse_list(self.config.get(section, "Before", fallback=""))
            after = self.parse_list(self.config.get(section, "After", fallback=""))
            yield CallbackOrderInfo(callback_name, before, after)


class Extension:
    lock = threading.Lock()
    cached_fields = ["remote", "commit_date", "branch", "commit_hash", "version"]
    metadata: ExtensionMetadata

    def __init__(self, name, path, enabled=True, is_builtin=False, metadata=None):
        self.name = name
        self.path = path
        self.enabled = enabled
        self.status = ""
        self.can_update = False
        self.is_builtin = is_builtin
        self.commit_hash = ""
        self.commit_date = None
        self.version = ""
        self.branch = None
        self.remote = None
        self.have_info_from_repo = False
        self.metadata = metadata if metadata else ExtensionMetadata(self.path, name.lower())
        self.canonical_name = self.metadata.canonical_name

    def to_dict(self):
        return {x: getattr(self, x) for x in self.cached_fields}

    def from_dict(self, d):
        for field in self.cached_fields:
            setattr(self, field, d[field])

    def read_info_from_repo(self):
        """No git in the double: the info stays empty (the real one reads the repo under a lock, with a cache)."""
        if self.is_builtin or self.have_info_from_repo:
            return
        with self.lock:
            self.do_read_info_from_repo()

    def do_read_info_from_repo(self):
        self.have_info_from_repo = True
        self.status = "unknown"

    def list_files(self, subdir, extension):
        from modules import scripts

        dirpath = os.path.join(self.path, subdir)
        if not os.path.isdir(dirpath):
            return []
        res = [scripts.ScriptFile(self.path, filename, os.path.join(dirpath, filename))
               for filename in sorted(os.listdir(dirpath))]
        return [x for x in res if os.path.splitext(x.path)[1].lower() == extension and os.path.isfile(x.path)]

    def check_updates(self):
        self.can_update = False
        self.status = "unknown"

    def fetch_and_reset_hard(self, commit=None):
        raise RuntimeError("the host double cannot update extensions (no git)")


extensions: list[Extension] = []
extension_paths: dict[str, Extension] = {}
loaded_extensions: dict[str, Exception] = {}


def _always_disabled():
    if not host_env.is_forge():
        return set()
    from modules_forge.config import always_disabled_extensions

    return set(always_disabled_extensions)


def _scan(dirname, disabled):
    for extension_dirname in sorted(os.listdir(dirname)):
        path = os.path.join(dirname, extension_dirname)
        if not os.path.isdir(path):
            continue
        metadata = ExtensionMetadata(path, extension_dirname)
        already_loaded = loaded_extensions.get(metadata.canonical_name)
        if already_loaded is not None:
            errors.report(f'Duplicate canonical name "{extension_dirname}" found in extensions "{extension_dirname}" '
                          f'and "{already_loaded.name}". Former will be discarded.', exc_info=False)
            continue
        extension = Extension(name=extension_dirname, path=path, enabled=extension_dirname not in disabled,
                              is_builtin=dirname == extensions_builtin_dir, metadata=metadata)
        extensions.append(extension)
        extension_paths[extension.path] = extension
        loaded_extensions[metadata.canonical_name] = extension


def _report_missing_requirements():
    for extension in extensions:
        if not extension.enabled:
            continue
        for req in extension.metadata.requires:
            required = loaded_extensions.get(req)
            if required is None:
                errors.report(f'Extension "{extension.name}" requires "{req}" which is not installed.', exc_info=False)
            elif not required.enabled:
                errors.report(f'Extension "{extension.name}" requires "{required.name}" which is disabled.',
                              exc_info=False)


def list_extensions():
    """Scan extensions-builtin/ then extensions/ (each sorted); Requires problems are only reported."""
    extensions.clear()
    extension_paths.clear()
    loaded_extensions.clear()
    if shared.cmd_opts.disable_all_extensions or shared.opts.disable_all_extensions == "all":
        print('*** "Disable all extensions" option was set, will not load any extensions ***')
    disabled = set(shared.opts.disabled_extensions) | _always_disabled()
    for dirname in [extensions_builtin_dir, extensions_dir]:
        if os.path.isdir(dirname):
            _scan(dirname, disabled)
    for extension in extensions:
        extension.metadata.requires = extension.metadata.get_script_requirements("Requires", "Extension")
    _report_missing_requirements()


def find_extension(filename):
    """The extension whose folder contains ``filename`` (symlinked folders are matched by their real path too)."""
    parentdir = os.path.dirname(os.path.realpath(filename))
    by_path = {os.path.realpath(ext.path): ext for ext in extensions}
    by_path.update({ext.path: ext for ext in extensions})
    while parentdir != filename:
        if parentdir in by_path:
            return by_path[parentdir]
        filename = parentdir
        parentdir = os.path.dirname(filename)
    return None
