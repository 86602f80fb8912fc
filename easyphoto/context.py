"""What every front end (WebUI tab, REST API, standalone server, CLI) needs to know about where it runs.

Built once per front end by `backends.webui.make_context()` (inside the WebUI) or `standalone_context()`.
Operations receive it instead of reading globals, so the same code serves every host and is testable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from easyphoto import __version__
from easyphoto.config import Settings
from easyphoto.store import GarmentStore, IdentityStore, Paths, atomic_write_json, read_json

if TYPE_CHECKING:  # for the annotation only: generation imports PIL, which importing the context does not need
    from easyphoto.generation import Upscaler

log = logging.getLogger("easyphoto")
Flavour = Literal["a1111", "forge", "standalone"]


@dataclass(frozen=True)
class HostInfo:
    flavour: Flavour
    version: str = ""  # the host's own version string (WebUI git tag), empty when unknown

    def to_dict(self) -> dict[str, str]:
        return {"flavour": self.flavour, "version": self.version}


@dataclass
class AppContext:
    paths: Paths
    host: HostInfo
    load_settings: Callable[[], Settings] = field(default=Settings)
    force_offline: bool = False  # --easyphoto-offline / --offline: wins over the setting
    # Held while a job runs GPU work: the WebUI's queue lock, so our jobs never overlap its txt2img/img2img.
    gpu_lock: Callable[[], AbstractContextManager] | None = None
    # Around training: frees the host's VRAM (the WebUI moves its checkpoint to the CPU and back). None standalone.
    host_offload: Callable[[], AbstractContextManager] | None = None
    # Around EasyPhoto's own diffusers pipeline inside the WebUI (zero-shot try-on): `host_job(label)` enters the
    # host's job state and yields an object with should_stop() (the Interrupt button) and progress(fraction,
    # message). None standalone.
    host_job: Callable[[str], AbstractContextManager] | None = None
    # The base checkpoint to train on when a request names none: the WebUI's selected one; standalone, the
    # manifest's SD 1.5 file in the checkpoints folder (weights.default_base: an actionable error when absent).
    selected_checkpoint: Callable[[], Path] | None = None
    # Builds the portrait Generator for a job's params: the WebUI's own processing inside the WebUI. None
    # standalone, where easyphoto.portrait.run builds a diffusers one from params["base"].
    make_generator: Callable[[dict], object] | None = None
    # UI only: "Send to img2img / inpaint" buttons for a result image and its infotext, `(image, infotext) ->
    # buttons`; the WebUI glue sets it (the host's infotext_utils). None standalone: no such buttons.
    paste_buttons: Callable[[object, object], dict] | None = None
    # Builds the upscaler for small crops and face super-resolution (generation.Upscaler): the WebUI's own (its
    # Real-ESRGAN / upscaler models) inside the WebUI; None there falls back, like standalone, to the manifest's
    # Real-ESRGAN file (upscale.for_context).
    make_upscaler: Callable[[], Upscaler | None] | None = None
    # Redis URL of the distributed job queue (easyphoto.distributed): jobs go to Celery workers instead of this
    # process's queue. None: the in-process queue (the default everywhere).
    broker: str | None = None

    @property
    def settings(self) -> Settings:
        return self.load_settings()

    @property
    def offline(self) -> bool:
        return self.force_offline or self.settings.offline

    @property
    def broker_url(self) -> str:
        """The distributed queue's broker: the flag / env var (`broker`), else the setting; "" = in-process queue."""
        return self.broker or self.settings.broker_url.strip()

    @property
    def identities(self) -> IdentityStore:
        return IdentityStore(self.paths)

    @property
    def garments(self) -> GarmentStore:
        return GarmentStore(self.paths)

    def describe(self) -> dict:
        return {"version": __version__, "host": self.host.to_dict(), "offline": self.offline, "paths": self.paths.to_dict()}


def standalone_context(
    data_dir: Path | str | None = None, models_dir: Path | str | None = None, offline: bool = False,
    broker: str | None = None,
) -> AppContext:
    """Context for `python -m easyphoto ...`: settings live in <data root>/settings.json; `broker` (else
    $EASYPHOTO_BROKER) turns on the distributed job queue."""
    paths = Paths.standalone(data_dir, models_dir)
    _create_checkpoints_dir(paths)
    return AppContext(paths, HostInfo("standalone", __version__), lambda: load_settings_file(paths), offline,
                      selected_checkpoint=partial(default_base_checkpoint, paths),
                      broker=broker or os.environ.get("EASYPHOTO_BROKER") or None)


def _create_checkpoints_dir(paths: Paths) -> None:
    """models/Stable-diffusion is the one model folder a user fills by hand before anything works (the base
    checkpoint), so it exists from the first run, where error messages point. The other model folders appear when
    the first file is downloaded or exported into them. A read-only data folder must not stop `info` or `models
    list` from answering, so a failure is only logged."""
    try:
        paths.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("EasyPhoto: cannot create %s (%s)", paths.checkpoints_dir, exc)


def default_base_checkpoint(paths: Paths) -> Path:
    """Standalone `selected_checkpoint`: the base file when present, else MissingWeights naming path and command."""
    from easyphoto import weights  # the manifest is only needed when a job asks for a base

    return weights.default_base(paths)


def load_settings_file(paths: Paths) -> Settings:
    """Standalone settings; a damaged or outdated file falls back to defaults with a warning, never a crash."""
    file = paths.data_root / "settings.json"
    if not file.exists():
        return Settings()
    try:
        return Settings.from_dict(read_json(file))
    except Exception as exc:  # a bad settings file must not stop the app from starting
        log.warning("EasyPhoto: ignoring %s (%s); using default settings", file, exc)
        return Settings()


def save_settings_file(paths: Paths, settings: Settings) -> Path:
    return atomic_write_json(paths.data_root / "settings.json", settings.to_dict())
