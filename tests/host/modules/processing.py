"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/processing.py (host-api.md 3.1-3.5, 7.2).

The three dataclasses have exactly the real init fields, order and defaults (Forge adds its own); ``sd_model`` and
``mask_blur`` are property shadows like in the real file. ``process_images`` follows the real control flow
(before_process, override_settings, scripts.process, job_count, the n_iter loop with the interrupt break,
per-image hooks, masks, grid, postprocess) but "samples" deterministic fake images: txt2img pixels come from the
seed; img2img with a mask keeps the original outside the (blurred, optionally inverted) mask, and with
``inpaint_full_res`` the crop region is really cropped, processed at width x height and pasted back. Sampling walks
the real sampler's schedule without a model (``sd_samplers_common.run_sampler``): the steps and denoiser calls it
would make are recorded, and a schedule the real sampler crashes on raises the same error.
Every call is recorded in ``calls`` (double-only).
"""

import copy
import dataclasses
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import modules.sd_hijack
import numpy as np
from modules import (
    devices,
    extra_networks,
    host_env,
    images,
    infotext_utils,  # noqa: F401  (registers modules.generation_parameters_copypaste)
    masking,
    scripts,
    sd_models,
    sd_samplers,
    sd_samplers_common,
    sd_vae,
    shared,
)
from modules.shared import opts, state
from PIL import Image, ImageFilter, ImageOps

IS_FORGE = host_env.is_forge()

opt_C = 4
opt_f = 8


def setup_color_correction(image):
    return np.asarray(image.convert("RGB")).mean(axis=(0, 1))


def apply_color_correction(correction, original_image):
    return original_image


def uncrop(image, dest_size, paste_loc):
    x, y, w, h = paste_loc
    base_image = Image.new("RGBA", dest_size)
    image = images.resize_image(1, image, w, h)
    base_image.paste(image, (x, y))
    return base_image


def apply_overlay(image, paste_loc, overlay):
    """Paste the processed crop back (``paste_loc``) and composite the original (``overlay``) over it.

    Returns (image, original_denoised_image), like v1.10.1.
    """
    if overlay is None:
        return image, image.copy()
    if paste_loc is not None:
        image = uncrop(image, (overlay.width, overlay.height), paste_loc)
    original_denoised_image = image.copy()
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    image = image.convert("RGB")
    return image, original_denoised_image


def create_binary_mask(image, round=True):
    """RGBA with a non-trivial alpha -> the alpha channel (thresholded at 128 if round); otherwise "L"."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        if round:
            image = image.split()[-1].convert("L").point(lambda x: 255 if x > 128 else 0)
        else:
            image = image.split()[-1].convert("L")
    else:
        image = image.convert("L")
    return image


