"""Bug reports: what a maintainer needs to reproduce a failure that is a bug (not an EasyPhotoError).

A job that fails with an unexpected exception stores `bug_report(...)` in its record (`error["report"]`); the UI
shows its `text` in a folded block, the CLI prints it, the API returns it with the job. The text is Markdown,
ready to paste into an issue.

Versions come from installed package metadata (importlib.metadata), never by importing the package: a report is
built after something already went wrong, and must not load torch or a face stack to say which version it is.
Job params are copied without secrets (keys such as token, password, auth are dropped); paths stay, since they
are usually what a report needs.

A bug in another process (the training child, easyphoto.train.child) is described there by `process_details(exc)`
(its versions and traceback) and sent with its error event; the parent raises an EasyPhotoError carrying it as
`exc.bug`, and `bug_report` builds the same report from those details, with the parent's host and job params.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import traceback
from importlib import metadata
from typing import Any

from easyphoto import __version__

NOT_INSTALLED = "not installed"
TRACEBACK_LINES = 40
MAX_STRING = 500  # a param string longer than this is cut (a data URL must not swamp the report)

# Reported name -> distributions that provide it (the first one installed wins): some ship under several names.
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "diffusers": ("diffusers",),
    "transformers": ("transformers",),
    "gradio": ("gradio",),
    "pydantic": ("pydantic",),
    "fastapi": ("fastapi",),
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon"),
    "mediapipe": ("mediapipe",),
    "dlib": ("dlib", "dlib-bin"),
}

# Key names that may hold a credential; matched case-insensitively anywhere in the key (hf_token, api-key, ...).
_SECRET_KEY = re.compile(
    r"token(?!iz)|passw|secret|credential|cookie|api[_-]?key|authori[sz]ation|(^|[_-])auth($|[_-])", re.I
)


def bug_report(exc: BaseException, *, kind: str, params: dict | None, host: Any = None) -> dict:
    """The report as a dict (JSON-safe); its "text" key holds the Markdown form.

    `host` is an easyphoto.context.HostInfo, its `to_dict()`, or None when unknown. When `exc.bug` holds the
    details of a bug in another process (process_details there), the report describes that process's failure."""
    remote = getattr(exc, "bug", None)
    details = _remote_details(remote) if isinstance(remote, dict) else process_details(exc)
    report = {
        "easyphoto": details["easyphoto"],
        "python": details["python"],
        "platform": details["platform"],
        "host": _host_dict(host),
        "packages": details["packages"],
        "job": {"kind": str(kind), "params": redact(params or {})},
        "error": details["error"],
        "traceback": details["traceback"],
    }
    report["text"] = report_text(report)
    return report


def process_details(exc: BaseException) -> dict:
    """What this process knows of a bug: versions and the exception with its traceback (JSON-safe)."""
    return {
        "easyphoto": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "packages": package_versions(),
        "error": _one_line(exc),
        "traceback": traceback_lines(exc),
    }


def _remote_details(data: dict) -> dict:
    """process_details() as another process sent them, every value as text (they arrived as JSON)."""
    packages = data.get("packages") if isinstance(data.get("packages"), dict) else {}
    trace = data.get("traceback") if isinstance(data.get("traceback"), list) else []
    return {
        "easyphoto": str(data.get("easyphoto", "")),
        "python": str(data.get("python", "")),
        "platform": str(data.get("platform", "")),
        "packages": {str(k): str(v) for k, v in packages.items()},
        "error": str(data.get("error", "")),
        "traceback": [str(line) for line in trace][-TRACEBACK_LINES:],
    }


def package_versions() -> dict[str, str]:
    versions = {}
    for name, distributions in PACKAGES.items():
        versions[name] = next(filter(None, map(_version, distributions)), NOT_INSTALLED)
    torch = sys.modules.get("torch")  # already loaded: its CUDA build is free to read, and often the answer
    cuda = getattr(getattr(torch, "version", None), "cuda", None)
    if cuda and versions["torch"] != NOT_INSTALLED:
        versions["torch"] += f" (CUDA {cuda})"
    return versions


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except Exception:  # PackageNotFoundError, or broken metadata of an unrelated install: never fail the report
        return None


def redact(value: Any) -> Any:
    """A JSON-safe copy without secret-looking keys and with long strings cut."""
    if isinstance(value, dict):
        return {str(k): redact(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and len(value) > MAX_STRING:
        return f"{value[:MAX_STRING]}… ({len(value)} characters)"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)[:MAX_STRING]


def traceback_lines(exc: BaseException, limit: int = TRACEBACK_LINES) -> list[str]:
    """The last `limit` lines of the formatted traceback (the innermost frames are the useful ones)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text.rstrip("\n").splitlines()[-limit:]


def report_text(report: dict) -> str:
    """Markdown for an issue: the versions as a list, the params and the traceback in code blocks."""
    host = report.get("host") or {}
    packages = ", ".join(f"{name} {version}" for name, version in (report.get("packages") or {}).items())
    job = report.get("job") or {}
    params = json.dumps(job.get("params") or {}, indent=2, sort_keys=True, default=str)
    trace = "\n".join(report.get("traceback") or [])
    lines = [
        f"**EasyPhoto bug report**: {inline_code(report.get('error', ''))} in job {inline_code(job.get('kind', ''))}",
        "",
        f"- EasyPhoto: {report.get('easyphoto', '')}",
        f"- Host: {host.get('flavour', 'unknown')} {host.get('version', '')}".rstrip(),
        f"- Python: {report.get('python', '')}",
        f"- Platform: {report.get('platform', '')}",
        f"- Packages: {packages}",
        "",
        "Job parameters (secrets removed):",
        fenced(params, "json"),
        "",
        f"Traceback (last {TRACEBACK_LINES} lines):",
        fenced(trace),
    ]
    return "\n".join(lines)


def fenced(text: str, info: str = "") -> str:
    """`text` in a Markdown code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def inline_code(text: str) -> str:
    """`text` as a Markdown code span that a backtick inside it does not end early."""
    text = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _host_dict(host: Any) -> dict:
    if host is None:
        return {"flavour": "unknown", "version": ""}
    data = host.to_dict() if hasattr(host, "to_dict") else dict(host)
    return {"flavour": str(data.get("flavour", "unknown")), "version": str(data.get("version", ""))}


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
