"""npm packages the browser tests need (never committed): fetched once with `npm pack` into the kit cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .cache import SourceUnavailable, cached_dir

NPM_TIMEOUT_S = 600


def npm_pack(name: str, version: str, cache_root: Path) -> Path:
    """The published tarball of `name@version` (what the npm registry serves), cached under the kit root."""
    npm = shutil.which("npm")
    if npm is None:
        raise SourceUnavailable("npm is not installed (Debian: apt-get install npm; or Node.js from nodejs.org)")

    def pack(tmp: Path) -> None:
        done = subprocess.run([npm, "pack", f"{name}@{version}", "--silent"], cwd=tmp, capture_output=True,
                              text=True, timeout=NPM_TIMEOUT_S)
        if done.returncode != 0:
            raise SourceUnavailable(f"npm pack {name}@{version} failed: {done.stderr.strip()[-500:]}")

    folder = cached_dir(cache_root / "npm" / f"{name}-{version}", pack)
    return folder / f"{name.replace('@', '').replace('/', '-')}-{version}.tgz"
