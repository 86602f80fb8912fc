"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/launch_utils.py (re-exported by the top-level ``launch``).

``run``/``run_pip``/``git_clone`` only record what they would run (JSON lines in $EASYPHOTO_TEST_PIP_LOG, else
printed, and ``recorded_commands``); ``is_installed`` is the real importlib logic; ``run_extension_installer``
really runs ``install.py`` in a subprocess with PYTHONPATH=<double root> so that ``import launch`` hits the double.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from functools import lru_cache

from modules import cmd_args, errors, host_env
from modules.paths_internal import extensions_builtin_dir, extensions_dir, script_path
from modules.timer import startup_timer

args, _ = cmd_args.parser.parse_known_args(host_env.argv())

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"

default_command_live = os.environ.get("WEBUI_LAUNCH_LIVE_OUTPUT") == "1"

recorded_commands = []  # double-only: every command run()/run_pip()/git_clone() was asked to run


def _record(kind, **fields):
    recorded_commands.append(host_env.record_command(kind, **fields))


def check_python_version():
    """The real one warns about Python versions other than 3.10; the double accepts any."""


@lru_cache()
def commit_hash():
    return "dfdcbab685e57677014f05a3309b48cc87383167" if host_env.is_forge() else "82a973c04367123ae98bd9abdf80d9eda9b910e2"


@lru_cache()
def git_tag():
    """"v1.10.1" on A1111; Forge reports "f<forge version>-<a1111 tag>" (host-api.md 1.2, 6)."""
    if host_env.is_forge():
        return f"f{host_env.FORGE_VERSION}-{host_env.A1111_VERSION}"
    return host_env.A1111_VERSION


def run(command, desc=None, errdesc=None, custom_env=None, live: bool = default_command_live) -> str:
    """Record ``command`` instead of running it; returns "" (the real one returns the captured stdout)."""
    if desc is not None:
        print(desc)
    _record("run", command=command, desc=desc, errdesc=errdesc)
    return ""