def txt2img_image_conditioning(sd_model, x, width, height):
    return None


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    outpath_samples: str = None
    outpath_grids: str = None
    prompt: str = ""
    prompt_for_display: str = None
    negative_prompt: str = ""
    styles: list[str] = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str = None
    scheduler: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    if IS_FORGE:
        distilled_cfg_scale: float = 3.5
    width: int = 512
    height: int = 512
    restore_faces: bool = None
    tiling: bool = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict[str, Any] = None
    overlay_images: list = None
    eta: float = None
    do_not_reload_embeddings: bool = False
    denoising_strength: float = None
    ddim_discretize: str = None
    s_min_uncond: float = None
    s_churn: float = None
    s_tmax: float = None
    s_tmin: float = None
    s_noise: float = None
    override_settings: dict[str, Any] = None
    override_settings_restore_afterwards: bool = True
    sampler_index: int = None
    refiner_checkpoint: str = None
    refiner_switch_at: float = None
    disable_extra_networks: bool = False
    firstpass_image: Image = None

    scripts_value: scripts.ScriptRunner = field(default=None, init=False)
    script_args_value: list = field(default=None, init=False)
    scripts_setup_complete: bool = field(default=False, init=False)

    cached_uc = [None, None, None] if IS_FORGE else [None, None]
    cached_c = [None, None, None] if IS_FORGE else [None, None]

    comments: dict = None
    sampler: Any = field(default=None, init=False)
    is_using_inpainting_conditioning: bool = field(default=False, init=False)
    paste_to: tuple = field(default=None, init=False)

    is_hr_pass: bool = field(default=False, init=False)

    c: tuple = field(default=None, init=False)
    uc: tuple = field(default=None, init=False)

    rng: Any = field(default=None, init=False)
    step_multiplier: int = field(default=1, init=False)
    color_corrections: list = field(default=None, init=False)

    all_prompts: list = field(default=None, init=False)
    all_negative_prompts: list = field(default=None, init=False)
    all_seeds: list = field(default=None, init=False)
    all_subseeds: list = field(default=None, init=False)
    iteration: int = field(default=0, init=False)
    main_prompt: str = field(default=None, init=False)
    main_negative_prompt: str = field(default=None, init=False)

    prompts: list = field(default=None, init=False)
    negative_prompts: list = field(default=None, init=False)
    seeds: list = field(default=None, init=False)
    subseeds: list = field(default=None, init=False)
    extra_network_data: dict = field(default=None, init=False)

    user: str = field(default=None, init=False)

    sd_model_name: str = field(default=None, init=False)
    sd_model_hash: str = field(default=None, init=False)
    sd_vae_name: str = field(default=None, init=False)
    sd_vae_hash: str = field(default=None, init=False)

    is_api: bool = field(default=False, init=False)

    token_merging_ratio = 0
    token_merging_ratio_hr = 0
    if IS_FORGE:
        latents_after_sampling = []
        pixels_after_sampling = []

        def clear_prompt_cache(self):
            self.cached_c = [None, None, None]
            self.cached_uc = [None, None, None]

    def __post_init__(self):
        if self.sampler_index is not None:
            print("sampler_index argument for StableDiffusionProcessing does not do anything; use sampler_name",
                  file=sys.stderr)
        self.comments = {}
        if self.styles is None:
            self.styles = []
        self.sampler_noise_scheduler_override = None
        self.extra_generation_params = self.extra_generation_params or {}
        self.override_settings = self.override_settings or {}
        self.refiner_checkpoint_info = None
        self.batch_index = 0
        if not self.seed_enable_extras:
            self.subseed = -1
            self.subseed_strength = 0
            self.seed_resize_from_h = 0
            self.seed_resize_from_w = 0

    def fill_fields_from_opts(self):
        self.s_min_uncond = self.s_min_uncond if self.s_min_uncond is not None else opts.s_min_uncond
        self.s_churn = self.s_churn if self.s_churn is not None else opts.s_churn
        self.s_tmin = self.s_tmin if self.s_tmin is not None else opts.s_tmin
        self.s_tmax = (self.s_tmax if self.s_tmax is not None else opts.s_tmax) or float("inf")
        self.s_noise = self.s_noise if self.s_noise is not None else opts.s_noise

    @property
    def sd_model(self):  # noqa: F811  (shadows the dataclass field, as in the real class)
        return shared.sd_model

    @sd_model.setter
    def sd_model(self, value):
        pass  # passing a model does nothing: processing always uses shared.sd_model

    @property
    def scripts(self):
        return self.scripts_value

    @scripts.setter
    def scripts(self, value):
        self.scripts_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    @property
    def script_args(self):
        return self.script_args_value

    @script_args.setter
    def script_args(self, value):
        self.script_args_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    def setup_scripts(self):
        self.scripts_setup_complete = True
        self.scripts.setup_scrips(self, is_ui=not self.is_api)

    def comment(self, text):
        self.comments[text] = 1

    def txt2img_image_conditioning(self, x, width=None, height=None):
        return None

    def depth2img_image_conditioning(self, source_image):
        raise NotImplementedError("depth2img needs a model")

    def edit_image_conditioning(self, source_image):
        return None

    def unclip_image_conditioning(self, source_image):
        return None

    def inpainting_image_conditioning(self, source_image, latent_image, image_mask=None, round_image_mask=True):
        return None

    def img2img_image_conditioning(self, source_image, latent_image, image_mask=None, round_image_mask=True):
        return None

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        """Double: walk the sampler's schedule (sd_samplers_common.run_sampler: the steps and denoiser calls the real
        sampler makes, recorded in ``calls``), then one fake RGB image per seed at width x height."""
        _run_sampler(self)
        return [images.fake_image(seed, self.width, self.height) for seed in seeds]

    def close(self):
        self.sampler = None
        self.c = None
        self.uc = None
        if not opts.persistent_cond_cache:
            StableDiffusionProcessing.cached_c = [None] * len(StableDiffusionProcessing.cached_c)
            StableDiffusionProcessing.cached_uc = [None] * len(StableDiffusionProcessing.cached_uc)

    def get_token_merging_ratio(self, for_hr=False):
        if for_hr:
            return self.token_merging_ratio_hr or opts.token_merging_ratio_hr or self.token_merging_ratio
        return self.token_merging_ratio or opts.token_merging_ratio

    def setup_prompts(self):
        if isinstance(self.prompt, list):
            self.all_prompts = self.prompt
        elif isinstance(self.negative_prompt, list):
            self.all_prompts = [self.prompt] * len(self.negative_prompt)
        else:
            self.all_prompts = self.batch_size * self.n_iter * [self.prompt]
        if isinstance(self.negative_prompt, list):
            self.all_negative_prompts = self.negative_prompt
        else:
            self.all_negative_prompts = [self.negative_prompt] * len(self.all_prompts)
        if len(self.all_prompts) != len(self.all_negative_prompts):
            raise RuntimeError(f"Received a different number of prompts ({len(self.all_prompts)}) and negative "
                               f"prompts ({len(self.all_negative_prompts)})")
        self.all_prompts = [shared.prompt_styles.apply_styles_to_prompt(x, self.styles) for x in self.all_prompts]
        self.all_negative_prompts = [shared.prompt_styles.apply_negative_styles_to_prompt(x, self.styles)
                                     for x in self.all_negative_prompts]
        self.main_prompt = self.all_prompts[0]
        self.main_negative_prompt = self.all_negative_prompts[0]

    def cached_params(self, required_prompts, steps, extra_network_data, hires_steps=None, use_old_scheduling=False):
        return (required_prompts, steps, hires_steps, use_old_scheduling, opts.CLIP_stop_at_last_layers,
                shared.sd_model.sd_checkpoint_info if hasattr(shared.sd_model, "sd_checkpoint_info") else None,
                extra_network_data)

    def get_conds_with_caching(self, function, required_prompts, steps, caches, extra_network_data, hires_steps=None):
        return function(required_prompts, steps)

    def setup_conds(self):
        self.c = tuple(self.prompts or [])
        self.uc = tuple(self.negative_prompts or [])

    def get_conds(self):
        return self.c, self.uc

    def parse_extra_network_prompts(self):
        self.prompts, self.extra_network_data = extra_networks.parse_prompts(self.prompts)

    def save_samples(self) -> bool:
        """Whether to save generated images to disk."""
        return opts.samples_save and not self.do_not_save_samples and (
            opts.save_incomplete_images or not state.interrupted and not state.skipped)


