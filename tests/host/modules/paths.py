"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/paths.py.

The real module inserts the WebUI root into sys.path and asserts that ``repositories/`` exist; the double only
re-exports modules.paths_internal (host-api.md 3.10).
"""

from modules.paths_internal import (  # noqa: F401
    cwd,
    data_path,
    default_output_dir,
    extensions_builtin_dir,
    extensions_dir,
    models_path,
    modules_path,
    script_path,
    sd_configs_path,
    sd_default_config,
    sd_model_file,
)

sd_path = None
paths = {}


def mute_sdxl_imports():
    """The real one stubs out sgm imports; nothing to mute in the double."""
