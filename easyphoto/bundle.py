"""One-file export and import of an identity (photos, report, reference face, dataset, identity.json, LoRA).

The reference needed two files in two folders to move an identity between machines. A bundle is a zip with a
manifest; importing one validates every member name against a fixed layout (no absolute paths, no '..', no links),
caps the member count and the unpacked size, checks that JSON files are JSON and the LoRA is a safetensors file
(header only: nothing is deserialised), and unpacks into a staging folder that is renamed into place at the end.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
import time
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from easyphoto import __version__
from easyphoto.errors import EasyPhotoError, InvalidIdentityId
from easyphoto.store import IdentityStore, atomic_path, check_lora_target, validate_identity_id

FORMAT = "easyphoto-identity"
FORMAT_VERSION = 1
MAX_MEMBERS = 2000
MAX_UNPACKED_BYTES = 4 * 1024**3
MAX_JSON_BYTES = 16 * 1024**2
# An uploaded bundle (POST /identities/import) is spooled to a temporary file and refused past this size; a bundle
# holds photos, the dataset and one LoRA, so it stays far below it (export without the dataset if not).
MAX_BUNDLE_BYTES = 2 * 1024**3
# What a damaged or crafted zip raises while its members are read (bad CRC, truncated data, unsupported method,
# encrypted member): each means the bundle is unusable, never a server fault.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError)
LORA_MEMBER = "lora.safetensors"
_ALLOWED = re.compile(
    r"(manifest\.json|report\.json|identity\.json|reference\.jpg|lora\.safetensors"
    r"|photos/[A-Za-z0-9_.-]+|dataset/(?:train/)?[A-Za-z0-9_.-]+)"
)


class BadBundle(EasyPhotoError):
    phase = "bundle"
    http_status = 422


def export_identity(store: IdentityStore, identity_id: str, *, include_dataset: bool = True) -> bytes:
    """The identity as zip bytes (photos are stored as they are; images are not re-compressed)."""
    layout = store.get(identity_id)
    files: dict[str, Path] = {}
    for name in ("report.json", "identity.json", "reference.jpg"):
        if (layout.root / name).is_file():
            files[name] = layout.root / name
    folders = [layout.photos, *([layout.dataset] if include_dataset else [])]
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[path.relative_to(layout.root).as_posix()] = path
    if layout.lora_file.is_file():
        files[LORA_MEMBER] = layout.lora_file
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "identity_id": identity_id, "created": time.time(),
                "easyphoto": __version__, "files": sorted(files)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        for name, path in files.items():
            archive.write(path, name, compress_type=zipfile.ZIP_STORED if name.endswith((".jpg", ".png")) else None)
    return buffer.getvalue()


def import_identity(store: IdentityStore, data: bytes | BinaryIO, *, identity_id: str | None = None) -> str:
    """Create an identity from bundle bytes or a seekable binary file; returns its id. Nothing is written when
    the bundle is refused."""
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        archive = zipfile.ZipFile(source)
    except (*_ZIP_ERRORS, ValueError):
        raise BadBundle("The bundle is not a zip file.", hint="Export it again with EasyPhoto's export.") from None
    with archive:
        try:
            return _import(store, archive, identity_id)
        except _ZIP_ERRORS as exc:
            raise BadBundle(f"The bundle is damaged ({exc}).", hint="Export it again with EasyPhoto's export.") from None


def _import(store: IdentityStore, archive: zipfile.ZipFile, identity_id: str | None) -> str:
    members = _checked_members(archive)
    manifest = _read_json(archive, "manifest.json")
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise BadBundle(f"Unsupported bundle format {manifest.get('format')!r} version {manifest.get('version')!r}.")
    target_id = validate_identity_id(identity_id or manifest.get("identity_id"))
    layout = store.layout(target_id)
    if layout.root.exists():
        raise InvalidIdentityId(f"An identity named {target_id!r} already exists.",
                                hint="Import under another id, or delete the existing identity first.")
    store.check_id_free(target_id)  # a garment of that id exports to the same Lora file
    for name in ("report.json", "identity.json"):
        if name in members:
            _read_json(archive, name)
    if LORA_MEMBER in members:
        _check_safetensors(archive)
    _unpack(archive, members, layout.root, layout.lora_file)
    return target_id


def _checked_members(archive: zipfile.ZipFile) -> list[str]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise BadBundle(f"The bundle has {len(infos)} entries; at most {MAX_MEMBERS} are accepted.")
    total = 0
    for info in infos:
        if info.is_dir():
            continue
        if not _ALLOWED.fullmatch(info.filename) or ".." in info.filename.split("/"):
            raise BadBundle(f"Unexpected entry {info.filename!r} in the bundle; it was refused whole.",
                            hint="Only bundles exported by EasyPhoto can be imported.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BadBundle(f"The bundle entry {info.filename!r} is a link; links are refused.")
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise BadBundle(f"The bundle unpacks to more than {MAX_UNPACKED_BYTES / 1024**3:.0f} GiB; refused.")
    names = [i.filename for i in infos if not i.is_dir()]
    if "manifest.json" not in names:
        raise BadBundle("The bundle has no manifest.json.", hint="Only bundles exported by EasyPhoto can be imported.")
    return names


def _read_json(archive: zipfile.ZipFile, name: str) -> dict:
    if archive.getinfo(name).file_size > MAX_JSON_BYTES:  # read whole into memory: bounded first
        raise BadBundle(f"{name} in the bundle is over {MAX_JSON_BYTES // 1024**2} MB; refused.")
    try:
        value = json.loads(archive.read(name).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBundle(f"{name} in the bundle is not valid JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise BadBundle(f"{name} in the bundle is not a JSON object.")
    return value


def _check_safetensors(archive: zipfile.ZipFile) -> None:
    """The safetensors layout: 8-byte little-endian header length, then a JSON header; nothing is executed and
    only the header is read."""
    size = archive.getinfo(LORA_MEMBER).file_size
    with archive.open(LORA_MEMBER) as member:
        prefix = member.read(8)
        if len(prefix) < 8:
            raise BadBundle(f"{LORA_MEMBER} is too short to be a safetensors file.")
        length = int.from_bytes(prefix, "little")
        if length > min(size - 8, 100 * 1024**2):
            raise BadBundle(f"{LORA_MEMBER} has a damaged header (claims {length} bytes).")
        raw = member.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadBundle(f"{LORA_MEMBER} is not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise BadBundle(f"{LORA_MEMBER} is not a safetensors file.")


def _unpack(archive: zipfile.ZipFile, members: list[str], root: Path, lora_file: Path) -> None:
    # Before anything is written: a <Lora>/<id>.safetensors that EasyPhoto did not write is someone's own LoRA,
    # never replaced (and never taken as this identity's, even when the bundle brings none).
    check_lora_target(lora_file, root.name)
    staging = root.with_name(f".import-{root.name}-{uuid.uuid4().hex[:8]}")
    try:
        for name in members:
            if name in ("manifest.json", LORA_MEMBER):
                continue
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
        for folder in ("photos", "dataset", "checkpoints", "validation"):
            (staging / folder).mkdir(parents=True, exist_ok=True)
        if LORA_MEMBER in members:
            with atomic_path(lora_file) as tmp, archive.open(LORA_MEMBER) as source, open(tmp, "wb") as out:
                shutil.copyfileobj(source, out)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
