"""Transport for model files: resumable HTTP, the Hugging Face hub client, ModelScope file URLs, zip members.

This module knows nothing about the manifest: `weights.py` decides what to fetch and where it goes, and calls these
functions with a URL (or a hub repo and path) and a destination. Everything is written next to the destination
first (`<dest>.part`, or a staging folder for the hub client) and moved into place only after the size and sha256
checked out, so a killed process leaves either nothing or a resumable partial file, never a half file under the real
name that the WebUI would try to load.

Network libraries (urllib's http stack, huggingface_hub) are imported inside the functions that use them: importing
this module opens nothing and loads nothing heavy, because the WebUI imports EasyPhoto at startup.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from easyphoto import __version__
from easyphoto.errors import EasyPhotoError, MissingWeights

CHUNK = 1 << 20  # bytes per read; also how often cancel() is checked
TIMEOUT_S = 30  # per socket operation, not per file
MAX_RESUMES = 3  # reconnects within one attempt after the connection dropped mid-file
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_DEFAULT_ENDPOINT = "https://www.modelscope.cn"
USER_AGENT = f"EasyPhoto/{__version__} (model downloader)"

Progress = Callable[[int, "int | None"], None]  # (bytes done, total bytes or None)
Cancel = Callable[[], bool]


# ---------------------------------------------------------------------------------------------- errors


class ChecksumMismatch(MissingWeights):
    """A downloaded (or present) file is not the file the manifest describes. It was moved to the quarantine
    folder, not deleted, so a user who put a deliberately different file there can get it back."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        source: str,
        quarantined: Path | None,
        expected_sha256: str | None = None,
        actual_sha256: str | None = None,
        expected_size: int | None = None,
        actual_size: int | None = None,
        hint: str = "",
    ):
        super().__init__(message, hint=hint)
        self.file, self.source, self.quarantined = file, source, quarantined
        self.expected_sha256, self.actual_sha256 = expected_sha256, actual_sha256
        self.expected_size, self.actual_size = expected_size, actual_size

    def to_dict(self) -> dict:
        extra = {
            "file": self.file,
            "source": self.source,
            "quarantined": str(self.quarantined) if self.quarantined else None,
            "expected_sha256": self.expected_sha256,
            "actual_sha256": self.actual_sha256,
            "expected_size": self.expected_size,
            "actual_size": self.actual_size,
        }
        return {**super().to_dict(), **extra}


class TransferError(EasyPhotoError):
    """One source could not deliver the file (unreachable, HTTP error, dropped connection, hub error)."""

    phase = "models"
    http_status = 502


class DownloadCancelled(EasyPhotoError):
    """The caller's cancel() said stop. Partial files are kept; the next fetch resumes from them."""

    phase = "models"
    http_status = 409


class DownloadBusy(EasyPhotoError):
    """Another process (or thread) is downloading the same destination right now."""

    phase = "models"
    http_status = 409


