"""Everything that talks to the AUTOMATIC1111 / Forge WebUI (shared/reference/host-api.md).

This is the one module of the `easyphoto` package allowed to import the host (`modules`, `launch`, ControlNet).
`scripts/easyphoto.py` registers the callbacks below and nothing else. Host modules are imported inside the
functions, so importing this module is cheap and works before the host has finished loading.
"""


import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import os
import secrets
import threading
from pathlib import Path

from easyphoto.config import FieldSpec, Settings
from easyphoto.context import AppContext, HostInfo
from easyphoto.generation import (
    CONTROLNET_MODELS,
    INPAINT_FILLS,
    Capabilities,
    EvalCounter,
    GenerationError,
    GenerationInterrupted,
    InpaintRequest,
    Progress,
    ShouldStop,
    Txt2ImgRequest,
    never_stop,
    no_progress,
)

log = logging.getLogger("easyphoto")
SETTINGS_SECTION = ("easyphoto", "EasyPhoto")
SETTING_PREFIX = "easyphoto_"
TAB_TITLE = "EasyPhoto"
TAB_ID = "easyphoto"


def detect_flavour() -> str:
    """Forge ships `modules_forge` (host-api.md §6); everything else is treated as A1111."""
    return "forge" if importlib.util.find_spec("modules_forge") is not None else "a1111"


def host_version() -> str:
    try:
        from modules import launch_utils

        return str(launch_utils.git_tag())
    except Exception:  # an unreadable version must never break the tab or the health route
        return ""


def _cmd_opt(name: str, default=None):
    # An extension installed during the session has no cmd_opts attributes until a restart (host-api.md §1.3).
    from modules import shared

    value = getattr(shared.cmd_opts, name, None)
    return default if value in (None, "") else value