class Processed:
    if IS_FORGE:

        def __init__(self, p: StableDiffusionProcessing, images_list, seed=-1, info="", subseed=None,
                     all_prompts=None, all_negative_prompts=None, all_seeds=None, all_subseeds=None,
                     index_of_first_image=0, infotexts=None, comments="", extra_images_list=[]):
            self._fill(p, images_list, seed, info, subseed, all_prompts, all_negative_prompts, all_seeds,
                       all_subseeds, index_of_first_image, infotexts)
            self.extra_images = extra_images_list  # Forge: e.g. ControlNet detected maps

    else:

        def __init__(self, p: StableDiffusionProcessing, images_list, seed=-1, info="", subseed=None,
                     all_prompts=None, all_negative_prompts=None, all_seeds=None, all_subseeds=None,
                     index_of_first_image=0, infotexts=None, comments=""):
            self._fill(p, images_list, seed, info, subseed, all_prompts, all_negative_prompts, all_seeds,
                       all_subseeds, index_of_first_image, infotexts)

    def _fill(self, p, images_list, seed, info, subseed, all_prompts, all_negative_prompts, all_seeds, all_subseeds,
              index_of_first_image, infotexts):
        """The attributes of host-api.md 3.4 (``comments`` is built from p.comments, as the real one does)."""
        self.images = images_list
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = "".join(f"{comment}\n" for comment in p.comments)
        self.width = p.width
        self.height = p.height
        self.sampler_name = p.sampler_name
        self.cfg_scale = p.cfg_scale
        self.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.steps = p.steps
        self.batch_size = p.batch_size
        self.restore_faces = p.restore_faces
        self.face_restoration_model = opts.face_restoration_model if p.restore_faces else None
        self.sd_model_name = p.sd_model_name
        self.sd_model_hash = p.sd_model_hash
        self.sd_vae_name = p.sd_vae_name
        self.sd_vae_hash = p.sd_vae_hash
        self.seed_resize_from_w = p.seed_resize_from_w
        self.seed_resize_from_h = p.seed_resize_from_h
        self.denoising_strength = getattr(p, "denoising_strength", None)
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.styles = p.styles
        self.job_timestamp = state.job_timestamp
        self.clip_skip = opts.CLIP_stop_at_last_layers
        self.token_merging_ratio = p.token_merging_ratio
        self.token_merging_ratio_hr = p.token_merging_ratio_hr
        self.eta = p.eta
        self.ddim_discretize = p.ddim_discretize
        self.s_churn = p.s_churn
        self.s_tmin = p.s_tmin
        self.s_tmax = p.s_tmax
        self.s_noise = p.s_noise
        self.s_min_uncond = p.s_min_uncond
        self.sampler_noise_scheduler_override = p.sampler_noise_scheduler_override
        self.prompt = self.prompt if not isinstance(self.prompt, list) else self.prompt[0]
        self.negative_prompt = self.negative_prompt if not isinstance(self.negative_prompt, list) else \
            self.negative_prompt[0]
        self.seed = int(self.seed if not isinstance(self.seed, list) else self.seed[0]) if self.seed is not None else -1
        self.subseed = int(self.subseed if not isinstance(self.subseed, list) else self.subseed[0]) \
            if self.subseed is not None else -1
        self.is_using_inpainting_conditioning = p.is_using_inpainting_conditioning
        self.all_prompts = all_prompts or p.all_prompts or [self.prompt]
        self.all_negative_prompts = all_negative_prompts or p.all_negative_prompts or [self.negative_prompt]
        self.all_seeds = all_seeds or p.all_seeds or [self.seed]
        self.all_subseeds = all_subseeds or p.all_subseeds or [self.subseed]
        self.infotexts = infotexts or [info] * len(images_list)
        self.version = program_version()

    def js(self):
        obj = {
            "prompt": self.all_prompts[0], "all_prompts": self.all_prompts,
            "negative_prompt": self.all_negative_prompts[0], "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed, "all_seeds": self.all_seeds, "subseed": self.subseed, "all_subseeds": self.all_subseeds,
            "subseed_strength": self.subseed_strength, "width": self.width, "height": self.height,
            "sampler_name": self.sampler_name, "cfg_scale": self.cfg_scale, "steps": self.steps,
            "batch_size": self.batch_size, "restore_faces": self.restore_faces,
            "face_restoration_model": self.face_restoration_model, "sd_model_name": self.sd_model_name,
            "sd_model_hash": self.sd_model_hash, "sd_vae_name": self.sd_vae_name, "sd_vae_hash": self.sd_vae_hash,
            "seed_resize_from_w": self.seed_resize_from_w, "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength, "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts, "styles": self.styles,
            "job_timestamp": self.job_timestamp, "clip_skip": self.clip_skip,
            "is_using_inpainting_conditioning": self.is_using_inpainting_conditioning, "version": self.version,
        }
        return json.dumps(obj, default=lambda o: None)

    def infotext(self, p: StableDiffusionProcessing, index):
        return create_infotext(p, self.all_prompts, self.all_seeds, self.all_subseeds, comments=[], position_in_batch=
                               index % self.batch_size, iteration=index // self.batch_size)

    def get_token_merging_ratio(self, for_hr=False):
        return self.token_merging_ratio_hr if for_hr else self.token_merging_ratio


def create_random_tensors(shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0,
                          seed_resize_from_w=0, p=None):
    return np.stack([np.random.default_rng(int(s) % (2**32)).standard_normal(shape) for s in seeds])


class DecodedSamples(list):
    already_decoded = True


def decode_latent_batch(model, batch, target_device=None, check_for_nans=False):
    return DecodedSamples(batch)


def get_fixed_seed(seed):
    if seed == "" or seed is None:
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed)
        except Exception:
            seed = -1
    if seed == -1:
        return int(random.randrange(4294967294))
    return seed