# ---------------------------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoints:
    """Where the hub clients go. Read from the environment at call time (not at import), so a test or a user can
    point them at a mirror: HF_ENDPOINT (the variable huggingface_hub itself honours) and
    EASYPHOTO_MODELSCOPE_ENDPOINT."""

    huggingface: str = HF_DEFAULT_ENDPOINT
    modelscope: str = MODELSCOPE_DEFAULT_ENDPOINT

    @classmethod
    def from_env(cls) -> Endpoints:
        return cls(
            huggingface=(os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/"),
            modelscope=(os.environ.get("EASYPHOTO_MODELSCOPE_ENDPOINT") or MODELSCOPE_DEFAULT_ENDPOINT).rstrip("/"),
        )


def hf_url(repo: str, path: str, revision: str = "", endpoint: str = HF_DEFAULT_ENDPOINT) -> str:
    """The browser/curl download link of a file in a Hugging Face model repo (for manual instructions)."""
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{revision or 'main'}/{path}"


def modelscope_url(repo: str, path: str, revision: str = "", endpoint: str = MODELSCOPE_DEFAULT_ENDPOINT) -> str:
    """ModelScope's file API, the URL its own hub client (modelscope.hub.file_download) downloads from; a plain
    HTTP GET with Range support, so the modelscope package (heavy, pins its own deps) is not needed."""
    from urllib.parse import quote_plus

    rev = quote_plus(revision or "master")
    return f"{endpoint.rstrip('/')}/api/v1/models/{repo}/repo?Revision={rev}&FilePath={quote_plus(path)}"


def modelscope_page_url(repo: str, path: str, revision: str = "") -> str:
    """The direct link a person can open in a browser to fetch the same file by hand."""
    return f"{MODELSCOPE_DEFAULT_ENDPOINT}/models/{repo}/resolve/{revision or 'master'}/{path}"


# ---------------------------------------------------------------------------------------------- hashing, quarantine


def sha256_file(path: Path, cancel: Cancel | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            if cancel and cancel():
                raise DownloadCancelled(f"Cancelled while checking {path}.")
    return digest.hexdigest()


def quarantine(path: Path, quarantine_dir: Path, name: str | None = None) -> Path:
    """Move a bad file to `<quarantine_dir>/<name>.<timestamp>` (never delete: it may be the user's own file)."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name or path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    target = quarantine_dir / stem
    n = 1
    while target.exists():
        target = quarantine_dir / f"{stem}-{n}"
        n += 1
    shutil.move(str(path), str(target))  # os.replace when on one file system; copies across (ControlNet dir links)
    return target


def check_and_install(
    part: Path,
    dest: Path,
    *,
    source: str,
    quarantine_dir: Path,
    expected_size: int | None,
    expected_sha256: str | None,
    cancel: Cancel | None = None,
) -> str:
    """Verify the finished download and move it into place atomically; return its sha256.

    A size or hash mismatch moves the file to quarantine and raises ChecksumMismatch naming both hashes, the
    source and where the file went, so the caller can try the next source."""
    actual_size = part.stat().st_size
    actual = sha256_file(part, cancel)
    wrong_size = expected_size is not None and actual_size != expected_size
    wrong_hash = expected_sha256 is not None and actual != expected_sha256.lower()
    if wrong_size or wrong_hash:
        moved = quarantine(part, quarantine_dir, dest.name)
        what = (f"{actual_size} bytes instead of {expected_size}" if wrong_size
                else f"sha256 {actual} instead of {expected_sha256}")
        raise ChecksumMismatch(
            f"{dest.name} from {source} is not the expected file: {what}. It was moved to {moved}.",
            file=dest.name, source=source, quarantined=moved,
            expected_sha256=expected_sha256, actual_sha256=actual, expected_size=expected_size,
            actual_size=actual_size,
            hint="The source served a different or damaged file; another source is tried when there is one.",
        )
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    return actual


# ---------------------------------------------------------------------------------------------- locking


@contextlib.contextmanager
def destination_lock(dest: Path) -> Iterator[None]:
    """One writer per destination, across threads and processes (the UI and the CLI may both fetch); two writers
    appending to the same `.part` would interleave bytes. A lock left by a killed process is taken over."""
    lock = dest.with_name(f".{dest.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock(lock):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not _lock_is_stale(lock):
                raise DownloadBusy(
                    f"Another download of {dest.name} is running (lock file {lock}).",
                    hint="Wait for it to finish; if no EasyPhoto download is running, delete the lock file.",
                ) from None
            lock.unlink(missing_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            yield
        finally:
            lock.unlink(missing_ok=True)


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def _thread_lock(lock: Path) -> Iterator[None]:
    with _thread_locks_guard:
        mutex = _thread_locks.setdefault(str(lock), threading.Lock())
    if not mutex.acquire(blocking=False):
        raise DownloadBusy(f"{lock.name[1:-5]} is already being downloaded by this process.",
                           hint="Wait for that download to finish.")
    try:
        yield
    finally:
        mutex.release()


def _lock_is_stale(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().strip() or 0)
        age = time.time() - lock.stat().st_mtime
    except (OSError, ValueError):
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows: judge by age instead
        return age > 12 * 3600
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# ---------------------------------------------------------------------------------------------- plain HTTP


class _Dropped(Exception):
    """The connection ended before the whole body arrived; the bytes so far are in the .part file."""


def http_download(
    url: str,
    part: Path,
    *,
    headers: dict[str, str] | None = None,
    expected_size: int | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    timeout: float = TIMEOUT_S,
    resumes: int = MAX_RESUMES,
) -> int:
    """Download `url` into `part`, continuing from the bytes already there; return the final size.

    Resume asks for `Range: bytes=N-`; a 206 answer is appended, a 200 answer (server ignores ranges) restarts
    the file cleanly. A connection dropped mid-body is resumed up to `resumes` times; after that the partial file
    stays for the next run. cancel() is checked between chunks and raises DownloadCancelled, keeping the file."""
    part.parent.mkdir(parents=True, exist_ok=True)
    dropped = 0
    while True:
        try:
            return _transfer(url, part, headers or {}, expected_size, progress, cancel, timeout)
        except _Dropped as exc:
            dropped += 1
            if dropped > resumes:
                raise TransferError(
                    f"The connection to {url} dropped {dropped} times ({exc}); {part.stat().st_size} bytes are "
                    f"kept in {part}.",
                    hint="Run the download again: it resumes from the partial file.",
                ) from None


def _transfer(url, part, headers, expected_size, progress, cancel, timeout) -> int:
    from http.client import HTTPException
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, build_opener

    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()  # longer than the real file: not a prefix of it
        offset = 0
    if expected_size is not None and 0 < offset == expected_size:
        return offset  # finished by an earlier run that died before moving it into place
    request = Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = build_opener().open(request, timeout=timeout)  # a fresh opener reads the proxy env now
    except HTTPError as exc:
        if exc.code == 416 and offset:
            return _range_not_satisfiable(exc, part, offset)
        raise TransferError(f"{url} answered HTTP {exc.code} {exc.reason}.") from None
    except (URLError, OSError, HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransferError(f"Could not reach {url}: {reason}.") from None
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Dropped(f"the server resumed at byte {start}, not {offset}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # 200: the whole file again, from the start
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else expected_size
        done = offset
        with open(part, mode) as f:
            while True:
                if cancel and cancel():
                    raise DownloadCancelled(
                        f"Download of {url} cancelled; {done} bytes are kept in {part} for the next run.")
                try:
                    chunk = response.read(CHUNK)
                except (OSError, HTTPException) as exc:
                    raise _Dropped(f"{type(exc).__name__}: {exc}") from None
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise _Dropped(f"got {done} of {total} bytes")
    return done


def _content_range(value: str | None) -> tuple[int, int | None]:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not match:
        return -1, None
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def _range_not_satisfiable(exc, part: Path, offset: int) -> int:
    """416 for `bytes=N-` means N is at or past the end: complete if the server says the file has N bytes."""
    match = re.fullmatch(r"bytes \*/(\d+)", (exc.headers.get("Content-Range") or "").strip())
    if match and int(match.group(1)) == offset:
        return offset
    part.unlink(missing_ok=True)
    raise _Dropped("the partial file does not fit the server's file; starting over")


# ---------------------------------------------------------------------------------------------- zip members


def extract_member(archive: Path, member: str, out: Path, cancel: Cancel | None = None) -> Path:
    """Copy one member of a finished archive to `out`. The member is matched by its path, or else by its file
    name when exactly one member has it (release zips differ in whether they nest files in a folder)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            info = _find_member(zf, member)
            if info is None:
                names = ", ".join(i.filename for i in zf.infolist() if not i.is_dir())[:300]
                raise TransferError(f"{archive.name} has no file {member!r} (it has: {names}).")
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                while block := src.read(CHUNK):
                    dst.write(block)
                    if cancel and cancel():
                        raise DownloadCancelled(f"Cancelled while unpacking {member} from {archive.name}.")
    except zipfile.BadZipFile as exc:
        archive.unlink(missing_ok=True)
        raise TransferError(f"{archive.name} is not a valid zip archive ({exc}); it was deleted.") from None
    return out


def _find_member(zf: zipfile.ZipFile, member: str) -> zipfile.ZipInfo | None:
    files = [i for i in zf.infolist() if not i.is_dir()]
    exact = [i for i in files if i.filename == member]
    if exact:
        return exact[0]
    base = member.rsplit("/", 1)[-1]
    named = [i for i in files if i.filename.rsplit("/", 1)[-1] == base]
    return named[0] if len(named) == 1 else None


# ---------------------------------------------------------------------------------------------- Hugging Face hub


def hf_download(
    repo: str,
    path: str,
    staging: Path,
    *,
    revision: str = "",
    endpoint: str | None = None,
    expected_size: int | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    poll_s: float = 0.2,
) -> tuple[Path, str | None]:
    """Download through `huggingface_hub.hf_hub_download` into `staging` (a folder next to the destination, so
    the final move is a rename); return the file and the sha256 the hub announced for it (the ETag of an LFS file
    is its sha256), or None when it announced none.

    The hub client resumes its own `.incomplete` file in `staging`, honours the user's token and proxies, and
    copies from the user's HF cache when the file is already there. It has no progress or cancel hooks, so it runs
    in a worker thread while this thread reports the partial file's growth and checks cancel(). On cancel this
    returns at once; the worker finishes or fails on its own and leaves its files in `staging` for the next run."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise TransferError("huggingface_hub is not installed, so Hugging Face sources cannot be used.",
                            hint="pip install huggingface_hub, or use another source.") from None
    box: dict[str, object] = {}
    # The hub memoises its folder layout per (local_dir, filename) and only creates the folders the first time;
    # the staging folder is removed after each success, so make them again for a second download in one process.
    sub = Path(*path.split("/")).parent
    (staging / sub).mkdir(parents=True, exist_ok=True)
    (staging / ".cache" / "huggingface" / "download" / sub).mkdir(parents=True, exist_ok=True)

    def work() -> None:
        try:
            box["path"] = hf_hub_download(repo_id=repo, filename=path, revision=revision or None,
                                          endpoint=endpoint, local_dir=staging)
        except Exception as exc:  # the hub raises many types (requests, hub, OS errors): all mean "source failed"
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"easyphoto-hf-{path}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
        if progress:
            progress(_staged_bytes(staging), expected_size)
        if cancel and cancel() and worker.is_alive():
            raise DownloadCancelled(f"Download of {repo}/{path} cancelled; the partial file in {staging} is kept.")
    if "error" in box:
        exc = box["error"]
        where = hf_url(repo, path, revision, endpoint or HF_DEFAULT_ENDPOINT)
        raise TransferError(f"Hugging Face could not deliver {where}: {type(exc).__name__}: {exc}") from None
    return Path(str(box["path"])), _hub_sha256(staging, path)


def _staged_bytes(staging: Path) -> int:
    """Bytes the hub client has written so far (its `.incomplete` file, or the finished file)."""
    total = 0
    with contextlib.suppress(OSError):
        for f in staging.rglob("*"):
            if f.is_file() and (f.suffix == ".incomplete" or ".cache" not in f.parts):
                total += f.stat().st_size
    return total


def _hub_sha256(staging: Path, path: str) -> str | None:
    """The ETag the hub stored for this download, when it is a sha256 (LFS files); else None.

    Reads the hub's small metadata file (`.cache/huggingface/download/<path>.metadata`: commit, etag, time) rather
    than a private API, and tolerates its absence: this is an extra check, never a requirement."""
    meta = staging / ".cache" / "huggingface" / "download" / f"{path}.metadata"
    with contextlib.suppress(OSError, IndexError):
        etag = meta.read_text(encoding="utf-8").splitlines()[1].strip().strip('"').lower()
        if re.fullmatch(r"[0-9a-f]{64}", etag):
            return etag
    return None


# ---------------------------------------------------------------------------------------------- console progress


class ConsoleProgress:
    """A `progress(entry_id, done, total)` callback for terminals: one tqdm bar per file when tqdm is installed
    (the test environments have it; a WebUI may not), else a plain line every few seconds and at the end."""

    def __init__(self, stream=None, every_s: float = 3.0):
        import sys

        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.bars: dict[str, object] = {}
        self.last: dict[str, float] = {}
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self._tqdm = tqdm

    def __call__(self, entry_id: str, done: int, total: int | None) -> None:
        if self._tqdm is not None:
            self._bar(entry_id, done, total)
            return
        now = time.monotonic()
        if now - self.last.get(entry_id, 0.0) >= self.every_s or (total and done >= total):
            self.last[entry_id] = now
            mib = done / 2**20
            text = f"{mib:.1f} / {total / 2**20:.1f} MiB ({100 * done // total}%)" if total else f"{mib:.1f} MiB"
            print(f"{entry_id}: {text}", file=self.stream, flush=True)

    def _bar(self, entry_id: str, done: int, total: int | None) -> None:
        bar = self.bars.get(entry_id)
        if bar is None:
            bar = self._tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=entry_id,
                             file=self.stream, leave=True, dynamic_ncols=True)
            self.bars[entry_id] = bar
        if total is not None and bar.total != total:  # an archive first, then the member; or a restart
            bar.reset(total=total)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