def make_paths():
    from modules import paths_internal

    from easyphoto.store import Paths

    models = Path(paths_internal.models_path)
    return Paths(
        data_root=Path(_cmd_opt("easyphoto_data_dir") or Path(paths_internal.data_path) / "easyphoto"),
        models_root=Path(_cmd_opt("easyphoto_models_dir") or models / "easyphoto"),
        lora_dir=Path(_cmd_opt("lora_dir") or models / "Lora"),
        controlnet_dir=Path(_cmd_opt("controlnet_dir") or models / "ControlNet"),
        checkpoints_dir=Path(_cmd_opt("ckpt_dir") or models / "Stable-diffusion"),
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


def make_context() -> AppContext:
    offline = bool(_cmd_opt("easyphoto_offline", False)) or os.environ.get("HF_HUB_OFFLINE") == "1"
    host = HostInfo(detect_flavour(), host_version())
    return AppContext(make_paths(), host, current_settings, offline, gpu_lock=host_queue_lock,
                      host_offload=host_model_offloaded, selected_checkpoint=selected_checkpoint,
                      make_generator=make_generator)


# ---------------------------------------------------------------------------------------------- generation

CONTROL_MODE_LABELS = {"balanced": "Balanced", "prompt": "My prompt is more important",
                       "control": "ControlNet is more important"}  # ControlNet's string enum values
CONTROL_RESIZE_MODE = "Just Resize"  # the condition images are prepared at the request's size
JOB_NAME = "easyphoto"
UNIT_COUNT_SETTING = "Multi-ControlNet: ControlNet unit number"
_MASK_OPTIONS = ("return_mask", "return_mask_composite")  # extra images process_images would append


def _name_stem(name: str) -> str:
    """'control_v11p_sd15_canny [d14c016b]' -> 'control_v11p_sd15_canny' (the host's "name [hash8]" form)."""
    return name.rsplit(" [", 1)[0] if name.endswith("]") and " [" in name else name


def _controlnet_modules(flavour: str):
    """(external_code, global_state or None) of the host's ControlNet, None when it is not loaded (host-api.md §4.1,
    §6). Forge: its built-in lib_controlnet. A1111: Mikubill's module, cached in sys.modules by ControlNet's own
    scripts once they loaded (internal_controlnet since 1.1.448, scripts.external_code before)."""
    if flavour == "forge":
        try:
            from lib_controlnet import external_code, global_state
        except ImportError:
            return None
        return external_code, global_state
    for name in ("internal_controlnet.external_code", "scripts.external_code"):
        try:
            return importlib.import_module(name), None
        except ImportError:
            continue
    return None


def _controlnet_script(runner):
    """The ControlNet alwayson script of a ScriptRunner (title "ControlNet" on both hosts), or None."""
    for script in getattr(runner, "alwayson_scripts", None) or []:
        try:
            if str(script.title()).lower() == "controlnet":
                return script
        except Exception:  # another extension's broken title() is not our failure
            continue
    return None


def _default_script_args(runner) -> list:
    """Every script's UI default (host-api.md §3.5, the cheap form of Api.init_default_script_args): the values of
    runner.inputs, index 0 = 0 (no selectable script)."""
    size = max([len(runner.inputs)] + [s.args_to for s in runner.scripts if s.args_to is not None])
    args = [None] * size
    for i, component in enumerate(runner.inputs):
        args[i] = getattr(component, "value", None) if component is not None else None
    if args:
        args[0] = 0
    return args


def _host_samplers() -> tuple[str, ...]:
    try:
        from modules import sd_samplers

        return tuple(sd_samplers.all_samplers_map)
    except Exception:  # an unusual host: the list is informative only
        return ()


# Samplers of the host's sd_samplers_timesteps; all others are k-diffusion samplers (sd_samplers_kdiffusion).
_TIMESTEP_SAMPLERS = frozenset({"DDIM", "DDIM CFG++", "PLMS", "UniPC"})
MIN_HOST_STEPS = 2  # DPM++ 2M SDE crashes in k-diffusion on a one-step schedule (UnboundLocalError on 'h')


@dataclasses.dataclass(frozen=True)
class HostSampling:
    """What the host's sampler runs for a request: `steps` (its progress total) and `evaluations` (UNet calls)."""

    sampler: str
    steps: int
    evaluations: int


def _sampler_config(name: str):
    """(canonical sampler name, second order?) the host's way: a legacy "DPM++ 2M Karras" is split first."""
    try:
        from modules import sd_samplers

        canonical, _ = sd_samplers.get_sampler_and_scheduler(name, None)
        config = sd_samplers.find_sampler_config(canonical)
    except Exception:  # an unusual host: count it as a first-order sampler under the given name
        return name, False
    if config is None:
        return name, False
    return config.name, bool(config.options.get("second_order"))


def host_sampling(sampler: str, steps: int, denoising_strength: float | None, *, fix_steps: bool = False) -> HostSampling:
    """The sampler steps and UNet evaluations A1111 / Forge run (sd_samplers_common.setup_img2img_steps and the
    k-diffusion loop): img2img keeps `t_enc = int(steps × min(strength, 0.999))` and runs `t_enc + 1` steps (with
    the "img2img_fix_steps" option: exactly `steps`); txt2img runs `steps`. Second-order k-diffusion samplers
    (Heun, DPM2, DPM++ SDE, ...) evaluate twice per step except the last one, which ends at sigma 0; timestep
    samplers (DDIM, PLMS, UniPC) evaluate `t_enc` times in img2img. Adaptive ones (DPM adaptive) cannot be known
    in advance and count as first order."""
    name, second_order = _sampler_config(sampler)
    if denoising_strength is None:
        run = evaluations = int(steps)
    else:
        t_enc = int(steps) - 1 if fix_steps else int(min(denoising_strength, 0.999) * steps)
        run = t_enc + 1
        evaluations = t_enc if name in _TIMESTEP_SAMPLERS else run
    if second_order and name not in _TIMESTEP_SAMPLERS and evaluations > 0:
        evaluations = 2 * evaluations - 1
    return HostSampling(name, run, evaluations)


def _lora_prompt(prompt: str, loras) -> str:
    tags = " ".join(f"<lora:{lora.name}:{lora.weight:g}>" for lora in loras)
    return f"{prompt} {tags}".strip() if tags else prompt


@contextlib.contextmanager
def _without_mask_images():
    """Keep the inpaint mask images out of processed.images while we run (host-api.md §3.4); restored after."""
    from modules import shared

    data = shared.opts.data
    saved = {key: data[key] for key in _MASK_OPTIONS if key in data}
    try:
        for key in _MASK_OPTIONS:
            data[key] = False  # opts.data, not setattr: --freeze-settings must not break generation
        yield
    finally:
        for key in _MASK_OPTIONS:
            if key in saved:
                data[key] = saved[key]
            else:
                data.pop(key, None)


def _forge_main_thread():
    """Forge's modules_forge.main_thread, or None on A1111."""
    try:
        from modules_forge import main_thread
    except ImportError:
        return None
    return main_thread


def _on_host_thread(func):
    """Run `func()` where the host runs generation: Forge's main thread (modules_forge.main_thread, host-api.md §6),
    else right here. Forge's run_and_wait_result prints an exception and returns None, so the outcome travels back
    in a box and is raised here. `func` is never called inside an `except` block: a generation error would be
    logged chained to the ImportError of the Forge probe."""
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


class WebUIGenerator:
    """The `Generator` of the A1111 / Forge WebUI: `modules.processing` with the host's own ControlNet.

    Each request becomes one `process_images` call on the user's current checkpoint and VAE (no override_settings),
    under the host's queue lock and `shared.state.begin/end`, so the WebUI's progress bar and Interrupt button see
    it. ControlNet units are validated before anything runs: the host would only log a missing model or extension
    and generate without control. `counter` holds the evaluations the host's sampler makes (`host_sampling`; its
    sampler is not observable from here): UNet per request, ControlNet = that times the number of controls.
    """

    def __init__(self, flavour: str | None = None):
        self.flavour = flavour or detect_flavour()
        self.name = f"webui-{self.flavour}"
        self.counter = EvalCounter()
        self._generating = threading.Event()

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> Capabilities:
        from modules import scripts

        samplers = _host_samplers()
        cn, script, why = self._controlnet(scripts.scripts_img2img)
        if why is not None:
            return Capabilities(self.name, {}, {kind: why for kind in CONTROLNET_MODELS}, 0, samplers)
        names = self._model_names(cn)
        controls, missing = {}, {}
        for kind, stem in CONTROLNET_MODELS.items():
            resolved = self._resolve_model(names, stem)
            if resolved is None:
                missing[kind] = f"{stem} is not installed: put it in {self._controlnet_dir()} or download it in " \
                                f"EasyPhoto → Models"
            else:
                controls[kind] = resolved
        return Capabilities(self.name, controls, missing, self._slots(script), samplers)

    def _controlnet(self, runner):
        """(modules, script, None) when the host's ControlNet is usable with `runner`, else (None, None, why)."""
        cn = _controlnet_modules(self.flavour)
        script = _controlnet_script(runner)
        if script is not None and (script.args_from is None or script.args_to is None):
            script = None  # its UI (and so its argument slots) was never built
        if cn is not None and script is not None:
            return cn, script, None
        if cn is None and self.flavour == "forge":
            why = "Forge's built-in ControlNet (extensions-builtin/sd_forge_controlnet) is disabled"
        elif cn is None:
            why = "the sd-webui-controlnet extension is not installed"
        else:
            why = "ControlNet is loaded but not active in this WebUI session (disabled, or the UI is not built yet)"
        return None, None, why

    def _controlnet_hint(self) -> str:
        if self.flavour == "forge":
            return "Enable sd_forge_controlnet in Extensions → Installed and restart the WebUI."
        return ("Install sd-webui-controlnet (Extensions → Available, or Install from URL "
                "https://github.com/Mikubill/sd-webui-controlnet) and restart the WebUI.")

    @staticmethod
    def _slots(script) -> int:
        return max(int(script.args_to) - int(script.args_from), 0)

    def _controlnet_dir(self) -> Path:
        from modules import paths_internal

        return Path(_cmd_opt("controlnet_dir") or Path(paths_internal.models_path) / "ControlNet")

    def _model_names(self, cn) -> list[str]:
        """The host's ControlNet models as "name [hash8]", rescanned now (a file downloaded a minute ago counts)."""
        external_code, global_state = cn
        if self.flavour == "forge":
            global_state.update_controlnet_filenames()
            return [n for n in global_state.get_all_controlnet_names() if n != "None"]
        return list(external_code.get_models(update=True))

    def _resolve_model(self, names: list[str], stem: str) -> str | None:
        """The exact name the host will accept for the file stem `stem`.

        A1111 resolves like Mikubill's build_control_model (host-api.md §4.6): exact key, lower-cased stem, shortest
        stem containing it. Forge takes only the exact "name [hash]" (a plain dict lookup), so the stem must match.
        """
        if stem in names:
            return stem
        by_stem: dict[str, str] = {}
        for name in names:
            by_stem.setdefault(_name_stem(name), name)
        if stem in by_stem:
            return by_stem[stem]
        lowered: dict[str, str] = {}
        for key, name in by_stem.items():
            lowered.setdefault(key.lower(), name)
        if stem.lower() in lowered:
            return lowered[stem.lower()]
        if self.flavour == "forge":
            return None
        containing = sorted((key for key in lowered if stem.lower() in key), key=len)
        return lowered[containing[0]] if containing else None

    # ------------------------------------------------------------------ requests

    def inpaint(self, req: InpaintRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list:
        from modules import processing, scripts, shared

        runner = scripts.scripts_img2img
        self._check_stop(should_stop, req.label)
        self._sampling(req, req.denoising_strength)  # a schedule the host cannot run fails before anything else
        units = self._plan_units(req, runner)
        opts = shared.opts
        fields = self._common_fields(req, processing.StableDiffusionProcessingImg2Img)
        fields.update(
            outpath_samples=opts.outdir_samples or opts.outdir_img2img_samples,
            outpath_grids=opts.outdir_grids or opts.outdir_img2img_grids,
            init_images=[req.image],
            mask=req.mask,
            mask_blur=int(req.mask_blur),
            inpainting_fill=INPAINT_FILLS.index(req.inpainting_fill),
            inpaint_full_res=False,
            denoising_strength=float(req.denoising_strength),
        )
        p = processing.StableDiffusionProcessingImg2Img(**fields)
        sampling = self._sampling(req, req.denoising_strength)
        return self._generate(p, runner, units, req, sampling, progress, should_stop)

    def txt2img(self, req: Txt2ImgRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list:
        from modules import processing, scripts, shared

        runner = scripts.scripts_txt2img
        self._check_stop(should_stop, req.label)
        self._sampling(req, None)
        units = self._plan_units(req, runner)
        opts = shared.opts
        fields = self._common_fields(req, processing.StableDiffusionProcessingTxt2Img)
        fields.update(
            outpath_samples=opts.outdir_samples or opts.outdir_txt2img_samples,
            outpath_grids=opts.outdir_grids or opts.outdir_txt2img_grids,
        )
        p = processing.StableDiffusionProcessingTxt2Img(**fields)
        sampling = self._sampling(req, None)
        return self._generate(p, runner, units, req, sampling, progress, should_stop)

    def interrupt(self) -> None:
        """Stop the running generation (a job cancel calls this). Only while this generator runs one: a cancel must
        never stop somebody else's txt2img."""
        if self._generating.is_set():
            from modules import shared

            shared.state.interrupt()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _sampling(req: Txt2ImgRequest, denoising_strength: float | None) -> HostSampling:
        """The host's schedule for `req`; fewer than MIN_HOST_STEPS steps is refused before anything runs."""
        from modules import shared

        fix_steps = bool(shared.opts.data.get("img2img_fix_steps", False))
        sampling = host_sampling(req.sampler or "", int(req.steps), denoising_strength, fix_steps=fix_steps)
        if sampling.steps < MIN_HOST_STEPS:
            what = f"steps {req.steps}" if denoising_strength is None else \
                f"steps {req.steps} × denoising strength {denoising_strength:g}"
            raise GenerationError(
                f"{req.label or 'This generation'} would run {sampling.steps} sampling step(s) in the WebUI "
                f"({what}); at least {MIN_HOST_STEPS} are needed.",
                hint="Raise the steps or the denoising strength of this pass.")
        return sampling

    @staticmethod
    def _check_stop(should_stop: ShouldStop, label: str) -> None:
        if should_stop():
            raise GenerationInterrupted(f"Stopped before {label or 'the generation'} started.")

    @staticmethod
    def _common_fields(req: Txt2ImgRequest, cls) -> dict:
        fields = {
            "prompt": _lora_prompt(req.prompt, req.loras),
            "negative_prompt": req.negative_prompt,
            "seed": int(req.seed),
            "sampler_name": req.sampler,
            "steps": int(req.steps),
            "cfg_scale": float(req.cfg_scale),
            "width": int(req.width),
            "height": int(req.height),
            "batch_size": 1,
            "n_iter": 1,
            "do_not_save_samples": True,
            "do_not_save_grid": True,
            "override_settings": {},  # never the user's checkpoint or VAE
        }
        if req.scheduler is not None and "scheduler" in {f.name for f in dataclasses.fields(cls) if f.init}:
            fields["scheduler"] = req.scheduler  # A1111 >= 1.9 and Forge; older hosts have no such field
        return fields

    def _plan_units(self, req: Txt2ImgRequest, runner) -> list:
        """Validate the request's controls against the host and build its ControlNet units, before anything runs."""
        if not req.controls:
            return []
        kinds = ", ".join(c.kind for c in req.controls)
        cn, script, why = self._controlnet(runner)
        if why is not None:
            raise GenerationError(f"This generation needs ControlNet ({kinds}), but {why}.",
                                  hint=self._controlnet_hint())
        slots = self._slots(script)
        if len(req.controls) > slots:
            from modules import shared

            setting = shared.opts.data.get("control_net_unit_count", 3)
            raise GenerationError(
                f"This generation needs {len(req.controls)} ControlNet units ({kinds}), but the WebUI runs with "
                f"{slots} (setting: {setting}).",
                hint=f"Set “{UNIT_COUNT_SETTING}” to at least {len(req.controls)} in Settings → ControlNet, apply, "
                     f"and restart the WebUI.")
        names = self._model_names(cn)
        resolved, missing = [], []
        for control in req.controls:
            stem = CONTROLNET_MODELS[control.kind]
            name = self._resolve_model(names, stem)
            resolved.append(name)
            if name is None and stem not in missing:
                missing.append(stem)
        if missing:
            files = ", ".join(f"{stem}.pth" for stem in missing)
            raise GenerationError(
                f"ControlNet model(s) missing for this generation: {files} (not found by the WebUI's ControlNet).",
                hint=f"Put the file(s) in {self._controlnet_dir()} (models/ControlNet), or download them in "
                     f"EasyPhoto → Models (group “controlnet”).")
        return [self._unit(cn, control, name) for control, name in zip(req.controls, resolved, strict=True)]

    def _unit(self, cn, control, model: str):
        import numpy as np

        external_code, _ = cn
        fields = {
            "enabled": True,
            "module": "None" if self.flavour == "forge" else "none",  # the prepared map is used as is
            "model": model,
            "image": np.ascontiguousarray(np.asarray(control.image.convert("RGB"), dtype=np.uint8)),
            "weight": float(control.weight),
            "guidance_start": float(control.start),
            "guidance_end": float(control.end),
            "control_mode": CONTROL_MODE_LABELS[control.mode],  # string enums only: ints fail validation
            "resize_mode": CONTROL_RESIZE_MODE,
            "processor_res": 512,
            "pixel_perfect": False,
            "save_detected_map": False,  # no detected maps in processed.images
        }
        return external_code.ControlNetUnit(**fields)

    def _script_args(self, runner, units: list) -> list:
        args = _default_script_args(runner)
        if units:
            script = _controlnet_script(runner)
            start = script.args_from
            args[start:start + len(units)] = units  # never more than the slots: validated in _plan_units
        return args

    def _generate(self, p, runner, units, req, sampling: HostSampling, progress, should_stop) -> list:
        from modules import processing, shared

        state = shared.state
        label = req.label or ("inpaint" if hasattr(p, "init_images") else "txt2img")
        expected = p.batch_size * p.n_iter
        progress(0.0, f"{label}: waiting for the WebUI")
        with host_queue_lock():  # a no-op when our job worker already holds it on this thread
            self._generating.set()
            state.begin(job=JOB_NAME)  # also clears a stale `interrupted` (host-api.md §2.6)
            try:
                self._check_stop(should_stop, label)  # the wait for the lock can be long; begin() ate any interrupt
                state.job_count = 1
                state.sampling_steps = sampling.steps
                state.textinfo = f"EasyPhoto {label}"
                # An API call, as the host's own /sdapi does: otherwise assigning script_args runs the built-in
                # UI scripts' setup() (modules/processing_scripts: sampler, seed, refiner), which overwrites the
                # steps, sampler, schedule and seed with the img2img tab's UI defaults.
                p.is_api = True
                p.scripts = runner  # first: assigning script_args then runs the scripts' setup() once
                p.script_args = self._script_args(runner, units)
                progress(0.0, f"{label}: generating")

                def run():
                    try:
                        with _without_mask_images():
                            return processing.process_images(p)
                    finally:
                        p.close()

                processed = _on_host_thread(run)
                interrupted = bool(state.interrupted or state.stopping_generation)
            finally:
                self._generating.clear()
                state.end()
                state.interrupted = state.skipped = state.stopping_generation = False  # as wrap_gradio_call does
        first = processed.index_of_first_image
        images = list(processed.images[first:first + expected])
        if interrupted or len(images) < expected:
            raise GenerationInterrupted(f"The WebUI's generation of {label} was interrupted.",
                                        hint="Run it again to get the result.")
        self.counter.add(req.label, unet=sampling.evaluations, controlnet=sampling.evaluations * len(units))
        size = (int(req.width), int(req.height))  # the host decodes multiples of 8: give back the asked size
        images = [im if im.size == size else im.resize(size) for im in images]
        progress(1.0, f"{label}: done")
        return images


def make_generator(params: dict | None = None) -> WebUIGenerator:
    """The generator of this WebUI (flavour detected); `params` (a job's parameters) is accepted for the
    AppContext.make_generator signature and not needed: the host's checkpoint is the one selected in the UI."""
    return WebUIGenerator()


def paste_buttons(image_component, infotext_component) -> dict:
    """"Send to img2img" / "Send to inpaint" buttons for a result image and its infotext, the host's way
    (modules.infotext_utils): call inside the tab's gr.Blocks; the host connects them after building its UI."""
    try:
        from modules import infotext_utils
    except ImportError:  # WebUI < 1.8 named it generation_parameters_copypaste
        infotext_utils = importlib.import_module("modules.generation_parameters_copypaste")
    buttons = infotext_utils.create_buttons(["img2img", "inpaint"])
    for tabname, button in buttons.items():
        infotext_utils.register_paste_params_button(infotext_utils.ParamBinding(
            paste_button=button, tabname=tabname, source_text_component=infotext_component,
            source_image_component=image_component))
    return buttons


# ---------------------------------------------------------------------------------------------- callbacks


def on_ui_settings() -> None:
    """Settings → EasyPhoto, one option per `Settings` field (labels, bounds and choices come from the model)."""
    from modules import shared

    for spec in Settings.field_specs():
        component, component_args = _setting_component(spec)
        info = shared.OptionInfo(
            spec.default,
            spec.title,
            component,
            component_args,
            section=SETTINGS_SECTION,
        )
        if spec.description:
            info = info.info(spec.description)
        shared.opts.add_option(SETTING_PREFIX + spec.name, info)


def _setting_component(spec: FieldSpec):
    import gradio as gr

    if spec.kind == "choice":
        return gr.Radio, {"choices": list(spec.choices)}
    if spec.kind in ("int", "float") and spec.minimum is not None and spec.maximum is not None:
        step = 1 if spec.kind == "int" else (spec.maximum - spec.minimum) / 100
        return gr.Slider, {"minimum": spec.minimum, "maximum": spec.maximum, "step": step}
    return None, None  # the WebUI picks a checkbox for bools and a textbox otherwise


def on_ui_tabs():
    from easyphoto.ui import build_ui

    ctx = dataclasses.replace(make_context(), paste_buttons=paste_buttons)
    return [(build_ui(ctx), TAB_TITLE, TAB_ID)]


def on_app_started(demo, app) -> None:
    """Mount /easyphoto/v1 on the host's FastAPI app; `demo` is None in API-only (--nowebui) mode."""
    from easyphoto import api

    exposure = api_exposure()
    if not exposure.private:
        log.info("EasyPhoto: the REST API serves only /health; %s", exposure.hint)
    elif exposure.refuse:
        log.warning("EasyPhoto: the REST API refuses requests: %s", exposure.hint)
    api.install(app, make_context(), dependencies=api_auth_dependencies(), exposure=exposure)


def api_exposure():
    """Safe by default: the API exists only where the WebUI serves its own (--api, --nowebui), and answers only
    /health when the server is reachable beyond this machine (--listen, --share, --ngrok, a non-loopback
    --server-name) without --api-auth: those routes export photos, delete identities and start downloads."""
    from easyphoto.api.routes import Exposure

    if not (_cmd_opt("api") or _cmd_opt("nowebui")):
        return Exposure(private=False, hint="start the WebUI with --api to use EasyPhoto's REST API.")
    if _webui_is_public() and not _cmd_opt("api_auth"):
        return Exposure(refuse=True, hint="The WebUI is reachable from other machines (--listen, --share, --ngrok "
                                          "or --server-name): start it with --api-auth user:password as well.")
    return Exposure()


def _webui_is_public() -> bool:
    from easyphoto.app import is_loopback

    if _cmd_opt("share") or _cmd_opt("listen") or _cmd_opt("ngrok"):
        return True
    server_name = _cmd_opt("server_name")
    return server_name is not None and not is_loopback(str(server_name))


def api_auth_dependencies() -> list:
    """Honour `--api-auth user:pass[,user2:pass2]`: the host only protects its own routes (host-api.md §2.3)."""
    credentials = _cmd_opt("api_auth")
    if not credentials:
        return []
    from fastapi import Depends, HTTPException, status
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    allowed = dict(pair.split(":", 1) for pair in str(credentials).split(",") if ":" in pair)
    basic = HTTPBasic()

    def check(cred: HTTPBasicCredentials = Depends(basic)) -> None:  # noqa: B008 - FastAPI's own idiom
        expected = allowed.get(cred.username)
        if expected is None or not secrets.compare_digest(cred.password, expected):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password",
                                headers={"WWW-Authenticate": "Basic"})

    return [Depends(check)]
