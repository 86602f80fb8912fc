"""Double-only: how the double learns its flavour, data root and argv from the harness (not a real WebUI module).

The harness (tests/host/harness.py) sets these environment variables before importing anything; an
``install.py`` subprocess inherits them, so ``import launch`` there sees the same WebUI.
"""

import json
import os
import shlex
import sys
from pathlib import Path

ENV_FLAVOR = "HOST_FLAVOR"  # "a1111" (default) or "forge"
ENV_DATA_DIR = "WEBUI_HOST_DATA_DIR"  # default of --data-dir
ENV_BUILTIN_DIR = "WEBUI_HOST_BUILTIN_DIR"  # extensions-builtin folder (the harness builds one per host)
ENV_ARGV = "WEBUI_HOST_ARGV"  # JSON list: the command line the WebUI was "started" with
ENV_PIP_LOG = "EASYPHOTO_TEST_PIP_LOG"  # launch.run_pip/run append JSON lines here instead of running anything

DOUBLE_ROOT = Path(__file__).resolve().parent.parent  # tests/host: the double's "script_path"
FORGE_ROOT = DOUBLE_ROOT / "forge"  # holds modules_forge and Forge's builtin ControlNet

A1111_VERSION = "v1.10.1"
FORGE_VERSION = "2.0.1v1.10.1"


def flavour() -> str:
    """Return "forge" or "a1111" (HOST_FLAVOR, as in host-api.md 7.1)."""
    return "forge" if os.environ.get(ENV_FLAVOR, "a1111").lower() == "forge" else "a1111"


def is_forge() -> bool:
    return flavour() == "forge"


def harness_argv() -> bool:
    """True when the harness supplied the command line (then sys.argv, i.e. pytest's, is never parsed)."""
    return ENV_ARGV in os.environ


def argv() -> list:
    """The WebUI command line without the program name: the harness' list, else sys.argv[1:] like the real one."""
    if harness_argv():
        return list(json.loads(os.environ[ENV_ARGV]))
    return list(sys.argv[1:])


def commandline_args() -> list:
    return shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))


def default_data_dir(script_path: str) -> str:
    return os.environ.get(ENV_DATA_DIR) or script_path


def builtin_dir(script_path: str) -> str:
    return os.environ.get(ENV_BUILTIN_DIR) or os.path.join(script_path, "extensions-builtin")


def python_path_entries() -> list:
    """What PYTHONPATH must hold so that a subprocess' ``import launch`` (and ``modules_forge``) hits the double."""
    entries = [str(DOUBLE_ROOT)]
    if is_forge():
        entries.append(str(FORGE_ROOT))
    return entries


def record_command(kind: str, **fields) -> dict:
    """Append one recorded command as a JSON line to $EASYPHOTO_TEST_PIP_LOG (or print it); never runs anything."""
    entry = {"kind": kind, **fields}
    log = os.environ.get(ENV_PIP_LOG)
    if log:
        with open(log, "a", encoding="utf8") as file:
            file.write(json.dumps(entry) + "\n")
    else:
        print(f"[host double] would run {kind}: {fields.get('command')}")
    return entry