def fix_seed(p):
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)


def program_version():
    from modules import launch_utils

    return launch_utils.git_tag()


def create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0, position_in_batch=0,
                    use_main_prompt=False, index=None, all_negative_prompts=None):
    """Simplified infotext: "<prompt>\\nNegative prompt: ...\\nSteps: .., Sampler: .., ...(extra params)"."""
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    if all_negative_prompts is None:
        all_negative_prompts = p.all_negative_prompts or [p.negative_prompt]
    prompt_text = p.main_prompt if use_main_prompt else all_prompts[index % len(all_prompts)]
    negative_prompt = p.main_negative_prompt if use_main_prompt else all_negative_prompts[index % len(all_negative_prompts)]
    seed = all_seeds[index % len(all_seeds)] if all_seeds else p.seed
    params = {
        "Steps": p.steps, "Sampler": p.sampler_name, "Schedule type": p.scheduler, "CFG scale": p.cfg_scale,
        "Seed": seed, "Size": f"{p.width}x{p.height}",
        "Model hash": p.sd_model_hash if opts.add_model_hash_to_info else None,
        "Model": p.sd_model_name if opts.add_model_name_to_info else None,
        "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        **p.extra_generation_params,
        "Version": program_version() if opts.add_version_to_infotext else None,
    }
    generation_params_text = ", ".join(
        [k if k == v else f"{k}: {json.dumps(v) if isinstance(v, str) and ',' in v else v}"
         for k, v in params.items() if v is not None])
    negative_prompt_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt_text}{negative_prompt_text}\n{generation_params_text}".strip()


@dataclass
class ProcessImagesCall:
    """Double-only record of one process_images() call (appended to ``calls``).

    ``fields``: copy of p's public attributes when the call started (before any script ran);
    ``script_args``: copy of p.script_args; ``loras``: the ``<lora:...>`` items parsed from the prompts;
    ``checkpoint``: title of the checkpoint the images were "generated" with; ``processed``: the result.
    """

    p: Any
    kind: str
    fields: dict
    script_args: Any
    override_settings: dict
    loras: list = dataclasses.field(default_factory=list)
    checkpoint: str = None
    sampler_runs: list = dataclasses.field(default_factory=list)
    processed: Any = None


calls = []


def _run_sampler(p):
    """What the real sampler's launch_sampling does to the progress state, with the run recorded for tests."""
    run = sd_samplers_common.run_sampler(p, isinstance(p, StableDiffusionProcessingImg2Img))
    state.sampling_steps = run.steps
    state.sampling_step = run.steps
    if calls and calls[-1].p is p:
        calls[-1].sampler_runs.append(run)
    return run


def _snapshot(p):
    fields = {}
    for key, value in vars(p).items():
        if key.startswith("_"):
            continue
        fields[key] = copy.copy(value) if isinstance(value, (list, dict)) else value
    kind = "img2img" if isinstance(p, StableDiffusionProcessingImg2Img) else "txt2img"
    script_args = copy.copy(p.script_args) if isinstance(p.script_args, (list, tuple)) else p.script_args
    return ProcessImagesCall(p, kind, fields, script_args, dict(p.override_settings))


def _apply_overrides_a1111(p):
    if sd_models.checkpoint_aliases.get(p.override_settings.get("sd_model_checkpoint")) is None:
        p.override_settings.pop("sd_model_checkpoint", None)  # unknown checkpoint: silently ignored
        sd_models.reload_model_weights()
    for k, v in p.override_settings.items():
        opts.set(k, v, is_api=True, run_callbacks=False)
        if k == "sd_model_checkpoint":
            sd_models.reload_model_weights()
        if k == "sd_vae":
            sd_vae.reload_vae_weights()


