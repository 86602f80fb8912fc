"""The template gallery: template photos users drop into a folder, plus the preset pack the model manager fetches.

Folders, in gallery order: <data root>/templates/ (uploads and the user's own files) and
<models root>/easyphoto/training_templates/ (the "templates" group of the model manager, when downloaded). No
photos ship with EasyPhoto: third-party pictures have no place in the repository.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from easyphoto.errors import InvalidRequest, NotFound
from easyphoto.imageops import load_photo
from easyphoto.store import Paths, atomic_path

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# Templates uploaded with a portrait request live in <data root>/uploads/<request>/ only while their job needs
# them: the folder is removed when the job ends, and folders a crash left behind are swept after this age.
UPLOAD_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class TemplateFile:
    name: str  # "<source>/<file name>", unique in the gallery and safe to show and to send back
    path: Path
    source: str  # "user" or "preset"

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "file": self.path.name}


def folders(paths: Paths) -> dict[str, Path]:
    return {"user": paths.templates_dir, "preset": paths.models_root / "training_templates"}


def list_templates(paths: Paths) -> list[TemplateFile]:
    found = []
    for source, folder in folders(paths).items():
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in SUFFIXES and path.is_file() and not path.name.startswith("."):
                    found.append(TemplateFile(f"{source}/{path.name}", path, source))
    return found


def resolve(paths: Paths, name: str) -> Path:
    """The file of a gallery name; names are looked up, never joined to paths, so no name can escape the folders."""
    for template in list_templates(paths):
        if template.name == name:
            return template.path
    raise NotFound(f"There is no template named {name!r}.", phase="template",
                   hint="List them with GET /easyphoto/v1/templates, or upload the photo.")


def add_template(paths: Paths, data: bytes, filename: str, max_megapixels: float) -> TemplateFile:
    """Check the upload is a readable photo, then store it (as JPEG or PNG) in the user's template folder."""
    loaded = load_photo(data, max_megapixels=max_megapixels)  # UnreadableImage says why not
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(filename).stem)[:40] or "template"
    folder = paths.templates_dir
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.png"
    if target.exists():
        target = folder / f"{stem}-{uuid.uuid4().hex[:6]}.png"
    with atomic_path(target) as tmp:
        loaded.image.save(tmp, "PNG")
    return TemplateFile(f"user/{target.name}", target, "user")


def delete_template(paths: Paths, name: str) -> None:
    if not name.startswith("user/"):
        raise InvalidRequest(f"Only your own templates can be deleted, not {name!r}.", phase="template")
    resolve(paths, name).unlink()


# ---------------------------------------------------------------------------------------------- per-job uploads


def uploads_root(paths: Paths) -> Path:
    return paths.data_root / "uploads"


def new_upload_folder(paths: Paths) -> Path:
    """An empty folder for the templates of one request (sweeping skips it: it is fresh)."""
    folder = uploads_root(paths) / f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def remove_upload_folder(paths: Paths, folder: Path) -> None:
    """Delete one request's upload folder; only folders directly under the uploads root are ever removed."""
    if folder.parent.resolve() == uploads_root(paths).resolve():
        shutil.rmtree(folder, ignore_errors=True)


def sweep_uploads(paths: Paths, in_use: Iterable[str], *, max_age_s: float = UPLOAD_MAX_AGE_S) -> list[Path]:
    """Remove upload folders (and loose files of older versions) older than `max_age_s` that no unfinished job
    names in `in_use` (template paths); returns what was removed."""
    root = uploads_root(paths)
    if not root.is_dir():
        return []
    busy = {Path(p).parent.name for p in in_use} | {Path(p).name for p in in_use}
    cutoff = time.time() - max_age_s
    removed = []
    for entry in root.iterdir():
        try:
            stale = entry.stat().st_mtime < cutoff and entry.name not in busy
        except OSError:
            continue  # removed meanwhile
        if not stale:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
