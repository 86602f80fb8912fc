"""`WebUIGenerator`: the `Generator` of the A1111 / Forge WebUI (modules.processing with the host's ControlNet)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading

from easyphoto.backends.webui.controlnet import (
    ControlNetAdapter,
    HostControlNet,
    controlnet_adapter,
    controlnet_script,
)
from easyphoto.backends.webui.host import (
    detect_flavour,
    host_family,
    host_queue_lock,
    lora_present,
    on_host_thread,
)
from easyphoto.backends.webui.sampling import MIN_HOST_STEPS, HostSampling, host_samplers, host_sampling
from easyphoto.generation import (
    INPAINT_FILLS,
    Capabilities,
    EvalCounter,
    GenerationError,
    GenerationInterrupted,
    InpaintRequest,
    LoraRef,
    Progress,
    ShouldStop,
    Txt2ImgRequest,
    controlnet_models,
    never_stop,
    no_progress,
)
from easyphoto.identity_modes import METHOD_NAMES, TRAINING_FREE, identity_models

JOB_NAME = "easyphoto"
UNIT_COUNT_SETTING = "Multi-ControlNet: ControlNet unit number"
_MASK_OPTIONS = ("return_mask", "return_mask_composite")  # extra images process_images would append


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


def _check_lora_families(loras: list[LoraRef], family_of_host) -> None:
    """Refuse a LoRA trained for the other family than the checkpoint's: the host's Lora would match none of its
    keys, log it, and render without the identity (host-api.md: the real host only logs unmatched keys)."""
    from easyphoto.sd.family import FAMILY_LABELS, lora_file_family

    files = [(ref, lora_file_family(ref.path)) for ref in loras if ref.path is not None]
    if not any(theirs for _, theirs in files):
        return
    family = family_of_host()
    for ref, theirs in files:
        if theirs is not None and theirs != family:
            raise GenerationError(
                f"The LoRA {ref.name!r} was trained for {FAMILY_LABELS[theirs]} checkpoints, but the selected "
                f"checkpoint is {FAMILY_LABELS.get(family, family)}: the WebUI would skip its weights and render "
                "without it.",
                hint="Select the checkpoint the LoRA was trained on (or one of its family), or train it again on "
                     "this checkpoint.")


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


class WebUIGenerator:
    """The `Generator` of the A1111 / Forge WebUI: `modules.processing` with the host's own ControlNet.

    Each request becomes one `process_images` call on the user's current checkpoint and VAE (no override_settings),
    under the host's queue lock and `shared.state.begin/end`, so the WebUI's progress bar and Interrupt button see
    it. ControlNet units are validated before anything runs: the host would only log a missing model or extension
    and generate without control. `counter` holds the evaluations the host's sampler makes (`host_sampling`; its
    sampler is not observable from here): UNet per request, ControlNet = that times the number of controls.
    """

    def __init__(self, flavour: str | None = None, controlnet: ControlNetAdapter | None = None):
        self.flavour = flavour or detect_flavour()
        self.controlnet = controlnet or controlnet_adapter(self.flavour)
        self.name = f"webui-{self.flavour}"
        self.counter = EvalCounter()
        self._generating = threading.Event()

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> Capabilities:
        from modules import scripts

        samplers = host_samplers()
        family = host_family()
        stems = controlnet_models(family)
        cn, why = self.controlnet.usable(scripts.scripts_img2img)
        if why is not None:
            return Capabilities(self.name, {}, {kind: why for kind in stems}, 0, samplers, family,
                                identity_missing={method: why for method in TRAINING_FREE})
        names = self.controlnet.model_names(cn)
        controls, missing = {}, {}
        for kind, stem in stems.items():
            resolved = self.controlnet.resolve_model(names, stem)
            if resolved is None:
                missing[kind] = f"{stem} is not installed: put it in {self.controlnet.models_dir()} or download it " \
                                f"in EasyPhoto → Models"
            else:
                controls[kind] = resolved
        identity, identity_missing = {}, {}
        for method in TRAINING_FREE:
            try:
                identity[method] = ", ".join(self._identity_models(names, method, family)[0])
            except GenerationError as exc:
                identity_missing[method] = exc.message
        return Capabilities(self.name, controls, missing, cn.slots, samplers, family, identity, identity_missing)

    # ------------------------------------------------------------------ requests

    def inpaint(self, req: InpaintRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list:
        from modules import processing, scripts, shared

        runner = scripts.scripts_img2img
        self._check_stop(should_stop, req.label)
        sampling = self._sampling(req, req.denoising_strength)  # a schedule the host cannot run fails first
        units, loras = self._plan_units(req, runner)
        opts = shared.opts
        fields = self._common_fields(req, processing.StableDiffusionProcessingImg2Img, loras)
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
        return self._generate(p, runner, units, req, sampling, progress, should_stop)

    def txt2img(self, req: Txt2ImgRequest, progress: Progress = no_progress,
                should_stop: ShouldStop = never_stop) -> list:
        from modules import processing, scripts, shared

        runner = scripts.scripts_txt2img
        self._check_stop(should_stop, req.label)
        sampling = self._sampling(req, None)
        units, loras = self._plan_units(req, runner)
        opts = shared.opts
        fields = self._common_fields(req, processing.StableDiffusionProcessingTxt2Img, loras)
        fields.update(
            outpath_samples=opts.outdir_samples or opts.outdir_txt2img_samples,
            outpath_grids=opts.outdir_grids or opts.outdir_txt2img_grids,
        )
        p = processing.StableDiffusionProcessingTxt2Img(**fields)
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
    def _common_fields(req: Txt2ImgRequest, cls, loras: list) -> dict:
        fields = {
            "prompt": _lora_prompt(req.prompt, loras),
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

    def _plan_units(self, req: Txt2ImgRequest, runner) -> tuple[list, list]:
        """Validate the request's controls (and training-free identity) against the host and build its ControlNet
        units and the LoRAs of its prompt, before anything runs."""
        _check_lora_families(req.loras, host_family)
        if not req.controls and req.identity is None:
            return [], list(req.loras)
        wanted = [c.kind for c in req.controls] + ([req.identity.method] if req.identity is not None else [])
        kinds = ", ".join(wanted)
        cn, why = self.controlnet.usable(runner)
        if why is not None:
            raise GenerationError(f"This generation needs ControlNet ({kinds}), but {why}.", hint=self.controlnet.hint)
        family = host_family()
        names = self.controlnet.model_names(cn)
        identity_units, loras = [], list(req.loras)
        if req.identity is not None:
            models, lora = self._identity_models(names, req.identity.method, family)
            identity_units = self._identity_units(cn, req, models)
            loras += [LoraRef(lora, 1.0)] if lora else []
        self._check_slots(len(req.controls) + len(identity_units), cn, kinds)
        units = self._control_units(req, cn, names, family)
        return units + identity_units, loras

    def _identity_models(self, names: list[str], method: str, family: str) -> tuple[list[str], str | None]:
        """The host's names of the models `method` needs on `family`, and its companion LoRA; GenerationError naming
        whatever is missing (the host would only log a missing model and render without the unit)."""
        if self.controlnet.identity_modules.get(method) is None:
            raise GenerationError(f"{METHOD_NAMES[method]} is not available in this WebUI: "
                                  f"{self.controlnet.identity_refusal}.",
                                  hint="Run it in AUTOMATIC1111 with sd-webui-controlnet, or choose InstantID or "
                                       "FaceID.")
        spec = identity_models(method, family)
        resolved = [self.controlnet.resolve_model(names, stem) for stem in spec.units]
        absent = [f"{stem} (ControlNet folder {self.controlnet.models_dir()})"
                  for stem, name in zip(spec.units, resolved, strict=True) if name is None]
        if spec.lora and not lora_present(spec.lora):
            absent.append(f"{spec.lora} (Lora folder)")
        if absent:
            raise GenerationError(
                f"{METHOD_NAMES[method]} needs model(s) that are not installed: {'; '.join(absent)}.",
                hint="Download them in EasyPhoto → Models (group “identity”; their licences are shown there), or "
                     "use the identity LoRA.")
        return resolved, spec.lora

    def _identity_units(self, cn: HostControlNet, req: Txt2ImgRequest, models: list[str]) -> list:
        identity = req.identity
        modules = self.controlnet.identity_modules[identity.method]
        # InstantID's second unit places the face: its keypoints come from the picture being repainted
        keypoints = getattr(req, "image", None)
        keypoints = identity.face if keypoints is None else keypoints
        images = [identity.face, keypoints][:len(modules)]
        return [self.controlnet.identity_unit(cn, identity, module, model, image)
                for module, model, image in zip(modules, models, images, strict=True)]

    def _control_units(self, req: Txt2ImgRequest, cn: HostControlNet, names: list[str], family: str) -> list:
        stems = controlnet_models(family)
        resolved, missing = [], []
        for control in req.controls:
            stem = stems.get(control.kind)
            if stem is None:
                raise GenerationError(f"No SDXL ControlNet is published for the control {control.kind!r}, and the "
                                      f"selected checkpoint is SDXL.",
                                      hint="Leave that control out (weight 0) for SDXL checkpoints.")
            name = self.controlnet.resolve_model(names, stem)
            resolved.append(name)
            if name is None and stem not in missing:
                missing.append(stem)
        if missing:
            files = ", ".join(f"{stem}.{'safetensors' if family == 'sdxl' else 'pth'}" for stem in missing)
            group = "controlnet_sdxl" if family == "sdxl" else "controlnet"
            raise GenerationError(
                f"ControlNet model(s) missing for this generation: {files} (not found by the WebUI's ControlNet).",
                hint=f"Put the file(s) in {self.controlnet.models_dir()} (models/ControlNet), or download them in "
                     f"EasyPhoto → Models (group “{group}”).")
        return [self.controlnet.unit(cn, control, name) for control, name in zip(req.controls, resolved, strict=True)]

    @staticmethod
    def _check_slots(count: int, cn: HostControlNet, kinds: str) -> None:
        if count <= cn.slots:
            return
        from modules import shared

        setting = shared.opts.data.get("control_net_unit_count", 3)
        raise GenerationError(
            f"This generation needs {count} ControlNet units ({kinds}), but the WebUI runs with "
            f"{cn.slots} (setting: {setting}).",
            hint=f"Set “{UNIT_COUNT_SETTING}” to at least {count} in Settings → ControlNet, apply, "
                 f"and restart the WebUI.")

    def _script_args(self, runner, units: list) -> list:
        args = _default_script_args(runner)
        if units:
            start = controlnet_script(runner).args_from
            args[start:start + len(units)] = units  # never more than the slots: validated in _plan_units
        return args

    def _generate(self, p, runner, units, req, sampling: HostSampling, progress, should_stop) -> list:
        from modules import shared

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
                processed = on_host_thread(lambda: self._process(p))
                interrupted = bool(state.interrupted or state.stopping_generation)
            finally:
                self._generating.clear()
                state.end()
                state.interrupted = state.skipped = state.stopping_generation = False  # as wrap_gradio_call does
        images = self._results(processed, expected, req, label, interrupted)
        self.counter.add(req.label, unet=sampling.evaluations, controlnet=sampling.evaluations * len(units))
        progress(1.0, f"{label}: done")
        return images

    @staticmethod
    def _process(p):
        from modules import processing

        try:
            with _without_mask_images():
                return processing.process_images(p)
        finally:
            p.close()

    @staticmethod
    def _results(processed, expected: int, req, label: str, interrupted: bool) -> list:
        """The `expected` images of this request, at its size; an interrupted or short run raises."""
        first = processed.index_of_first_image
        images = list(processed.images[first:first + expected])
        if interrupted or len(images) < expected:
            raise GenerationInterrupted(f"The WebUI's generation of {label} was interrupted.",
                                        hint="Run it again to get the result.")
        size = (int(req.width), int(req.height))  # the host decodes multiples of 8: give back the asked size
        return [im if im.size == size else im.resize(size) for im in images]


def make_generator(params: dict | None = None) -> WebUIGenerator:
    """The generator of this WebUI (flavour detected); `params` (a job's parameters) is accepted for the
    AppContext.make_generator signature and not needed: the host's checkpoint is the one selected in the UI."""
    return WebUIGenerator()
