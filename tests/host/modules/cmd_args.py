"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/cmd_args.py: the argparse parser of the WebUI.

Only the options an extension reads (host-api.md 7.2) plus the common launch flags; names and defaults follow
the real parser. Forge additionally defines ``--controlnet-dir`` in its core parser (host-api.md 1.3).
"""

import argparse
import os

from modules import host_env
from modules.paths_internal import data_path, models_path, sd_default_config, sd_model_file  # noqa: F401

parser = argparse.ArgumentParser()

_flags = [
    "--update-all-extensions", "--skip-python-version-check", "--skip-torch-cuda-test", "--reinstall-xformers",
    "--reinstall-torch", "--update-check", "--skip-prepare-environment", "--skip-install", "--dump-sysinfo",
    "--loglevel-debug", "--do-not-download-clip", "--no-half", "--no-half-vae", "--no-progressbar-hiding",
    "--xformers", "--force-enable-xformers", "--lowvram", "--medvram", "--medvram-sdxl", "--lowram",
    "--always-batch-cond-uncond", "--unload-gfpgan", "--share", "--listen", "--freeze-settings",
    "--hide-ui-dir-config", "--enable-insecure-extension-access", "--disable-all-extensions",
    "--disable-extra-extensions", "--api", "--api-log", "--nowebui", "--api-server-stop", "--test-server",
    "--no-hashing", "--skip-load-model-at-start", "--no-download-sd-model", "--disable-safe-unpickle",
    "--disable-nan-check", "--autolaunch", "--log-startup", "--skip-version-check", "--no-gradio-queue",
    "--disable-console-progressbars", "--enable-console-prompts", "--gradio-debug", "--exit", "--opt-split-attention",
    "--disable-opt-split-attention", "--add-stop-route", "--timeout-keep-alive-disabled",
]
for _flag in _flags:
    parser.add_argument(_flag, action="store_true", help=f"(host double) {_flag}")

parser.add_argument("--data-dir", type=str, default=data_path, help="base path where all user data is stored")
parser.add_argument("--models-dir", type=str, default=None, help="base path where models are stored")
parser.add_argument("--config", type=str, default=sd_default_config)
parser.add_argument("--ckpt", type=str, default=sd_model_file)
parser.add_argument("--ckpt-dir", type=str, default=None)
parser.add_argument("--vae-dir", type=str, default=None)
parser.add_argument("--vae-path", type=str, default=None)
parser.add_argument("--embeddings-dir", type=str, default=os.path.join(data_path, "embeddings"))
parser.add_argument("--textual-inversion-templates-dir", type=str, default=None)
parser.add_argument("--hypernetwork-dir", type=str, default=os.path.join(models_path, "hypernetworks"))
parser.add_argument("--localizations-dir", type=str, default=None)
parser.add_argument("--codeformer-models-path", type=str, default=os.path.join(models_path, "Codeformer"))
parser.add_argument("--gfpgan-models-path", type=str, default=os.path.join(models_path, "GFPGAN"))
parser.add_argument("--esrgan-models-path", type=str, default=os.path.join(models_path, "ESRGAN"))
parser.add_argument("--realesrgan-models-path", type=str, default=os.path.join(models_path, "RealESRGAN"))
parser.add_argument("--precision", type=str, choices=["full", "half", "autocast"], default="autocast")
parser.add_argument("--upcast-sampling", action="store_true")
parser.add_argument("--use-cpu", nargs="+", default=[], type=str.lower)
parser.add_argument("--device-id", type=str, default=None)
parser.add_argument("--port", type=int, default=None)
parser.add_argument("--server-name", type=str, default=None)
parser.add_argument("--ngrok", type=str, default=None)
parser.add_argument("--ngrok-region", type=str, default="")
parser.add_argument("--ui-config-file", type=str, default=os.path.join(data_path, "ui-config.json"))
parser.add_argument("--ui-settings-file", type=str, default=os.path.join(data_path, "config.json"))
parser.add_argument("--freeze-settings-in-sections", type=str, default=None)
parser.add_argument("--freeze-specific-settings", type=str, default=None)
parser.add_argument("--gradio-auth", type=str, default=None)
parser.add_argument("--gradio-auth-path", type=str, default=None)
parser.add_argument("--gradio-allowed-path", action="append", default=[])
parser.add_argument("--styles-file", type=str, action="append", default=[])
parser.add_argument("--theme", type=str, default=None)
parser.add_argument("--api-auth", type=str, default=None)
parser.add_argument("--cors-allow-origins", type=str, default=None)
parser.add_argument("--cors-allow-origins-regex", type=str, default=None)
parser.add_argument("--tls-keyfile", type=str, default=None)
parser.add_argument("--tls-certfile", type=str, default=None)
parser.add_argument("--subpath", type=str, default=None)
parser.add_argument("--server-root-path", type=str, default="")
parser.add_argument("--ui-debug-mode", action="store_true")
parser.add_argument("--unix-filenames-sanitization", action="store_true")
parser.add_argument("--filenames-max-length", type=int, default=128)

if host_env.is_forge():
    # lllyasviel/stable-diffusion-webui-forge:modules/cmd_args.py defines these in the core parser
    parser.add_argument("--controlnet-dir", type=str, default=None)
    parser.add_argument("--controlnet-preprocessor-models-dir", type=str, default=None)
