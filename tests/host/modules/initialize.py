"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/initialize.py: the startup order of host-api.md 1.4."""

from modules import errors  # noqa: F401


def imports():
    """The real one imports torch and gradio; the double only imports its own light modules."""
    import modules.infotext_utils  # noqa: F401  (registers modules.generation_parameters_copypaste)
    import modules.shared  # noqa: F401  (runs preload.py files and parses the command line)


def check_versions():
    pass


def initialize():
    from modules import shared_init

    shared_init.initialize()
    initialize_rest(reload_script_modules=False)


def initialize_rest(*, reload_script_modules=False):
    """samplers, extensions (metadata), checkpoints, load_scripts() (callbacks cleared and re-registered), upscalers
    (shared.sd_upscalers), VAEs,
    then the model "load" (synchronous here; the real one uses a thread) unless --skip-load-model-at-start.
    Forge loads nothing before the first generation."""
    from modules import extensions, host_env, modelloader, scripts, sd_models, sd_samplers, sd_vae, shared

    sd_samplers.set_samplers()
    extensions.list_extensions()
    sd_models.list_models()
    scripts.load_scripts()
    modelloader.load_upscalers()
    sd_vae.refresh_vae_list()
    if not reload_script_modules and not shared.cmd_opts.skip_load_model_at_start and not host_env.is_forge():
        if sd_models.checkpoints_list:
            shared.sd_model  # noqa: B018  (loads the selected checkpoint)
