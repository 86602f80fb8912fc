"""Where EasyPhoto keeps its data, and the only code that writes it (ARCHITECTURE.md §3).

    <data root>/identities/<id>/photos/        uploads, EXIF-rotated, never modified
    <data root>/identities/<id>/dataset/       processed training images + captions
    <data root>/identities/<id>/report.json    per-photo decisions
    <data root>/identities/<id>/checkpoints/   LoRA checkpoints during training (resumable)
    <data root>/identities/<id>/validation/    validation images + scores
    <data root>/identities/<id>/identity.json  final: LoRA file, reference face, embedding stats, config
    <data root>/jobs/<job-id>.json             job records
    <data root>/outputs/<date>/                generated images
    <lora dir>/<id>.safetensors                the exported LoRA (the WebUI's Lora folder)
    <data root>/garments/<id>/photos/          garment uploads, EXIF-rotated when read, never modified
    <data root>/garments/<id>/masks/           uploaded masks (<photo name>.png); computed/: the last build's
    <data root>/garments/<id>/dataset/         garment crops on white + metadata.jsonl + dataset.json
    <data root>/garments/<id>/points.json      per-photo clicks for the point segmenter
    <data root>/garments/<id>/report.json      per-photo decisions (kept, or dropped with the reason)
    <data root>/garments/<id>/checkpoints/, validation/, garment.json   as for identities
    <lora dir>/<garment id>.safetensors        the exported garment LoRA, in the same Lora folder

Identity ids become file names and `<lora:id:w>` prompt tokens, so they are restricted to a safe slug, checked
here before any path is built. Every write goes through a temp file in the same folder plus `os.replace`, so a
killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easyphoto.errors import Conflict, EasyPhotoError, IdentityNotFound, InvalidIdentityId, NotFound

_log = logging.getLogger("easyphoto")


class InvalidGarmentId(EasyPhotoError):
    phase = "garment"
    http_status = 422


class GarmentNotFound(EasyPhotoError):
    phase = "garment"
    http_status = 404


class LoraNameTaken(Conflict):
    """An identity and a garment of the same id would both export `<Lora>/<id>.safetensors` and answer to the same
    `<lora:id:w>` token, so one id names at most one of them."""

    phase = "store"


MAX_ID_LENGTH = 64
_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?")
# Device names Windows refuses as file names, whatever the extension.
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def suggest_identity_id(name: str) -> str:
    """A valid id close to a free-form name ("Zoë Smith" → "zoe_smith"), for error messages and UI defaults."""
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_-")[:MAX_ID_LENGTH].strip("_-")
    if not slug or slug in _WINDOWS_RESERVED:
        slug = f"person_{slug}" if slug else "person"
    return slug


MAX_PHOTO_STEM = 60


def safe_photo_name(original: str, suffix: str) -> str:
    """A file name for an upload: its original name as a safe slug ("Zoë at the beach (2).JPG" → "Zoe_at_the_beach_2")
    plus `suffix`, the extension of the format the bytes really are (never the name's own, which may lie)."""
    stem = Path(Path(str(original).replace("\\", "/")).name).stem  # no folders, from either kind of separator
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:MAX_PHOTO_STEM].strip("_-") or "photo"
    if stem.lower() in _WINDOWS_RESERVED:
        stem = f"photo_{stem}"
    suffix = re.sub(r"[^a-z0-9]", "", str(suffix).lower())[:5] or "bin"
    return f"{stem}.{suffix}"


