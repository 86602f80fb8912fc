"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/shared_cmd_options.py.

Importing it runs the ``preload.py`` of the enabled ``extensions/`` and then of ``extensions-builtin/``
(host-api.md 1.3), then parses the command line (``parse_known_args`` when IGNORE_CMD_ARGS_ERRORS is set).
"""

import os

from modules import cmd_args, host_env, launch_utils, script_loading
from modules.paths_internal import extensions_builtin_dir, extensions_dir  # noqa: F401

parser = cmd_args.parser

_enabled = launch_utils.list_extensions(launch_utils.args.ui_settings_file)
script_loading.preload_extensions(extensions_dir, parser, extension_list=_enabled)
script_loading.preload_extensions(extensions_builtin_dir, parser)

if os.environ.get("IGNORE_CMD_ARGS_ERRORS", None) is None:
    cmd_opts = parser.parse_args(host_env.argv())
else:
    cmd_opts, _ = parser.parse_known_args(host_env.argv())

cmd_opts.webui_is_non_local = any([cmd_opts.share, cmd_opts.listen, cmd_opts.ngrok, cmd_opts.server_name])
cmd_opts.disable_extension_access = cmd_opts.webui_is_non_local and not cmd_opts.enable_insecure_extension_access
