"""The WebUI as EasyPhoto's host: which flavour runs, its folders and options, its queue lock, its GPU.

Host modules (`modules`, `modules_forge`, `launch`) are imported inside the functions, so importing this module is
cheap and works before the host has finished loading (shared/reference/host-api.md §1.5).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
from pathlib import Path

from easyphoto.config import Settings
from easyphoto.generation import GenerationError

log = logging.getLogger("easyphoto")
SETTING_PREFIX = "easyphoto_"  # Settings → EasyPhoto keys in the WebUI's options: easyphoto_<Settings field>


def detect_flavour() -> str:
    """Forge ships `modules_forge` (host-api.md §6); everything else is treated as A1111."""
    return "forge" if importlib.util.find_spec("modules_forge") is not None else "a1111"


def host_version() -> str:
    try:
        from modules import launch_utils

        return str(launch_utils.git_tag())
    except Exception:  # an unreadable version must never break the tab or the health route
        return ""


def cmd_opt(name: str, default=None):
    """A WebUI command-line option; `default` when unset. An extension installed during the session has no
    cmd_opts attributes until a restart (host-api.md §1.3)."""
    from modules import shared

    value = getattr(shared.cmd_opts, name, None)
    return default if value in (None, "") else value


def forced_offline() -> bool:
    """--easyphoto-offline or HF_HUB_OFFLINE=1: nothing is downloaded, whatever Settings → EasyPhoto says."""
    return bool(cmd_opt("easyphoto_offline", False)) or os.environ.get("HF_HUB_OFFLINE") == "1"


def make_paths():
    from modules import paths_internal

    from easyphoto.store import Paths

    models = Path(paths_internal.models_path)
    return Paths(
        data_root=Path(cmd_opt("easyphoto_data_dir") or Path(paths_internal.data_path) / "easyphoto"),
        models_root=Path(cmd_opt("easyphoto_models_dir") or models / "easyphoto"),
        lora_dir=Path(cmd_opt("lora_dir") or models / "Lora"),
        controlnet_dir=Path(cmd_opt("controlnet_dir") or models / "ControlNet"),
        checkpoints_dir=Path(cmd_opt("ckpt_dir") or models / "Stable-diffusion"),
    )


def current_settings() -> Settings:
    """Settings from the WebUI's options; a bad stored value falls back to its default with a warning."""
    from modules import shared

    values = {}
    for spec in Settings.field_specs():
        key = SETTING_PREFIX + spec.name
        if key in shared.opts.data:
            values[spec.name] = shared.opts.data[key]
    try:
        return Settings.from_dict(values)
    except Exception as exc:
        log.warning("EasyPhoto: invalid value in Settings → EasyPhoto (%s); using defaults", exc)
        return Settings()


# ---------------------------------------------------------------------------------------------- the queue lock

_held = threading.local()  # per thread: {host lock: depth} of the host locks EasyPhoto's code entered


class HostQueueLock:
    """The WebUI's `call_queue.queue_lock` (host-api.md §2.6), re-entrant within one thread for EasyPhoto's code.

    The host's lock is a FIFO lock that is NOT re-entrant and does not know its owner. Our job worker holds it for a
    whole job (`AppContext.gpu_lock` is this class), and a job's generator takes it again on the same thread: the
    outermost `with` on a thread acquires the host lock, nested ones only count. Code the host itself runs under the
    lock (`wrap_gradio_gpu_call`) must not call the generator: that would wait for itself, like any host lock user.
    """

    def __init__(self, lock=None):
        if lock is None:
            from modules import call_queue

            lock = call_queue.queue_lock
        self.lock = lock

    @staticmethod
    def _depths() -> dict:
        depths = getattr(_held, "depths", None)
        if depths is None:
            depths = _held.depths = {}
        return depths

    def held_by_this_thread(self) -> bool:
        return self.lock in self._depths()

    def __enter__(self):
        depths = self._depths()
        if self.lock not in depths:
            self.lock.acquire()
            depths[self.lock] = 0
        depths[self.lock] += 1
        return self

    def __exit__(self, *exc) -> None:
        depths = self._depths()
        depths[self.lock] -= 1
        if depths[self.lock] == 0:
            del depths[self.lock]
            self.lock.release()


def host_queue_lock() -> HostQueueLock:
    """The lock the WebUI's own generation runs under (host-api.md §2.6), re-entrant per thread for our code."""
    return HostQueueLock()


def _forge_main_thread():
    """Forge's modules_forge.main_thread, or None on A1111."""
    try:
        from modules_forge import main_thread
    except ImportError:
        return None
    return main_thread