def is_installed(package):
    """Real logic: a distribution name ("opencv-python") or an import name ("cv2"); no version check."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        try:
            spec = importlib.util.find_spec(package)
        except ModuleNotFoundError:
            return False
        return spec is not None
    return dist is not None


def repo_dir(name):
    return os.path.join(script_path, dir_repos, name)


def run_pip(command, desc=None, live=default_command_live):
    """Record a ``pip`` command (never runs pip); a no-op with --skip-install, like the real one."""
    if args.skip_install:
        return
    index_url_line = f" --index-url {index_url}" if index_url != "" else ""
    if desc is not None:
        print(f"Installing {desc}")
    full = f'"{python}" -m pip {command} --prefer-binary{index_url_line}'
    _record("pip", command=command, desc=desc, full_command=full)


def check_run_python(code: str) -> bool:
    result = subprocess.run([python, "-c", code], capture_output=True, shell=False)
    return result.returncode == 0


def git_fix_workspace(dir, name):
    _record("git", command=f'"{git}" -C "{dir}" fetch --refetch --no-auto-gc', desc=name)


def run_git(dir, name, command, desc=None, errdesc=None, custom_env=None, live: bool = default_command_live,
            autofix=True):
    return run(f'"{git}" -C "{dir}" {command}', desc=desc, errdesc=errdesc, custom_env=custom_env, live=live)


def git_clone(url, dir, name, commithash=None):
    """Record the clone; no network in CI."""
    _record("git", command=f'"{git}" clone "{url}" "{dir}"', desc=name, commithash=commithash)


def git_pull_recursive(dir):
    _record("git", command=f'"{git}" -C "{dir}" pull --autostash', desc=dir)


def _settings(settings_file):
    try:
        with open(settings_file, encoding="utf8") as file:
            return json.load(file)
    except FileNotFoundError:
        return {}
    except Exception:
        errors.report(f'\nCould not load settings\nThe config file "{settings_file}" is likely corrupted\n', exc_info=True)
        return {}


def list_extensions(settings_file):
    """Enabled dirs of extensions/ per config.json (disabled_extensions, disable_all_extensions), as in 1.2.

    Forge also drops its always_disabled_extensions (host-api.md 6), so their install.py/preload.py never run.
    """
    settings = _settings(settings_file)
    disabled_extensions = set(settings.get("disabled_extensions", []))
    if host_env.is_forge():
        from modules_forge.config import always_disabled_extensions

        disabled_extensions |= set(always_disabled_extensions)
    disable_all_extensions = settings.get("disable_all_extensions", "none")
    if disable_all_extensions != "none" or args.disable_extra_extensions or args.disable_all_extensions:
        return []
    if not os.path.isdir(extensions_dir):
        return []
    return [x for x in os.listdir(extensions_dir) if x not in disabled_extensions]


def installer_environment(env=None):
    """Double-only: the environment ``run_extension_installer`` gives install.py (PYTHONPATH = double root first)."""
    result = os.environ.copy()
    result.update(env or {})
    entries = host_env.python_path_entries()
    if result.get("PYTHONPATH"):
        entries.append(result["PYTHONPATH"])
    result["PYTHONPATH"] = os.pathsep.join(entries)
    return result


def run_installer_process(extension_dir, env=None, timeout=300):
    """Double-only: run ``<extension_dir>/install.py`` like the real installer and return the CompletedProcess."""
    path_installer = os.path.join(extension_dir, "install.py")
    return subprocess.run([python, path_installer], capture_output=True, text=True, env=installer_environment(env),
                          cwd=os.getcwd(), timeout=timeout)


def run_extension_installer(extension_dir):
    """Run install.py in a subprocess; a failure is only ``errors.report``ed and startup continues (1.2)."""
    path_installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(path_installer):
        return
    result = run_installer_process(extension_dir)
    if result.stdout.strip():
        print(result.stdout.strip())
    if result.returncode != 0:
        errors.report(
            f"Error running install.py for extension {extension_dir}.\n"
            f"Command: \"{python}\" \"{path_installer}\"\nError code: {result.returncode}\n"
            f"stdout: {result.stdout or '<empty>'}\nstderr: {result.stderr or '<empty>'}"
        )


def run_extensions_installers(settings_file):
    """install.py of every enabled extension; Forge also runs the built-in extensions' installers (section 6)."""
    dirs = []
    if host_env.is_forge() and os.path.isdir(extensions_builtin_dir):
        dirs += [os.path.join(extensions_builtin_dir, x) for x in sorted(os.listdir(extensions_builtin_dir))]
    if os.path.isdir(extensions_dir):
        dirs += [os.path.join(extensions_dir, x) for x in list_extensions(settings_file)]
    for path in dirs:
        if os.path.isdir(path):
            run_extension_installer(path)
            startup_timer.record(os.path.basename(path))


re_requirement = re.compile(r"\s*([-_a-zA-Z0-9]+)\s*(?:==\s*([-+_.a-zA-Z0-9]+))?\s*")


def requirements_met(requirements_file):
    """Real logic: every ``name==version`` line of the file is installed at that version."""
    from packaging import version

    with open(requirements_file, encoding="utf8") as file:
        for line in file:
            if line.strip() == "" or line.strip().startswith("#"):
                continue
            m = re.match(re_requirement, line)
            if m is None:
                return False
            package, version_required = m.group(1).strip(), (m.group(2) or "").strip()
            if version_required == "":
                continue
            try:
                version_installed = importlib.metadata.version(package)
            except Exception:
                return False
            if version.parse(version_required) != version.parse(version_installed):
                return False
    return True


def prepare_environment():
    """The double installs nothing; it only runs the extension installers unless --skip-install (1.4 step 2)."""
    if not args.skip_install:
        run_extensions_installers(settings_file=args.ui_settings_file)


def configure_for_tests():
    if "--api" not in sys.argv:
        sys.argv.append("--api")
    if "--skip-torch-cuda-test" not in sys.argv:
        sys.argv.append("--skip-torch-cuda-test")
    if "--disable-nan-check" not in sys.argv:
        sys.argv.append("--disable-nan-check")
    os.environ["COMMANDLINE_ARGS"] = ""


def start():
    """The real one imports webui and serves it; the double initializes the modules (no server)."""
    from modules import initialize

    initialize.imports()
    initialize.initialize()


def dump_sysinfo():
    return None
