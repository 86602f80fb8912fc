"""ONNX Runtime Web for click-to-mask in the browser: the published npm tarball, fetched like a model file (manifest
entry "onnxruntime-web", sha256-checked), from which only the three files the page needs are extracted next to it
and served by EasyPhoto's own route, so the browser loads nothing from a CDN and the page works offline.

    folder = ort_web_folder(paths)              # extracted on first use (checked, atomic), then reused
    path, media_type = ort_web_asset(paths, "ort-wasm-simd-threaded.wasm")

Offline placement: `npm pack onnxruntime-web@1.20.1` on any machine, then copy the .tgz where `models list` says.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path, PurePosixPath

from easyphoto.errors import EasyPhotoError, NotFound
from easyphoto.segment.checks import require_models
from easyphoto.store import Paths

ORT_WEB_ID = "onnxruntime-web"
# The wasm-only build as a classic script (window.ort), its loader module and the single WebAssembly file it loads.
SERVED: dict[str, str] = {
    "ort.wasm.min.js": "text/javascript",
    "ort-wasm-simd-threaded.mjs": "text/javascript",
    "ort-wasm-simd-threaded.wasm": "application/wasm",
}
PACKAGE_DIR = PurePosixPath("package/dist")
_lock = threading.Lock()


class DamagedPackage(EasyPhotoError):
    """The onnxruntime-web tarball is not the published one, or holds unsafe or missing members."""

    phase = "segment"
    http_status = 409


class UnpackFailed(EasyPhotoError):
    """The package is fine, but its files cannot be written next to it (disk full, permissions)."""

    phase = "segment"
    http_status = 500


def ort_web_folder(paths: Paths) -> Path:
    """The folder holding the SERVED files, extracted from the manifest's tarball on first use; MissingWeights (how
    to fetch or place the tarball) when it is absent, DamagedPackage when it is not the published file."""
    from easyphoto import weights

    (tarball,) = require_models([ORT_WEB_ID], paths, "Click-to-mask in the browser")
    return extracted(tarball, weights.get(ORT_WEB_ID).sha256)


def extracted(tarball: Path, sha256: str | None) -> Path:
    """`tarball`'s SERVED files in the folder beside it named after it (without .tgz), extracted once: the tarball's
    sha256 checked first, members with absolute paths or '..' refused, written to a temporary folder then renamed."""
    target = tarball.with_suffix("")
    with _lock:
        if all((target / name).is_file() for name in SERVED):
            return target
        if sha256 and _sha256(tarball) != sha256:
            raise DamagedPackage(f"{tarball} is not the published onnxruntime-web package (its sha256 differs).",
                                 hint="Delete it and fetch it again (EasyPhoto → Models, or `models fetch "
                                      f"{ORT_WEB_ID}`), or copy in the file `npm pack` writes.")
        staging = Path(tempfile.mkdtemp(prefix=".ort-web-", dir=tarball.parent))
        try:
            _extract(tarball, staging)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _extract(tarball: Path, folder: Path) -> None:
    wanted = {str(PACKAGE_DIR / name): name for name in SERVED}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive.getmembers():
                _check_member(member, tarball)
                if member.name in wanted and member.isfile():
                    source = archive.extractfile(member)
                    (folder / wanted.pop(member.name)).write_bytes(source.read())
    except (tarfile.TarError, EOFError, UnicodeDecodeError) as exc:
        raise DamagedPackage(f"{tarball} cannot be read as a .tgz: {exc}.",
                             hint="Delete it and fetch it again.") from None
    except OSError as exc:  # the disk, not the package: say so
        raise UnpackFailed(f"onnxruntime-web cannot be unpacked into {folder}: {exc}.",
                           hint="Free disk space or fix the models folder's permissions, then reload.") from None
    if wanted:
        raise DamagedPackage(f"{tarball} lacks {', '.join(sorted(wanted))}: not an onnxruntime-web package.",
                             hint="Use the tarball of the version the manifest names.")


def _check_member(member: tarfile.TarInfo, tarball: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.issym() or member.islnk():
        raise DamagedPackage(f"{tarball} holds an unsafe member {member.name!r} (absolute, '..' or a link).",
                             hint="Delete the file: it is not the published package.")


def ort_web_asset(paths: Paths, name: str) -> tuple[Path, str]:
    """(file, media type) of one SERVED file; NotFound for any other name (nothing else is ever served)."""
    if name not in SERVED:
        raise NotFound(f"No onnxruntime-web asset {name!r}.", phase="segment",
                       hint=f"The page loads only {', '.join(SERVED)}.")
    return ort_web_folder(paths) / name, SERVED[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
