"""On-disk cache for kit artefacts, plus the one place that talks to PyPI.

Why: every artefact (tiny models, tokenizer files, extracted photos) is a pure function of this
kit's code and a pinned package version, so it is built once into the pytest cache and reused.
Bumping :data:`KIT_VERSION` wipes the cache root so stale artefacts never survive a code change.
Builds go to a temporary sibling folder that is renamed into place, so an interrupted build
never leaves a half-written artefact that later runs would trust.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

KIT_VERSION = "1"
STAMP_NAME = "KIT_VERSION"
PIP_TIMEOUT_S = 300


class SourceUnavailable(RuntimeError):
    """A real input (a PyPI package, a photo inside a package) could not be had here."""


def prepare_root(root: Path) -> Path:
    """Make ``root`` a kit cache of the current :data:`KIT_VERSION`, wiping it if it is older.

    A non-empty folder without a stamp is refused rather than wiped: ``$EASYPHOTO_KIT_CACHE``
    pointed at the wrong place must never delete someone's files.
    """
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / STAMP_NAME
    if stamp.is_file() and stamp.read_text().strip() == KIT_VERSION:
        return root
    if not stamp.is_file() and any(root.iterdir()):
        raise RuntimeError(f"{root} is not empty and has no {STAMP_NAME} file: refusing to wipe it as a kit cache")
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    stamp.write_text(KIT_VERSION + "\n")
    return root


def cached_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first filling it with ``build(tmp_dir)`` when it is missing.

    The builder writes into a fresh temporary folder next to ``target``; only a build that
    returned normally is renamed into place.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # a concurrent builder did not win the race either
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def pip_download(spec: str, dest: Path, *, sdist: bool = False) -> Path:
    """Fetch one distribution file for ``spec`` (``name==version``) with pip, without installing it.

    Why pip: it is the ordinary client for PyPI and honours the machine's index settings. The
    file is cached in ``dest``; a second call finds it there without touching the network.
    """
    name, _, version = spec.partition("==")
    stem = f"{name.replace('-', '_').lower()}-{version}"
    found = _find_dist(dest, stem)
    if found is not None:
        return found
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd.append(spec)
    hint = f"`{sys.executable} -m pip download --no-deps {'--no-binary :all: ' if sdist else ''}{spec}`"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=_pip_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceUnavailable(f"could not run {hint}: {exc}") from exc
    found = _find_dist(dest, stem)
    if proc.returncode != 0 or found is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SourceUnavailable(f"{hint} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return found


def _find_dist(dest: Path, stem: str) -> Path | None:
    """Find an already downloaded wheel or sdist whose normalised name starts with ``stem``."""
    if not dest.is_dir():
        return None
    stem = stem.replace("-", "_")
    for path in sorted(dest.iterdir()):
        name = path.name.replace("-", "_").lower()
        is_wheel = name.startswith(stem + "_") and name.endswith(".whl")
        if is_wheel or name in (stem + ".tar.gz", stem + ".zip"):
            return path
    return None


def _pip_env() -> dict[str, str]:
    """Environment for the pip subprocess: quiet, and never prompting on a TTY."""
    env = dict(os.environ)
    env.setdefault("PIP_NO_INPUT", "1")
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env
