"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/paths_internal.py: every path of the WebUI install.

``script_path`` is the double's root (tests/host); ``data_path`` is ``--data-dir`` whose default comes from
$WEBUI_HOST_DATA_DIR (the harness' temp root); ``extensions_builtin_dir`` may be redirected by
$WEBUI_HOST_BUILTIN_DIR so that each flavour gets its own set of built-in extensions.
"""

import argparse
import os
import sys
from pathlib import Path

from modules import host_env

normalized_filepath = lambda filepath: str(Path(filepath).absolute())  # noqa: E731  (as in the real file)

commandline_args = os.environ.get("COMMANDLINE_ARGS", "")
if not host_env.harness_argv():
    sys.argv += host_env.commandline_args()  # real behaviour; under the harness argv comes from $WEBUI_HOST_ARGV

cwd = os.getcwd()
modules_path = os.path.dirname(os.path.realpath(__file__))
script_path = os.path.dirname(modules_path)

sd_configs_path = os.path.join(script_path, "configs")
sd_default_config = os.path.join(sd_configs_path, "v1-inference.yaml")
sd_model_file = os.path.join(script_path, "model.ckpt")
default_sd_model_file = sd_model_file

# --data-dir is parsed first so that the other defaults can be based on it (same as the real file)
parser_pre = argparse.ArgumentParser(add_help=False)
parser_pre.add_argument("--data-dir", type=str, default=host_env.default_data_dir(script_path))
parser_pre.add_argument("--models-dir", type=str, default=None)
cmd_opts_pre = parser_pre.parse_known_args(host_env.argv())[0]

data_path = cmd_opts_pre.data_dir
models_path = cmd_opts_pre.models_dir if cmd_opts_pre.models_dir else os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = host_env.builtin_dir(script_path)
config_states_dir = os.path.join(data_path, "config_states")
default_output_dir = os.path.join(data_path, "outputs")
roboto_ttf_file = os.path.join(modules_path, "Roboto-Regular.ttf")