def file_digest(path: Path | str) -> str:
    """sha256 of a file's bytes, read in chunks (photos are compared by content, never by name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_identity_id(value: object) -> str:
    """Return `value` if it is a safe identity id, else raise InvalidIdentityId saying why and what would work."""
    return _validate_slug(value, "identity", InvalidIdentityId)


def validate_garment_id(value: object) -> str:
    """Return `value` if it is a safe garment id (the identity id rules: it names a folder, a Lora file and a
    `<lora:id:w>` token too), else raise InvalidGarmentId saying why and what would work."""
    return _validate_slug(value, "garment", InvalidGarmentId)


def _validate_slug(value: object, kind: str, error: type[EasyPhotoError]) -> str:
    if not isinstance(value, str) or not value:
        raise error(f"The {kind} id is empty.", hint="Use lowercase letters, digits, '_' or '-'.")
    if len(value) > MAX_ID_LENGTH:
        raise error(
            f"The {kind} id is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed.",
            hint=f"Try '{suggest_identity_id(value)}'.",
        )
    if not _ID_RE.fullmatch(value):
        bad = sorted({c for c in value if not (c.isascii() and (c.islower() or c.isdigit() or c in "_-"))})
        reason = f"contains {', '.join(repr(c) for c in bad)}" if bad else "must start and end with a letter or digit"
        raise error(
            f"The {kind} id {value!r} {reason}.",
            hint=f"Use lowercase letters, digits, '_' or '-', e.g. '{suggest_identity_id(value)}'.",
        )
    if value in _WINDOWS_RESERVED:
        raise error(f"The {kind} id {value!r} is a reserved device name on Windows.", hint="Add a suffix.")
    return value


# ---------------------------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temp path next to `target`; on success it replaces `target` atomically, on error it is removed.

    For writers that want a file name (safetensors.save_file, PIL.Image.save) rather than bytes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: Path | str, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: Path | str, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: Path | str, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(target, text + "\n")


def read_json(path: Path | str) -> Any:
    """Read a JSON file we wrote; a damaged file raises an error naming it instead of a bare JSONDecodeError."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EasyPhotoError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).",
            hint="The file was damaged outside EasyPhoto; restore it from a backup or delete it.",
            phase="store",
        ) from exc