def _apply_overrides_forge(p):
    from modules_forge import main_entry

    if sd_models.checkpoint_aliases.get(p.override_settings.get("sd_model_checkpoint")) is None:
        p.override_settings.pop("sd_model_checkpoint", None)
    for k, v in p.override_settings.items():
        opts.set(k, v, is_api=True, run_callbacks=False)
        if k == "sd_model_checkpoint":
            main_entry.checkpoint_change(v, save=False, refresh=False)
    manage_model_and_prompt_cache(p)


def manage_model_and_prompt_cache(p: StableDiffusionProcessing):
    """Forge: (re)load the model chosen by the options before generating."""
    from modules_forge import main_entry

    main_entry.refresh_model_loading_parameters()
    sd_models.forge_model_reload()


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run one generation the way the real host does (see the module docstring); restores overridden options."""
    record = _snapshot(p)
    calls.append(record)
    if p.scripts is not None:
        p.scripts.before_process(p)
    stored_opts = {k: opts.data[k] if k in opts.data else opts.get_default(k) for k in p.override_settings.keys()
                   if k in opts.data}
    try:
        if IS_FORGE:
            _apply_overrides_forge(p)
        else:
            _apply_overrides_a1111(p)
        sd_models.apply_token_merging(p.sd_model, p.get_token_merging_ratio())
        sd_samplers.fix_p_invalid_sampler_and_scheduler(p)
        res = process_images_inner(p)
    finally:
        sd_models.apply_token_merging(p.sd_model, 0)
        if p.override_settings_restore_afterwards:
            for k, v in stored_opts.items():
                setattr(opts, k, v)
                if k == "sd_vae":
                    sd_vae.reload_vae_weights()
    record.processed = res
    return res


def _prepare(p):
    """Seeds, prompts, model names (the first part of process_images_inner)."""
    if isinstance(p.prompt, list):
        assert len(p.prompt) > 0
    else:
        assert p.prompt is not None
    devices.torch_gc()
    seed = get_fixed_seed(p.seed)
    subseed = get_fixed_seed(p.subseed)
    if p.restore_faces is None:
        p.restore_faces = opts.face_restoration
    if p.tiling is None:
        p.tiling = opts.tiling
    model = shared.sd_model
    info = getattr(model, "sd_checkpoint_info", None)
    p.sd_model_name = info.name_for_extra if info is not None else None
    p.sd_model_hash = getattr(model, "sd_model_hash", None)
    p.sd_vae_name = sd_vae.get_loaded_vae_name()
    p.sd_vae_hash = sd_vae.get_loaded_vae_hash()
    modules.sd_hijack.model_hijack.clear_comments()
    p.fill_fields_from_opts()
    p.setup_prompts()
    p.all_seeds = seed if isinstance(seed, list) else [int(seed) + (x if p.subseed_strength == 0 else 0)
                                                        for x in range(len(p.all_prompts))]
    p.all_subseeds = subseed if isinstance(subseed, list) else [int(subseed) + x for x in range(len(p.all_prompts))]
    return info


def _batch_slices(p, n):
    p.iteration = n
    sl = slice(n * p.batch_size, (n + 1) * p.batch_size)
    p.prompts = p.all_prompts[sl]
    p.negative_prompts = p.all_negative_prompts[sl]
    p.seeds = p.all_seeds[sl]
    p.subseeds = p.all_subseeds[sl]


def _activate_batch(p, n, record):
    if p.scripts is not None:
        p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
    if len(p.prompts) == 0:
        return False
    p.parse_extra_network_prompts()
    record.loras += [tuple(x.items) for x in (p.extra_network_data or {}).get("lora", [])]
    if not p.disable_extra_networks:
        extra_networks.activate(p, p.extra_network_data)
    if p.scripts is not None:
        p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
    p.setup_conds()
    p.extra_generation_params.update(modules.sd_hijack.model_hijack.extra_generation_params)
    for comment in modules.sd_hijack.model_hijack.comments:
        p.comment(comment)
    if p.n_iter > 1:
        state.job = f"Batch {n + 1} out of {p.n_iter}"
    return True


def _mask_extras(p, image, original_denoised_image, mask_for_overlay):
    """The return_mask / return_mask_composite images appended after each sample."""
    if mask_for_overlay is None or not any([opts.save_mask, opts.save_mask_composite, opts.return_mask,
                                             opts.return_mask_composite]):
        return []
    image_mask = mask_for_overlay.convert("RGB")
    image_mask_composite = Image.composite(
        original_denoised_image.convert("RGBA").convert("RGBa"), Image.new("RGBa", image.size),
        images.resize_image(2, mask_for_overlay, image.width, image.height).convert("L")).convert("RGBA")
    res = []
    if opts.return_mask:
        res.append(image_mask)
    if opts.return_mask_composite:
        res.append(image_mask_composite)
    return res


def _finish_image(p, i, image):
    """postprocess_image, mask overlay, paste-back, postprocess_image_after_composite for one sample."""
    if p.scripts is not None:
        pp = scripts.PostprocessImageArgs(image, i) if IS_FORGE else scripts.PostprocessImageArgs(image)
        p.scripts.postprocess_image(p, pp)
        image = pp.image
    mask_for_overlay = getattr(p, "mask_for_overlay", None)
    overlay_images = getattr(p, "overlay_images", None)
    overlay_image = overlay_images[i] if opts.overlay_inpaint and overlay_images and i < len(overlay_images) else None
    if p.scripts is not None:
        ppmo = scripts.PostProcessMaskOverlayArgs(i, mask_for_overlay, overlay_image)
        p.scripts.postprocess_maskoverlay(p, ppmo)
        mask_for_overlay, overlay_image = ppmo.mask_for_overlay, ppmo.overlay_image
    image, original_denoised_image = apply_overlay(image, p.paste_to, overlay_image)
    if p.scripts is not None:
        pp = scripts.PostprocessImageArgs(image, i) if IS_FORGE else scripts.PostprocessImageArgs(image)
        p.scripts.postprocess_image_after_composite(p, pp)
        image = pp.image
    return image, original_denoised_image, mask_for_overlay


def _run_batch(p, n, output_images, infotexts):
    samples = p.sample(conditioning=p.c, unconditional_conditioning=p.uc, seeds=p.seeds, subseeds=p.subseeds,
                       subseed_strength=p.subseed_strength, prompts=p.prompts)
    if p.scripts is not None:
        ps = scripts.PostSampleArgs(samples)
        p.scripts.post_sample(p, ps)
        samples = ps.samples
        p.scripts.postprocess_batch(p, samples, batch_number=n)
        batch_params = scripts.PostprocessBatchListArgs(list(samples))
        p.scripts.postprocess_batch_list(p, batch_params, batch_number=n)
        samples = batch_params.images
    save_samples = p.save_samples()
    for i, sample in enumerate(samples):
        p.batch_index = i
        image, original_denoised_image, mask_for_overlay = _finish_image(p, i, sample)
        text = create_infotext(p, p.prompts, p.seeds, p.subseeds, index=i, all_negative_prompts=p.negative_prompts)
        if save_samples:
            images.save_image(image, p.outpath_samples, "", p.seeds[i], p.prompts[i], opts.samples_format, info=text,
                              p=p)
        infotexts.append(text)
        if opts.enable_pnginfo:
            image.info["parameters"] = text
        output_images.append(image)
        output_images += _mask_extras(p, image, original_denoised_image, mask_for_overlay)


def _add_grid(p, output_images, infotexts):
    """Insert a grid at index 0 (index_of_first_image=1) when return_grid and >= 2 images (or not only-if-multiple)."""
    unwanted_grid_because_of_img_count = len(output_images) < 2 and opts.grid_only_if_multiple
    if not ((opts.return_grid or opts.grid_save) and not p.do_not_save_grid and not unwanted_grid_because_of_img_count):
        return 0
    grid = images.image_grid(output_images, p.batch_size)
    text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, use_main_prompt=True)
    index_of_first_image = 0
    if opts.return_grid:
        infotexts.insert(0, text)
        if opts.enable_pnginfo:
            grid.info["parameters"] = text
        output_images.insert(0, grid)
        index_of_first_image = 1
    if opts.grid_save:
        images.save_image(grid, p.outpath_grids, "grid", p.all_seeds[0], p.all_prompts[0], opts.grid_format,
                          info=text, short_filename=not opts.grid_extended_filename, p=p, grid=True)
    return index_of_first_image


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    """scripts.process, p.init, the n_iter loop (breaks on state.interrupted/stopping_generation), grid, postprocess."""
    record = calls[-1] if calls and calls[-1].p is p else _snapshot(p)
    info = _prepare(p)
    record.checkpoint = info.title if info is not None else None
    if IS_FORGE:
        p.extra_result_images = []
    if p.scripts is not None:
        p.scripts.process(p)
    infotexts = []
    output_images = []
    p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    if state.job_count == -1:
        state.job_count = p.n_iter
    for n in range(p.n_iter):
        _batch_slices(p, n)
        if state.skipped:
            state.skipped = False
        if state.interrupted or state.stopping_generation:
            break
        sd_models.reload_model_weights()  # the model can be changed, for example by the refiner
        if not _activate_batch(p, n, record):
            break
        _run_batch(p, n, output_images, infotexts)
        devices.torch_gc()
        state.nextjob()
    if not infotexts:
        infotexts.append(Processed(p, []).infotext(p, 0))
    p.color_corrections = None
    index_of_first_image = _add_grid(p, output_images, infotexts)
    if not p.disable_extra_networks and p.extra_network_data:
        extra_networks.deactivate(p, p.extra_network_data)
    devices.torch_gc()
    kwargs = {"extra_images_list": p.extra_result_images} if IS_FORGE else {}
    res = Processed(p, images_list=output_images, seed=p.all_seeds[0], info=infotexts[0],
                    subseed=p.all_subseeds[0], index_of_first_image=index_of_first_image, infotexts=infotexts,
                    **kwargs)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res


def old_hires_fix_first_pass_dimensions(width, height):
    desired_pixel_count = 512 * 512
    actual_pixel_count = width * height
    scale = (desired_pixel_count / actual_pixel_count) ** 0.5
    width = int(np.ceil(scale * width / 64) * 64)
    height = int(np.ceil(scale * height / 64) * 64)
    return width, height


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.75
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str = None
    if IS_FORGE:
        hr_additional_modules: list = None
    hr_sampler_name: str = None
    hr_scheduler: str = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    if IS_FORGE:
        hr_cfg: float = 1.0
        hr_distilled_cfg: float = 3.5
    force_task_id: str = None

    cached_hr_uc = [None, None, None] if IS_FORGE else [None, None]
    cached_hr_c = [None, None, None] if IS_FORGE else [None, None]

    hr_checkpoint_info: dict = field(default=None, init=False)
    hr_upscale_to_x: int = field(default=0, init=False)
    hr_upscale_to_y: int = field(default=0, init=False)
    truncate_x: int = field(default=0, init=False)
    truncate_y: int = field(default=0, init=False)
    applied_old_hires_behavior_to: tuple = field(default=None, init=False)
    latent_scale_mode: dict = field(default=None, init=False)
    hr_c: tuple = field(default=None, init=False)
    hr_uc: tuple = field(default=None, init=False)
    all_hr_prompts: list = field(default=None, init=False)
    all_hr_negative_prompts: list = field(default=None, init=False)
    hr_prompts: list = field(default=None, init=False)
    hr_negative_prompts: list = field(default=None, init=False)
    hr_extra_network_data: list = field(default=None, init=False)

    def __post_init__(self):
        super().__post_init__()
        if self.firstphase_width != 0 or self.firstphase_height != 0:
            self.hr_upscale_to_x = self.width
            self.hr_upscale_to_y = self.height
            self.width = self.firstphase_width
            self.height = self.firstphase_height
        self.cached_hr_uc = StableDiffusionProcessingTxt2Img.cached_hr_uc
        self.cached_hr_c = StableDiffusionProcessingTxt2Img.cached_hr_c

    def calculate_target_resolution(self):
        if self.hr_resize_x == 0 and self.hr_resize_y == 0:
            self.hr_upscale_to_x = int(self.width * self.hr_scale)
            self.hr_upscale_to_y = int(self.height * self.hr_scale)
        else:
            self.hr_upscale_to_x = self.hr_resize_x or int(self.hr_resize_y * self.width / self.height)
            self.hr_upscale_to_y = self.hr_resize_y or int(self.hr_resize_x * self.height / self.width)

    def init(self, all_prompts, all_seeds, all_subseeds):
        if self.enable_hr:
            self.calculate_target_resolution()
            self.extra_generation_params["Hires upscale"] = self.hr_scale
            self.extra_generation_params["Hires upscaler"] = self.hr_upscaler
            self.extra_generation_params["Denoising strength"] = self.denoising_strength

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        samples = super().sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts)
        if not self.enable_hr:
            return samples
        return self.sample_hr_pass(samples, samples, seeds, subseeds, subseed_strength, prompts)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        self.is_hr_pass = True
        if self.scripts is not None:
            self.scripts.before_hr(self)
        return [images.resize_image(0, x, self.hr_upscale_to_x, self.hr_upscale_to_y) for x in decoded_samples]

    def close(self):
        super().close()
        self.hr_c = None
        self.hr_uc = None

    def setup_prompts(self):
        super().setup_prompts()
        if not self.enable_hr:
            return
        self.all_hr_prompts = [self.hr_prompt or x for x in self.all_prompts]
        self.all_hr_negative_prompts = [self.hr_negative_prompt or x for x in self.all_negative_prompts]

    def calculate_hr_conds(self):
        self.hr_c, self.hr_uc = tuple(self.hr_prompts or []), tuple(self.hr_negative_prompts or [])

    def setup_conds(self):
        super().setup_conds()
        if self.enable_hr:
            self.calculate_hr_conds()

    def get_conds(self):
        if self.is_hr_pass:
            return self.hr_c, self.hr_uc
        return super().get_conds()

    def parse_extra_network_prompts(self):
        res = super().parse_extra_network_prompts()
        if self.enable_hr and self.all_hr_prompts:
            sl = slice(self.iteration * self.batch_size, (self.iteration + 1) * self.batch_size)
            self.hr_prompts, self.hr_extra_network_data = extra_networks.parse_prompts(self.all_hr_prompts[sl])
        return res


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    image_cfg_scale: float = None
    mask: Any = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = None
    latent_mask: Image = None
    force_task_id: str = None
    if IS_FORGE:
        hr_distilled_cfg: float = 3.5

    image_mask: Any = field(default=None, init=False)

    nmask: Any = field(default=None, init=False)
    image_conditioning: Any = field(default=None, init=False)
    init_img_hash: str = field(default=None, init=False)
    mask_for_overlay: Image = field(default=None, init=False)
    init_latent: Any = field(default=None, init=False)

    def __post_init__(self):
        super().__post_init__()
        self.image_mask = self.mask
        self.mask = None
        self.initial_noise_multiplier = opts.initial_noise_multiplier if self.initial_noise_multiplier is None \
            else self.initial_noise_multiplier

    @property
    def mask_blur(self):  # noqa: F811  (shadows the dataclass field, as in the real class)
        if self.mask_blur_x == self.mask_blur_y:
            return self.mask_blur_x
        return None

    @mask_blur.setter
    def mask_blur(self, value):
        if isinstance(value, int):  # a float (e.g. from a gradio Slider) is silently ignored
            self.mask_blur_x = value
            self.mask_blur_y = value

    def _blurred_mask(self, image_mask):
        image_mask = create_binary_mask(image_mask, round=self.mask_round)
        if self.inpainting_mask_invert:
            image_mask = ImageOps.invert(image_mask)
            self.extra_generation_params["Mask mode"] = "Inpaint not masked"
        if self.mask_blur_x > 0 or self.mask_blur_y > 0:
            image_mask = image_mask.filter(ImageFilter.GaussianBlur(max(self.mask_blur_x, self.mask_blur_y)))
            self.extra_generation_params["Mask blur"] = self.mask_blur_x
        return image_mask

    def _init_mask(self, image_mask):
        """Returns (processing-size mask, crop_region); sets mask_for_overlay, paste_to, overlay_images."""
        image_mask = self._blurred_mask(image_mask)
        crop_region = None
        if self.inpaint_full_res:
            self.mask_for_overlay = image_mask
            mask = image_mask.convert("L")
            crop_region = masking.get_crop_region_v2(mask, self.inpaint_full_res_padding)
            if crop_region:
                crop_region = masking.expand_crop_region(crop_region, self.width, self.height, mask.width, mask.height)
                x1, y1, x2, y2 = crop_region
                image_mask = images.resize_image(2, mask.crop(crop_region), self.width, self.height)
                self.paste_to = (x1, y1, x2 - x1, y2 - y1)
                self.extra_generation_params["Inpaint area"] = "Only masked"
                self.extra_generation_params["Masked area padding"] = self.inpaint_full_res_padding
            else:
                image_mask = None
                self.mask_for_overlay = None
                self.inpaint_full_res = False
                modules.sd_hijack.model_hijack.comments.append(
                    'Unable to perform "Inpaint Only mask" because mask is blank, switch to img2img mode.')
        else:
            image_mask = images.resize_image(self.resize_mode, image_mask, self.width, self.height)
            np_mask = np.clip(np.array(image_mask).astype(np.float32) * 2, 0, 255).astype(np.uint8)
            self.mask_for_overlay = Image.fromarray(np_mask)
        self.overlay_images = []
        return image_mask, crop_region

    def _prepare_init_image(self, img, image_mask, crop_region):
        image = images.flatten(img, opts.img2img_background_color)
        if crop_region is None and self.resize_mode != 3:
            image = images.resize_image(self.resize_mode, image, self.width, self.height)
        if image_mask is not None:
            if self.mask_for_overlay.size != (image.width, image.height):
                self.mask_for_overlay = images.resize_image(self.resize_mode, self.mask_for_overlay, image.width,
                                                            image.height)
            image_masked = Image.new("RGBa", (image.width, image.height))
            image_masked.paste(image.convert("RGBA").convert("RGBa"),
                               mask=ImageOps.invert(self.mask_for_overlay.convert("L")))
            self.overlay_images.append(image_masked.convert("RGBA"))
        if crop_region is not None:
            image = images.resize_image(2, image.crop(crop_region), self.width, self.height)
        return image

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.extra_generation_params["Denoising strength"] = self.denoising_strength
        self.image_cfg_scale = self.image_cfg_scale if shared.sd_model.cond_stage_key == "edit" else None
        crop_region = None
        image_mask = self.image_mask
        if image_mask is not None:
            image_mask, crop_region = self._init_mask(image_mask)
        latent_mask = self.latent_mask if self.latent_mask is not None else image_mask
        imgs = [self._prepare_init_image(img, image_mask, crop_region) for img in self.init_images]
        if len(imgs) == 1:
            imgs = imgs * self.batch_size
            if self.overlay_images is not None:
                self.overlay_images = self.overlay_images * self.batch_size
        elif len(imgs) <= self.batch_size:
            self.batch_size = len(imgs)
        else:
            raise RuntimeError(f"bad number of images passed: {len(imgs)}; expecting {self.batch_size} or less")
        self.init_latent = imgs  # double: the "latents" are the prepared init images
        self.nmask = latent_mask.resize((self.width, self.height)).convert("L") if latent_mask is not None else None

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        """Fake samples: generated pixels where the (processing-size) mask is white, the init image elsewhere."""
        generated = super().sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts)
        if self.nmask is None:
            return generated
        return [Image.composite(gen, self.init_latent[i % len(self.init_latent)].convert("RGB"), self.nmask)
                for i, gen in enumerate(generated)]

    def get_token_merging_ratio(self, for_hr=False):
        return self.token_merging_ratio or ("token_merging_ratio" in self.override_settings and
                                            opts.token_merging_ratio) or opts.token_merging_ratio_img2img or \
            opts.token_merging_ratio
