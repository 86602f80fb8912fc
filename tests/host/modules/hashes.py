"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/hashes.py (sha256 of files, with an in-memory cache).

The real cache is cache.json in the data dir; the double keeps it per host (module state), so the first
"model load" is what makes a checkpoint's shorthash known, as in a fresh real install.
"""

import hashlib
import os

from modules import shared

_cache = {}


def calculate_sha256(filename):
    hash_sha256 = hashlib.sha256()
    with open(filename, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            hash_sha256.update(chunk)
    return hash_sha256.hexdigest()


def sha256_from_cache(filename, title, use_addnet_hash=False):
    entry = _cache.get(title)
    if entry is None:
        return None
    if entry["mtime"] < os.path.getmtime(filename):
        return None
    return entry["sha256"]


def sha256(filename, title, use_addnet_hash=False):
    cached = sha256_from_cache(filename, title, use_addnet_hash)
    if cached is not None:
        return cached
    if shared.cmd_opts.no_hashing:
        return None
    value = addnet_hash_safetensors(filename) if use_addnet_hash else calculate_sha256(filename)
    _cache[title] = {"mtime": os.path.getmtime(filename), "sha256": value}
    return value


def addnet_hash_safetensors(filename):
    """sha256 of the tensor data after the safetensors header (kohya's "addnet" hash)."""
    hash_sha256 = hashlib.sha256()
    with open(filename, "rb") as b:
        header = b.read(8)
        n = int.from_bytes(header, "little") if len(header) == 8 else 0
        b.seek(n + 8 if len(header) == 8 else 0)
        for chunk in iter(lambda: b.read(1024 * 1024), b""):
            hash_sha256.update(chunk)
    return hash_sha256.hexdigest()
