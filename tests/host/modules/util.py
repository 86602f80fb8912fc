"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/util.py (file listing and sorting helpers, downloads).

``load_file_from_url`` is here on Forge only (A1111 PR 16302, after v1.10.1, moved it from modelloader.py and added
``re_download``; A1111 v1.10.1 has it in modelloader.py). Neither has network: a URL listed in ``served``
(double-only, {url: bytes}) is "downloaded" into the model folder, any other one fails the way an offline machine
does; a file already present is used, and a ``hash_prefix`` the bytes do not match is refused, as in the real ones.
"""

import os
import re

from modules import host_env, shared
from modules.paths_internal import cwd, script_path


def natural_sort_key(s, regex=re.compile("([0-9]+)")):
    return [int(text) if text.isdigit() else text.lower() for text in regex.split(s)]


def listfiles(dirname):
    filenames = [os.path.join(dirname, x) for x in sorted(os.listdir(dirname), key=natural_sort_key)
                 if not x.startswith(".")]
    return [file for file in filenames if os.path.isfile(file)]


def html_path(filename):
    return os.path.join(script_path, "html", filename)


def html(filename):
    path = html_path(filename)
    try:
        with open(path, encoding="utf8") as file:
            return file.read()
    except OSError:
        return ""


def walk_files(path, allowed_extensions=None):
    """Yield files under ``path`` (recursively, following links, natural order), filtered by extension."""
    if not os.path.exists(path):
        return
    if allowed_extensions is not None:
        allowed_extensions = set(allowed_extensions)
    items = sorted(os.walk(path, followlinks=True), key=lambda x: natural_sort_key(x[0]))
    for root, _, files in items:
        for filename in sorted(files, key=natural_sort_key):
            if allowed_extensions is not None:
                _, ext = os.path.splitext(filename)
                if ext.lower() not in allowed_extensions:
                    continue
            if not shared.opts.data.get("list_hidden_files", True) and ("/." in root or "\\." in root):
                continue
            yield os.path.join(root, filename)


def ldm_print(*args, **kwargs):
    if shared.opts.data.get("hide_ldm_prints", True):
        return
    print(*args, **kwargs)


def truncate_path(target_path, base_path=cwd):
    abs_target, abs_base = os.path.abspath(target_path), os.path.abspath(base_path)
    try:
        if os.path.commonpath([abs_target, abs_base]) == abs_base:
            return os.path.relpath(abs_target, abs_base)
    except ValueError:
        pass
    return abs_target


def topological_sort(dependencies):
    """``dependencies``: {name: [names it must come after]}; unknown names are ignored, cycles are broken."""
    visited = {}
    result = []

    def inner(name):
        visited[name] = True
        for dep in dependencies.get(name, []):
            if dep in dependencies and dep not in visited:
                inner(dep)
        result.append(name)

    for depname in dependencies:
        if depname not in visited:
            inner(depname)
    return result


served = {}  # double-only: {url: bytes} that load_file_from_url can "download"


def fetch_served(url, cached_file, hash_prefix=None, mismatch=ValueError):
    """Double-only: write ``served[url]`` to ``cached_file`` (the download both hosts' load_file_from_url do);
    ``mismatch`` is what a wrong ``hash_prefix`` raises (A1111's torch.hub download: RuntimeError)."""
    import hashlib

    if url not in served:
        raise ConnectionError(f"Cannot download {url}: the host double has no network")
    data = served[url]
    if hash_prefix and not hashlib.sha256(data).hexdigest().startswith(hash_prefix.strip().lower()):
        raise mismatch(f"File hash does not match the expected hash prefix {hash_prefix}!")
    os.makedirs(os.path.dirname(cached_file), exist_ok=True)
    with open(cached_file, "wb") as file:
        file.write(data)


if host_env.is_forge():
    def load_file_from_url(url, *, model_dir, progress=True, file_name=None, hash_prefix=None, re_download=False):
        from urllib.parse import urlparse

        if not file_name:
            file_name = os.path.basename(urlparse(url).path)
        cached_file = os.path.abspath(os.path.join(model_dir, file_name))
        if re_download or not os.path.exists(cached_file):
            os.makedirs(model_dir, exist_ok=True)  # before the download, as the real one: a failed one leaves it
            fetch_served(url, cached_file, hash_prefix)
        return cached_file

    def compare_sha256(file_path, hash_prefix):
        import hashlib

        with open(file_path, "rb") as file:
            digest = hashlib.sha256(file.read()).hexdigest()
        return digest.startswith(hash_prefix.strip().lower())