def swap_in_folder(staging: Path, target: Path) -> None:
    """Replace the folder `target` by the finished folder `staging` (a dataset built beside it), so a crash never
    leaves half of one in place: at worst the old one stays as `<target>.old` until the next swap."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Paths:
    """Every folder EasyPhoto reads or writes, resolved once per host (WebUI or standalone)."""

    data_root: Path  # our own data: identities, jobs, outputs
    models_root: Path  # our own weights: face/segmentation/fusion models
    lora_dir: Path  # the host's Lora folder (exported identity LoRAs go here)
    controlnet_dir: Path  # the host's ControlNet model folder
    checkpoints_dir: Path  # base checkpoints (models/Stable-diffusion)

    @classmethod
    def standalone(cls, data_dir: Path | str | None = None, models_dir: Path | str | None = None) -> Paths:
        """Standalone layout mirrors the WebUI's, so the same manifest destinations work in both."""
        base = Path(data_dir or os.environ.get("EASYPHOTO_DATA_DIR") or Path.home() / "easyphoto").expanduser()
        models = Path(models_dir or base / "models").expanduser()
        return cls(
            data_root=base / "easyphoto",
            models_root=models / "easyphoto",
            lora_dir=models / "Lora",
            controlnet_dir=models / "ControlNet",
            checkpoints_dir=models / "Stable-diffusion",
        )

    @property
    def identities_dir(self) -> Path:
        return self.data_root / "identities"

    @property
    def garments_dir(self) -> Path:
        return self.data_root / "garments"

    @property
    def jobs_dir(self) -> Path:
        return self.data_root / "jobs"

    @property
    def outputs_dir(self) -> Path:
        return self.data_root / "outputs"

    @property
    def templates_dir(self) -> Path:
        return self.data_root / "templates"

    def to_dict(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class IdentityLayout:
    """The files of one identity."""

    identity_id: str
    root: Path
    lora_file: Path

    @property
    def photos(self) -> Path:
        return self.root / "photos"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def identity_json(self) -> Path:
        return self.root / "identity.json"


@dataclass(frozen=True)
class GarmentLayout:
    """The files of one garment: the identity layout's folders, plus the garment's masks and points."""

    garment_id: str
    root: Path
    lora_file: Path

    @property
    def photos(self) -> Path:
        return self.root / "photos"

    @property
    def masks(self) -> Path:
        """Uploaded masks, `<photo name>.png` (the photo's full name: a.jpg and a.png are two photos)."""
        return self.root / "masks"

    @property
    def computed_masks(self) -> Path:
        """Masks the last dataset build computed (parsing or points), same naming, for review in the UI."""
        return self.root / "masks" / "computed"

    @property
    def points(self) -> Path:
        return self.root / "points.json"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def garment_json(self) -> Path:
        return self.root / "garment.json"


PhotoLayout = IdentityLayout | GarmentLayout  # what the photo helpers below work on: anything with a photos folder


# ---------------------------------------------------------------------------------------------- LoRA ownership

# Keys save_lora (easyphoto.sd.lora) writes into every LoRA's safetensors metadata. kohya's ss_* keys are not
# proof of anything: every community LoRA has them.
EASYPHOTO_LORA_KEYS = ("easyphoto_version", "easyphoto_modules")
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # safetensors' own limit


class ForeignLoraFile(EasyPhotoError):
    """`<Lora>/<id>.safetensors` exists and EasyPhoto did not write it: it is never overwritten or deleted."""

    phase = "identity"
    http_status = 409


def safetensors_header(path: Path | str) -> dict:
    """The JSON header of a .safetensors file (tensor names → dtype/shape/offsets, plus ``__metadata__``), read
    without touching a tensor or deserialising anything. ValueError (the reason) when the file is not one; OSError
    when it cannot be read."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("shorter than 8 bytes")
        length = int.from_bytes(raw, "little")
        if not 2 <= length <= _MAX_SAFETENSORS_HEADER:
            raise ValueError(f"header length {length} is not plausible")
        header = json.loads(f.read(length).decode("utf-8"))  # UnicodeDecodeError is a ValueError too
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def safetensors_metadata(path: Path | str) -> dict[str, str] | None:
    """The ``__metadata__`` of a .safetensors file from its header alone; None when the file is not a readable
    safetensors file."""
    try:
        header = safetensors_header(path)
    except (OSError, ValueError):
        return None
    metadata = header.get("__metadata__") or {}
    return metadata if isinstance(metadata, dict) else {}


def is_easyphoto_lora(path: Path | str) -> bool:
    """True when the file's safetensors metadata carries EasyPhoto's keys (see EASYPHOTO_LORA_KEYS)."""
    metadata = safetensors_metadata(path)
    return metadata is not None and any(key in metadata for key in EASYPHOTO_LORA_KEYS)


def check_lora_target(lora_file: Path | str, identity_id: str | None = None) -> None:
    """Raise ForeignLoraFile when writing `lora_file` would replace a file EasyPhoto did not write."""
    lora_file = Path(lora_file)
    if not lora_file.exists() or is_easyphoto_lora(lora_file):
        return
    name = identity_id or lora_file.stem
    raise ForeignLoraFile(
        f"{lora_file} already exists and was not written by EasyPhoto (no EasyPhoto metadata): it may be another "
        f"LoRA of the same name, so it is never overwritten. The identity {name!r} must be renamed.",
        hint=f"Use another identity id (e.g. '{name}_ep': create it with the same photos, or export this identity "
        "and import the bundle under the new id), or move the other file out of the Lora folder.",
    )


class _SubjectStore:
    """Create, list and delete the things a LoRA is trained for: identities and garments. Every id is validated
    before it touches the file system, and an id one kind has is refused to the other: both export into the same
    Lora folder and answer to the same <lora:id:w> token."""

    noun, a_noun = "identity", "an identity"  # set by each kind
    plural = "identities"
    other = "garments"  # the other kind's folder attribute of Paths, and its words
    other_noun = "a garment"

    def __init__(self, paths: Paths):
        self.paths = paths

    @property
    def root(self) -> Path:
        return getattr(self.paths, f"{self.plural}_dir")

    def _make_layout(self, item_id: str, root: Path, lora_file: Path):
        raise NotImplementedError

    def _validate(self, item_id: str) -> str:
        raise NotImplementedError

    def _invalid(self, message: str, hint: str = "") -> EasyPhotoError:
        raise NotImplementedError

    def _not_found(self, message: str, hint: str = "") -> EasyPhotoError:
        raise NotImplementedError

    def _folders(self, layout) -> tuple[Path, ...]:
        """The folders a new one starts with."""
        return layout.photos, layout.dataset, layout.checkpoints, layout.validation

    def layout(self, item_id: str):
        item_id = self._validate(item_id)
        root = self.root / item_id
        # The slug rules already exclude separators and dots; this guards against a symlinked folder.
        if root.resolve().parent != self.root.resolve():
            raise self._invalid(f"The {self.noun} folder for {item_id!r} resolves outside {self.root}.")
        return self._make_layout(item_id, root, self.paths.lora_dir / f"{item_id}.safetensors")

    def exists(self, item_id: str) -> bool:
        return self.layout(item_id).root.is_dir()

    def get(self, item_id: str):
        layout = self.layout(item_id)
        if not layout.root.is_dir():
            raise self._not_found(f"No {self.noun} named {item_id!r}.",
                                  hint=f"Known {self.plural}: {', '.join(self.list()) or 'none yet'}.")
        return layout

    def create(self, item_id: str, *, exist_ok: bool = False):
        layout = self.layout(item_id)
        if layout.root.exists() and not exist_ok:
            raise self._invalid(f"{self.a_noun.capitalize()} named {item_id!r} already exists.",
                                hint=f"Pick another id, or delete the existing {self.noun} first.")
        if not layout.root.exists():  # an existing one keeps working whatever appeared since
            self.check_id_free(item_id)
        for folder in self._folders(layout):
            folder.mkdir(parents=True, exist_ok=True)
        return layout

    def check_id_free(self, item_id: str) -> None:
        """LoraNameTaken when the other kind has this id (a new one may not take it: same Lora file and token)."""
        other_root = getattr(self.paths, f"{self.other}_dir") / item_id
        if other_root.is_dir():
            raise LoraNameTaken(
                f"{item_id!r} is already {self.other_noun}; {self.a_noun} of the same id would export to the same "
                f"Lora file ({item_id}.safetensors) and answer to the same <lora:{item_id}:w> token.",
                hint=f"Pick another id for {self.a_noun}, e.g. '{item_id}_{'garment' if self.noun == 'garment' else 'person'}'.",
            )

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = (p.name for p in self.root.iterdir() if p.is_dir())
        return sorted(n for n in names if _ID_RE.fullmatch(n) and len(n) <= MAX_ID_LENGTH)

    def delete(self, item_id: str) -> list[str]:
        """Remove the folder and its exported LoRA; returns notes for the user (empty when all went).

        The folder is renamed first, so a crash midway never leaves a half-deleted one that still looks valid.
        `<Lora>/<id>.safetensors` is deleted only when EasyPhoto wrote it: a file of the same name without our
        metadata is someone else's LoRA (named like a community LoRA) and stays, with a note."""
        layout = self.get(item_id)
        trash = Path(tempfile.mkdtemp(prefix=f".trash-{item_id}-", dir=self.root))
        os.replace(layout.root, trash / item_id)
        notes = []
        if layout.lora_file.exists():
            if is_easyphoto_lora(layout.lora_file):
                layout.lora_file.unlink()
            else:
                notes.append(f"{layout.lora_file} was not written by EasyPhoto (no EasyPhoto metadata), so it was "
                             "left in place.")
                _log.warning("EasyPhoto: %s", notes[-1])
        shutil.rmtree(trash)
        return notes


class IdentityStore(_SubjectStore):
    """Identities: create, list and delete (see _SubjectStore)."""

    def _make_layout(self, item_id: str, root: Path, lora_file: Path) -> IdentityLayout:
        return IdentityLayout(item_id, root, lora_file)

    def _validate(self, item_id: str) -> str:
        return validate_identity_id(item_id)

    def _invalid(self, message: str, hint: str = "") -> EasyPhotoError:
        return InvalidIdentityId(message, hint=hint)

    def _not_found(self, message: str, hint: str = "") -> EasyPhotoError:
        return IdentityNotFound(message, hint=hint)


class GarmentStore(_SubjectStore):
    """Garments, the way IdentityStore does identities; a garment also starts with its masks/ folder."""

    noun, a_noun, plural = "garment", "a garment", "garments"
    other, other_noun = "identities", "an identity"

    def _make_layout(self, item_id: str, root: Path, lora_file: Path) -> GarmentLayout:
        return GarmentLayout(item_id, root, lora_file)

    def _validate(self, item_id: str) -> str:
        return validate_garment_id(item_id)

    def _invalid(self, message: str, hint: str = "") -> EasyPhotoError:
        return InvalidGarmentId(message, hint=hint)

    def _not_found(self, message: str, hint: str = "") -> EasyPhotoError:
        return GarmentNotFound(message, hint=hint)

    def _folders(self, layout) -> tuple[Path, ...]:
        return layout.photos, layout.masks, layout.dataset, layout.checkpoints, layout.validation


Garments = GarmentStore  # the registry's name in issue 13


# ---------------------------------------------------------------------------------------------- photos of an identity or garment

_photo_locks: dict[Path, threading.Lock] = {}
_photo_locks_guard = threading.Lock()


def photo_files(folder: Path) -> list[Path]:
    """The photos of a photos folder in name order (hidden and temp files excluded)."""
    if not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


@contextlib.contextmanager
def photos_lock(layout: PhotoLayout) -> Iterator[None]:
    """Serialises additions and removals on one identity (or garment) in this process, so two requests carrying the same photo
    cannot both find it new and store it twice."""
    key = layout.photos.resolve()
    with _photo_locks_guard:
        lock = _photo_locks.setdefault(key, threading.Lock())
    with lock:
        yield


def photo_digests_by_name(layout: PhotoLayout) -> dict[str, str]:
    """File name → sha256 of every stored photo, in name order."""
    return {path.name: file_digest(path) for path in photo_files(layout.photos)}


def photo_digests(layout: PhotoLayout) -> dict[str, str]:
    """sha256 → file name of every stored photo (the first name in name order when a copy was made by hand)."""
    digests: dict[str, str] = {}
    for name, digest in photo_digests_by_name(layout).items():
        digests.setdefault(digest, name)
    return digests


def store_photo(layout: PhotoLayout, data: bytes, name: str) -> Path:
    """Write one photo under `name`, or `<stem>-2.<ext>`, `-3`, ... when that name is taken (compared without case,
    as Windows and macOS do). The caller holds photos_lock and has sanitised the name (safe_photo_name)."""
    taken = {p.name.lower() for p in photo_files(layout.photos)}
    stem, _, suffix = name.rpartition(".")
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}-{number}.{suffix}"
    return atomic_write_bytes(layout.photos / candidate, data)


def find_photo(layout: PhotoLayout, name: str) -> Path:
    """The stored photo called `name`, looked up among the identity's photos and never joined to a path, so no
    name can reach outside the folder."""
    for path in photo_files(layout.photos):
        if path.name == name:
            return path
    names = [p.name for p in photo_files(layout.photos)]
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    raise NotFound(f"{layout.root.name!r} has no photo named {name!r}.", phase="photos",
                   hint=f"Its photos: {shown}." if names else "It has no photos.")


def remove_photos(layout: PhotoLayout, names: list[str]) -> list[str]:
    """Delete photos by name; every name is checked before anything is deleted, so a typo deletes nothing."""
    with photos_lock(layout):
        paths = [find_photo(layout, name) for name in dict.fromkeys(names)]
        for path in paths:
            path.unlink()
    return [p.name for p in paths]
