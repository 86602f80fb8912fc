"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/shared.py (host-api.md 7.2).

Unlike the real module (filled in by shared_init.initialize()), ``opts`` and ``state`` exist as soon as it is
imported, pre-populated with the built-in defaults; ``shared_init.initialize()`` then loads config.json.
``sd_model`` is a module-level property (see shared_items.Shared).
"""

import os
import sys

from modules import options, shared_cmd_options, shared_items, shared_options, shared_state, util  # noqa: F401
from modules.paths_internal import (  # noqa: F401
    data_path,
    default_sd_model_file,
    extensions_builtin_dir,
    extensions_dir,
    models_path,
    script_path,
    sd_configs_path,
    sd_default_config,
    sd_model_file,
)

cmd_opts = shared_cmd_options.cmd_opts
parser = shared_cmd_options.parser

batch_cond_uncond = True
parallel_processing_allowed = True
styles_filename = cmd_opts.styles_file = cmd_opts.styles_file if len(cmd_opts.styles_file) > 0 else [
    os.path.join(data_path, "styles.csv")]
config_filename = cmd_opts.ui_settings_file
hide_dirs = {"visible": not cmd_opts.hide_ui_dir_config}

demo = None
device = "cpu"
weight_load_location = None
xformers_available = False
hypernetworks = {}
loaded_hypernetworks = []


class StyleDatabase:
    """Minimal modules/styles.py StyleDatabase: no styles.csv handling, styles are applied as "{prompt}, {style}"."""

    def __init__(self, paths=None):
        self.styles = {}

    def apply_styles_to_prompt(self, prompt, styles):
        return prompt

    def apply_negative_styles_to_prompt(self, prompt, styles):
        return prompt


class TotalTQDM:
    """Stub of modules/shared_total_tqdm.TotalTQDM."""

    def __init__(self):
        self._tqdm = None
        self.total = 0

    def reset(self):
        self.total = 0

    def update(self):
        pass

    def updateTotal(self, new_total):
        self.total = new_total

    def clear(self):
        pass


state = shared_state.State()
prompt_styles = StyleDatabase()
interrogator = None
face_restorers = []

options_templates = shared_options.options_templates
restricted_opts = shared_options.restricted_opts
opts = options.Options(options_templates, restricted_opts)

sd_model = None  # replaced by the module property (shared_items.Shared)
settings_components = None
tab_names = []

latent_upscale_default_mode = "Latent"
latent_upscale_modes = {
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}
sd_upscalers = []
clip_model = None
progress_print_out = sys.stdout
gradio_theme = None
total_tqdm = TotalTQDM()
mem_mon = None

options_section = options.options_section
OptionInfo = options.OptionInfo
OptionHTML = options.OptionHTML

natural_sort_key = util.natural_sort_key
listfiles = util.listfiles
html_path = util.html_path
html = util.html
walk_files = util.walk_files
ldm_print = util.ldm_print


def reload_gradio_theme(theme_name=None):
    """No themes in the double."""


list_checkpoint_tiles = shared_items.list_checkpoint_tiles
refresh_checkpoints = shared_items.refresh_checkpoints
list_samplers = shared_items.list_samplers
reload_hypernetworks = shared_items.reload_hypernetworks

hf_endpoint = os.getenv("HF_ENDPOINT", "https://huggingface.co")

shared_items.install_module_class()
