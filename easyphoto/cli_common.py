"""What every command-line module shares: --config/--set handling, running a job with progress, the base model,
tables. `cli.py` (identities, portraits, models) and `cli_tryon.py` (garments, try-on) both import it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError


def add_config_options(parser: argparse.ArgumentParser, config: str, example: str) -> None:
    """--config FILE and --set KEY=VALUE, the same on every command that builds a config (see _command_config)."""
    parser.add_argument("--config", help=f"JSON file with {config} values")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"one {config} value over --config's, e.g. {example} (repeatable; the value is JSON, "
                             "else text)")


def load_config(cls, path: str | None):
    from pathlib import Path

    from easyphoto.store import read_json

    if not path:
        return cls()
    from easyphoto.config import describe_errors

    try:
        return cls.from_dict(read_json(Path(path)))
    except (OSError, ValueError) as exc:
        problem = describe_errors(exc) if hasattr(exc, "errors") else str(exc)
        raise EasyPhotoError(f"Cannot use {path}: {problem}", hint=f"Write a JSON object of {cls.__name__} fields.",
                             phase="config") from exc


def with_overrides(config, pairs: list[str], command: str = ""):
    """Apply `KEY=VALUE` strings (JSON values, or plain text for text fields) through the config's own validation;
    an unknown key or a rejected value is one line naming the --set that caused it."""
    from easyphoto.config import describe_errors

    values = config.to_dict()
    fields = sorted(k for k in values if k != "config_version")
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in fields:
            raise EasyPhotoError(f"--set {pair!r}: expected KEY=VALUE with a {type(config).__name__} field as KEY"
                                 f"{did_you_mean(key, fields)}.", phase="config", hint=f"Fields: {', '.join(fields)}.")
        values[key], given[key] = set_value(raw, values[key]), pair
    try:
        return type(config).from_dict(values)
    except ValueError as exc:  # pydantic's ValidationError on both major versions
        named = sorted({str(part) for e in exc.errors() for part in e.get("loc", ())} & given.keys()) or sorted(given)
        defaults = type(config)().to_dict()
        raise EasyPhotoError(
            f"{', '.join(f'--set {given[k]}' for k in named) or '--set'}: {describe_errors(exc)}.", phase="config",
            hint=f"Change the value, or leave it out for the default ({', '.join(f'{k}={defaults[k]}' for k in named)})"
                 f"; `python -m easyphoto {command} --help` shows the options.",
        ) from None


def set_value(raw: str, current):
    """A --set value: JSON (numbers, true/false, null, lists), except that a text field keeps the text as typed."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return raw if isinstance(current, str) and not isinstance(value, str) else value


def did_you_mean(key: str, fields: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def run_job(ctx: AppContext, kind: str, params) -> dict:
    """Submit to the shared queue (`params`: the kind's job_params model or a dict of its fields), print progress on
    stderr, cancel on Ctrl-C; the result, or an error."""
    import time

    from easyphoto.operations import job_queue, shutdown_all, submit

    queue = job_queue(ctx)
    try:
        record = submit(ctx, kind, params)
    except EasyPhotoError:
        shutdown_all()
        raise
    shown = ""
    try:
        while not record.is_final:
            p = record.progress
            line = f"{record.label or kind}: {p.phase} {p.fraction * 100:3.0f}% {p.message}".rstrip()
            if line != shown:
                print(line, file=sys.stderr, flush=True)
                shown = line
            time.sleep(0.2)
            record = queue.get(record.id)
    except KeyboardInterrupt:
        queue.cancel(record.id)
        record = queue.wait(record.id, timeout=30)
        print(f"{kind}: cancelled", file=sys.stderr)
    finally:
        shutdown_all()
    if record.state.value != "succeeded":
        error = record.error or {}
        failure = EasyPhotoError(error.get("message", f"job {record.state.value}"), hint=error.get("hint", ""),
                                 phase=error.get("phase", kind))
        report = error.get("report")
        failure.report = report.get("text", "") if isinstance(report, dict) else ""  # a bug: main() prints it
        raise failure
    return record.result or {}


def resolve_base(ctx: AppContext, given: str | None, phase: str):
    """The base checkpoint a train/portrait job will use, checked before any step runs: --base when given (it must
    exist), else the context's default (standalone: the manifest's SD 1.5 file, or an error naming its path and
    the fetch command)."""
    from pathlib import Path

    if given:
        path = Path(given).expanduser()
        if not path.exists():
            raise EasyPhotoError(f"The base model {path} does not exist.", phase=phase,
                                 hint="Pass --base with the path of an SD 1.5 checkpoint (.safetensors) or diffusers "
                                      "folder, or leave it out to use the default base in "
                                      f"{ctx.paths.checkpoints_dir}.")
        return path.resolve()
    if ctx.selected_checkpoint is None:
        raise EasyPhotoError("No base model was given.", phase=phase, hint="Pass --base FILE (an SD 1.5 checkpoint).")
    return Path(ctx.selected_checkpoint()).resolve()


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
