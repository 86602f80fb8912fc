"""Double of Mikubill/sd-webui-controlnet:scripts/controlnet_version.py."""

version_flag = "v1.1.455"