def on_host_thread(func):
    """Run `func()` where the host runs its GPU work: Forge's main thread (modules_forge.main_thread, host-api.md §6),
    else right here. Forge's run_and_wait_result prints an exception and returns None, so the outcome travels back
    in a box and is raised here. `func` is never called inside an `except` block: an error would be logged chained
    to the ImportError of the Forge probe."""
    main_thread = _forge_main_thread()
    if main_thread is None:
        return func()
    outcome = {}

    def boxed():
        try:
            outcome["result"] = func()
        except BaseException as exc:
            outcome["error"] = exc
        return True

    main_thread.run_and_wait_result(boxed)
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise GenerationError("The WebUI's main thread did not run the generation.")
    return outcome["result"]


# ---------------------------------------------------------------------------------------------- the host's model

@contextlib.contextmanager
def host_model_offloaded():
    """Free the GPU for training: the loaded checkpoint goes to the CPU and back afterwards (host-api.md §3.6).

    A1111: unload_model_weights() only moves the model to the CPU, and reload_model_weights() would not move it
    back (it returns early for the same checkpoint), so send_model_to_device() restores it. Forge: unloading frees
    everything and Forge reloads on the next generation by itself. Reads model_data.sd_model, never shared.sd_model,
    which would load a model just to unload it."""
    from modules import sd_models

    loaded = sd_models.model_data.sd_model
    if not current_settings().unload_host_model_for_training or loaded is None:
        yield
        return
    sd_models.unload_model_weights(loaded)
    try:
        yield
    finally:
        if detect_flavour() == "a1111":
            sd_models.send_model_to_device(loaded)


class HostJob:
    """EasyPhoto's own GPU work (a zero-shot try-on's diffusers pipeline) shown as the WebUI's current job: its
    Interrupt button stops it between steps, and its progress bar follows ours."""

    def __init__(self, state):
        self.state = state

    def should_stop(self) -> bool:
        return bool(self.state.interrupted or self.state.stopping_generation)

    def progress(self, fraction: float, message: str) -> None:
        self.state.sampling_steps = 1000
        self.state.sampling_step = int(max(0.0, min(fraction, 1.0)) * 1000)
        self.state.textinfo = message


@contextlib.contextmanager
def host_job(label: str):
    """Around our own pipeline: state.begin() (the Interrupt button then acts on this job, and a stale interrupt is
    cleared, host-api.md §2.6) and state.end() with the flags reset, as wrap_gradio_call does. The caller holds the
    queue lock (the job worker does for GPU kinds)."""
    from modules import shared

    state = shared.state
    state.begin(job=f"easyphoto-{label}")
    state.job_count = 1
    state.textinfo = f"EasyPhoto {label}"
    try:
        yield HostJob(state)
    finally:
        state.end()
        state.interrupted = state.skipped = state.stopping_generation = False


def selected_checkpoint() -> Path:
    """The file of the checkpoint selected in the WebUI (resolved the host's way, host-api.md §3.6)."""
    from modules import sd_models

    from easyphoto.errors import EasyPhotoError

    try:
        info = sd_models.select_checkpoint()
    except FileNotFoundError:
        raise EasyPhotoError("The WebUI has no checkpoint installed to train on.", phase="train",
                             hint="Put an SD 1.5 .safetensors checkpoint in models/Stable-diffusion.") from None
    return Path(info.filename)


# ---------------------------------------------------------------------------------------------- the base model family

def host_family() -> str:
    """The family ("sd15" / "sdxl") of the checkpoint the next generation runs on: the selected one (both hosts
    load it at the start of process_images). The loaded model's own flag (A1111's sd_model.is_sdxl; Forge's
    diffusion engine sets is_sdxl too, its placeholder before the first generation has none) when it is that
    checkpoint, else the file's header: "sdxl" when its state dict has SDXL's conditioner, as A1111's
    sd_models_config and Forge's model guess decide (easyphoto.sd.family; a .ckpt is never opened and counts as
    SD 1.5). Nothing is loaded to find out."""
    from modules import sd_models

    from easyphoto.sd.family import model_family

    try:
        selected = sd_models.select_checkpoint()
    except FileNotFoundError:
        return "sd15"
    model = sd_models.model_data.sd_model
    info = getattr(model, "sd_checkpoint_info", None)
    if info is not None and getattr(info, "filename", None) == selected.filename and hasattr(model, "is_sdxl"):
        return "sdxl" if model.is_sdxl else "sd15"
    return model_family(Path(selected.filename))


def lora_present(stem: str) -> bool:
    """Whether the host's Lora folder (--lora-dir, else models/Lora, searched recursively like the built-in Lora
    extension does) has a LoRA file named `stem`."""
    from modules import paths_internal

    folder = Path(cmd_opt("lora_dir") or Path(paths_internal.models_path) / "Lora")
    return folder.is_dir() and any(p.stem == stem and p.suffix.lower() in (".safetensors", ".pt", ".ckpt")
                                   for p in folder.rglob(f"{stem}.*"))
